// The labelling page: keyboard-first; every answer goes to the server (labels.csv) in order, at once.
"use strict";

const $ = (id) => document.getElementById(id);
const input = $("answer");
const image = $("captcha");
const PRELOAD = 6;
const MAX_LABEL = 64;

const state = {
  mode: "label",
  order: localStorage.getItem("label-order") || "uncertain",
  queues: { label: newQueue(), review: newQueue() },
  counts: { total: 0, labelled: 0, unreadable: 0, waiting: 0 },
  answeredAt: [],   // times of this session's answers, for the rate
  unsaved: 0,
  generation: -1,   // of the suggestions the label queue was ordered with
  latencies: [],    // ms from a key press to the next image on screen
  trainingState: "idle",
  refused: new Set(), // names whose last answer the server refused: they wait there still
};
window.labelling = state; // read by the browser test

function newQueue() { return { items: [], index: 0, history: [] }; }
function queue() { return state.queues[state.mode]; }
function current() { return queue().items[queue().index]; }

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || response.statusText);  // the server says why in "error"
  return body;
}

// ---------------------------------------------------------------- saving, in order

let writes = Promise.resolve();
function save(row, refused) {
  state.unsaved++;
  showSaving();
  const post = () => api("api/answer", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(row), keepalive: true,
  });
  writes = writes.then(post)
    .then((reply) => { state.refused.delete(row.name); state.counts = reply.counts; showProgress(); },
          (error) => {
            showError(`${row.name} not saved: ${error.message}` + (refused ? "; it comes again later" : ""));
            if (refused) { state.refused.add(row.name); refused(); }
          })
    .finally(() => { state.unsaved--; showSaving(); });
}

// ---------------------------------------------------------------- showing an image

const preloaded = new Map();
function imageUrl(name) { return `image/${encodeURIComponent(name)}`; }

function preload() {
  const { items, index } = queue();
  for (const item of items.slice(index + 1, index + 1 + PRELOAD)) {
    if (!preloaded.has(item.name)) {
      const img = new Image();
      img.src = imageUrl(item.name);
      preloaded.set(item.name, img);
    }
  }
  if (preloaded.size > 200) preloaded.clear();
}

function show(pressedAt, text) {
  const item = current();
  $("done").hidden = item !== undefined;
  $("frame").hidden = input.hidden = item === undefined;
  if (item === undefined) {
    $("name").textContent = $("hint").textContent = "";
    $("done").textContent = state.mode === "label"
      ? "Every image has an answer. Train now (Alt+T), review (Alt+R), or close the tab: all is saved."
      : "Nothing left to review.";
    return;
  }
  image.src = imageUrl(item.name);
  $("name").textContent = item.name;
  showHint(item);
  input.value = text ?? (state.mode === "label" ? item.suggestion : item.label);
  input.focus();
  input.select();
  if (pressedAt !== undefined) {
    image.decode().then(() => requestAnimationFrame(() => state.latencies.push(performance.now() - pressedAt)),
                        () => {});
  }
  preload();
}

function showHint(item) {
  const hint = $("hint");
  hint.replaceChildren();
  const add = (text, cls) => { const span = document.createElement("span"); span.textContent = text; if (cls) span.className = cls; hint.append(span); };
  if (state.mode === "review") {
    add(`label "${item.label}" · the model read "${item.pred}" · ${item.source}`);
  } else if (item.problem) {
    add(`this file cannot be read (${item.problem}): mark it unreadable (Alt+U)`, "conf low");
  } else if (item.confidence === null) {
    add("no suggestion: type the label");
  } else {
    const sure = Math.round(100 * item.confidence);
    add("suggested, ");
    add(`${sure}% sure`, `conf ${sure >= 90 ? "high" : sure < 60 ? "low" : ""}`);
    showDoubtfulCharacters(hint, item);
  }
}

