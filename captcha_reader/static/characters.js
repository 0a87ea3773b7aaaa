// Shared by the demo page and the labelling page: one character of a reading, marked when doubtful.
"use strict";

// A character read less surely than this is underlined: the one to check first.
const DOUBTFUL_BELOW = 0.9;

function characterSpan(char, confidence) {
  const span = document.createElement("span");
  span.textContent = char;
  span.title = `${(100 * confidence).toFixed(1)}% sure`;
  if (confidence < DOUBTFUL_BELOW) span.className = "doubtful";
  return span;
}
