// The demo page: send dropped, pasted or chosen images to POST /read and show each reading.
"use strict";

const results = document.getElementById("results");
const statusLine = document.getElementById("status");
const tokenInput = document.getElementById("token");

function authHeaders() {
  return tokenInput.value ? { Authorization: "Bearer " + tokenInput.value } : {};
}

async function showModel() {
  const health = await (await fetch("/health")).json();
  document.getElementById("token-row").hidden = !health.token_required;
  const answer = await fetch("/model", { headers: authHeaders() });
  const info = document.getElementById("model-info");
  if (!answer.ok) { info.textContent = "Model: enter the token to see it."; return; }
  const model = await answer.json();
  const accuracy = model.validation && model.validation.seq_acc;
  info.textContent = `Model: characters ${model.charset}, input ${model.width}×${model.height}, ` +
    `up to ${model.max_label_length} characters` +
    (accuracy != null ? `, validation ${(100 * accuracy).toFixed(2)}%` : "");
}

function card(file, result) {
  const item = document.createElement("li");
  item.className = "result";
  const image = document.createElement(result.error === undefined ? "img" : "div");
  if (result.error === undefined) {
    image.src = URL.createObjectURL(file);
    image.alt = file.name;
  } else {
    image.className = "no-preview";
    image.textContent = "no preview";
  }
  const middle = document.createElement("div");
  const right = document.createElement("div");
  right.className = "confidence";
  if (result.error !== undefined) {
    item.classList.add("failed");
    middle.innerHTML = '<div class="error"></div>';
    middle.firstChild.textContent = result.error;
  } else {
    item.dataset.text = result.text;
    const text = document.createElement("div");
    text.className = result.text ? "text" : "text empty";
    if (!result.text) text.textContent = "(nothing read)";
    Array.from(result.text).forEach((char, i) => text.appendChild(characterSpan(char, result.char_confidences[i])));
    middle.appendChild(text);
    const percent = (100 * result.confidence).toFixed(1);
    right.innerHTML = `confidence <b>${percent}%</b><div class="bar"><span style="width:${percent}%"></span></div>`;
  }
  const name = document.createElement("div");
  name.className = "name";
  name.textContent = file.name;
  middle.appendChild(name);
  item.append(image, middle, right);
  return item;
}

async function readFiles(files) {
  files = Array.from(files);  // anything goes: the service says why a file cannot be read
  if (!files.length) return;
  const form = new FormData();
  files.forEach((file) => form.append("images", file, file.name));
  statusLine.textContent = `Reading ${files.length} image${files.length > 1 ? "s" : ""}…`;
  try {
    const answer = await fetch("/read", { method: "POST", body: form, headers: authHeaders() });
    const body = await answer.json();
    if (!body.results) throw new Error(body.error || `HTTP ${answer.status}`);
    const group = document.createDocumentFragment();
    body.results.forEach((result, i) => group.appendChild(card(files[i], result)));
    results.prepend(group);
    statusLine.textContent = "";
  } catch (error) {
    statusLine.textContent = "Could not read: " + error.message;
  }
}

const zone = document.getElementById("drop-zone");
zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
zone.addEventListener("dragleave", () => zone.classList.remove("over"));
zone.addEventListener("drop", (event) => {
  event.preventDefault();
  zone.classList.remove("over");
  readFiles(event.dataTransfer.files);
});
document.getElementById("file-input").addEventListener("change", (event) => {
  readFiles(event.target.files);
  event.target.value = "";
});
document.addEventListener("paste", (event) => readFiles(event.clipboardData.files));
tokenInput.addEventListener("change", showModel);
showModel();