// The suggestion beside the hint when some of its characters are doubtful (characters.js): the ones to check.
function showDoubtfulCharacters(hint, item) {
  if (!item.char_confidences.some((sure) => sure < DOUBTFUL_BELOW)) return;
  hint.append(" · check ");
  const reading = document.createElement("span");
  reading.className = "reading";
  Array.from(item.suggestion).forEach((char, i) => reading.append(characterSpan(char, item.char_confidences[i])));
  hint.append(reading);
}

function showProgress() {
  const { total, labelled, unreadable, waiting } = state.counts;
  $("progress-fill").style.width = `${total ? (100 * (total - waiting)) / total : 0}%`;
  $("progress-text").textContent = `${labelled} / ${total} labelled` + (unreadable ? ` · ${unreadable} unreadable` : "");
  $("waiting-count").textContent = `(${waiting})`;
  const recent = state.answeredAt.slice(-30);
  const minutes = recent.length > 1 ? (recent[recent.length - 1] - recent[0]) / 60000 : 0;
  $("rate").textContent = minutes > 0 ? `${((recent.length - 1) / minutes).toFixed(0)} images/min` : "";
}

function showSaving() {
  $("saving").textContent = state.unsaved ? `saving ${state.unsaved}…` : "all saved";
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

// ---------------------------------------------------------------- answers and undo

function answer(row, pressedAt) {
  const item = current();
  if (item === undefined) return;
  const q = queue();
  const before = state.mode === "label" ? { label: "", note: "" } : { label: item.label, note: "" };
  q.history.push({ index: q.index, before, given: row.label });
  save({ name: item.name, ...row }, () => requeue(q, item));
  q.index++;
  state.answeredAt.push(Date.now());
  showError("");
  show(pressedAt);
  showProgress();
}

// An answer the server refused: its image goes back to the end of its queue, so that none is skipped unseen.
function requeue(q, item) {
  q.items.push(item);
  if (q === queue() && q.index === q.items.length - 1) show();
}

function accept(pressedAt) {
  const label = input.value.trim();
  if (!label) return showError("Type the label, or Alt+U if it cannot be read.");
  if (label.length > MAX_LABEL) return showError(`A label has at most ${MAX_LABEL} characters.`);
  answer({ label, note: state.mode === "review" ? "reviewed" : "" }, pressedAt);
}

function unreadable() {
  answer({ label: "", note: "unreadable" }, performance.now());
}

function undo() {
  const q = queue();
  const last = q.history.pop();
  if (last === undefined) return showError("Nothing to undo.");
  const name = q.items[last.index].name;
  save({ name, ...last.before });
  q.index = last.index;
  q.items = q.items.filter((item, i) => i <= last.index || item.name !== name);  // a refused answer's second showing
  showError("");
  show(performance.now(), last.given);
}

function takeModelReading() {
  const item = current();
  if (state.mode === "review" && item) { input.value = item.pred; input.select(); }
}

// ---------------------------------------------------------------- queues

async function loadLabelQueue() {
  const reply = await api(`api/queue?order=${state.order}`);
  const q = state.queues.label;
  const kept = q.items.slice(0, q.index + 1);  // answered ones and the one on screen stay put
  // A refused answer's image comes again from the server's queue, unless it is the one on screen.
  const keptNames = new Set(kept.filter((item, i) => i === q.index || !state.refused.has(item.name))
    .map((item) => item.name));
  q.items = kept.concat(reply.items.filter((item) => !keptNames.has(item.name)));
  state.generation = reply.generation;
  state.counts = reply.counts;
  showProgress();
  if (state.mode === "label" && kept.length === q.index) show();  // nothing was on screen
}

async function loadReviews() {
  const reply = await api("api/reviews");
  state.queues.review = { items: reply.items, index: 0, history: [] };
  $("review-count").textContent = `(${reply.items.length})`;
}

async function switchMode(mode) {
  state.mode = mode ?? (state.mode === "label" ? "review" : "label");
  $("tab-label").classList.toggle("active", state.mode === "label");
  $("tab-review").classList.toggle("active", state.mode === "review");
  $("key-model").hidden = state.mode !== "review";
  if (state.mode === "review" && queue().index >= queue().items.length) await loadReviews();
  show();
}

async function setOrder(order) {
  state.order = order;
  localStorage.setItem("label-order", order);
  $("order").value = order;
  await loadLabelQueue();  // the image on screen stays, and so does what is typed for it
}

function cycleOrder() {
  const orders = ["uncertain", "confident", "name"];
  setOrder(orders[(orders.indexOf(state.order) + 1) % orders.length]);
}

// ---------------------------------------------------------------- the model: training and suggestions

async function train() {
  try {
    await api("api/train", { method: "POST" });
    state.trainingState = "running";
    poll();
  } catch (error) {
    showError(`Cannot train: ${error.message}`);
  }
}

async function poll() {
  let info;
  try {
    info = await api("api/state");
  } catch (error) {
    $("model-status").textContent = "the server does not answer";
    return;
  }
  const s = info.suggestions;
  $("model-status").textContent = s.model
    ? `suggestions: ${s.model.split("/").pop()}${s.format ? `, as your labels: ${s.format}` : ""} — ${s.status}`
      + (s.status === "reading" ? ` ${s.done}/${s.total}` : "")
    : "no model yet: type the labels, then train (Alt+T)";
  $("review-count").textContent = `(${info.review_count ?? "?"})`;  // null: a report is unreadable; the queue says why
  const t = info.training;
  $("training").hidden = t.state === "idle";
  const fraction = t.epochs ? t.epoch / t.epochs : 0;
  $("training-fill").style.width = `${100 * (t.state === "done" ? 1 : fraction)}%`;
  const accuracy = t.val_seq_acc === null ? "" : ` · validation accuracy ${(100 * t.val_seq_acc).toFixed(1)}%`;
  $("training-text").textContent = t.state === "running"
    ? `training: epoch ${t.epoch}/${t.epochs || "?"}${accuracy}`
    : `training ${t.state}${accuracy}${t.state.startsWith("failed") && t.log.length ? `: ${t.log[t.log.length - 1]}` : ""}`
      + (t.state === "done" && t.warning ? ` (${t.warning}: label more before trusting it)` : "")
      + (t.state === "done" && info.model_file ? ` · saved as ${info.model_file}` : "");
  $("train").disabled = t.state === "running";
  if (s.generation !== state.generation) await loadLabelQueue();
}

// ---------------------------------------------------------------- keys

document.addEventListener("keydown", (event) => {
  if (event.altKey && !event.ctrlKey && !event.metaKey) {
    const actions = { KeyU: unreadable, KeyO: cycleOrder, KeyT: train, KeyR: () => switchMode(), KeyM: takeModelReading };
    if (actions[event.code]) {
      event.preventDefault();
      actions[event.code]();
    }
  } else if (event.key === "Enter" && event.target === input) {
    event.preventDefault();
    accept(performance.now());
  } else if (event.key === "Escape") {
    event.preventDefault();
    undo();
  }
});

$("order").addEventListener("change", (event) => { setOrder(event.target.value); });
$("train").addEventListener("click", () => { train(); input.focus(); });
$("tab-label").addEventListener("click", () => switchMode("label"));
$("tab-review").addEventListener("click", () => switchMode("review"));
window.addEventListener("beforeunload", (event) => { if (state.unsaved) event.preventDefault(); });

async function start() {
  $("order").value = state.order;
  const info = await api("api/state");
  $("folder").textContent = info.folder;
  await loadLabelQueue();
  await loadReviews();
  if (!state.queues.label.items.length && state.queues.review.items.length) await switchMode("review");
  show();
  showSaving();
  await poll();
  setInterval(poll, 2000);
  state.ready = true;
}

start().catch((error) => showError(`Cannot start: ${error.message}`));
