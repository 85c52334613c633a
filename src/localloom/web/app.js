// LocalLoom web UI: the extension's popup as a page. No build step, no dependencies.
// Modules: core.js (token, API, events, meter), markdown.js (answers as DOM nodes),
// chat.js (conversation mode); this one has models, one-shot prompts, tasks and history.

import {
  $, Meter, api, clearError, showError, signedIn, sseEvents, takeRequestedRecord, textOf,
  watchHash,
} from "./core.js";
import { setupChat } from "./chat.js";
import { renderMarkdown } from "./markdown.js";
import { setupPairing } from "./pair.js";
import { setupTaskOptions } from "./taskopts.js";

const ui = {
  models: [],          // from GET /api/models
  controller: null,    // AbortController of the running one-shot generation or task
  loading: false,      // a model load is running (the Load button waits)
  busy: false,         // a generation runs (one at a time, in either mode)
  chat: null,          // what setupChat returned
  taskOptions: null,   // what setupTaskOptions returned
};

function setStatus(text) {
  $("status").textContent = text;
}

// ---------------------------------------------------------------- models

function formatBytes(n) {
  if (!n) return "size unknown";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
  return `${n.toFixed(n < 10 && i > 0 ? 1 : 0)} ${units[i]}`;
}

function selectedModel() {
  return ui.models.find((m) => m.id === $("model-select").value) || null;
}

// "context 2,048 tokens": what each request gets on this server (the model may be trained
// for more; the runtime caps it, see LOCALLOOM_N_CTX).
function contextText(m) {
  const used = `context ${m.runtime_context.toLocaleString("en-US")} tokens`;
  if (m.runtime_context === m.context_length) return used;
  return `${used} (trained for ${m.context_length.toLocaleString("en-US")})`;
}

function describeModel() {
  const m = selectedModel();
  const loadBtn = $("load-btn");
  const select = $("model-select");
  if (!m) {
    $("model-info").textContent = "No models in the catalog.";
    loadBtn.disabled = true;
    return;
  }
  // The closed picker truncates a long label; the full one shows on hover.
  select.title = select.selectedOptions.length ? select.selectedOptions[0].textContent : "";
  const where = m.loaded ? "loaded" : m.cached ? "downloaded" : "not downloaded yet";
  $("model-info").textContent = `${m.fit.label}: ${m.fit.reason} · ${where} · ${contextText(m)}`
    + (m.capability_label ? ` · ${m.capability_label}` : "")
    + (m.description ? ` · ${m.description}` : "");
  loadBtn.disabled = ui.loading;
  loadBtn.textContent = m.loaded ? "Loaded ✓" : m.cached ? "Load" : "Download and load";
  if (ui.chat) ui.chat.modelChanged();
}

async function refreshModels() {
  const response = await api("/api/models");
  const body = await response.json();
  const keep = $("model-select").value;
  ui.models = body.models;
  const select = $("model-select");
  select.replaceChildren();
  for (const m of ui.models) {
    const option = document.createElement("option");
    option.value = m.id;
    option.textContent =
      `${m.display_name} — ${formatBytes(m.download_size)} · RAM ${m.ram} · ${m.fit.label}` +
      (m.loaded ? " · loaded" : "");
    option.title = option.textContent;
    option.dataset.fit = m.fit.status;
    select.append(option);
  }
  const preferred = ui.models.find((m) => m.id === keep) ||
    ui.models.find((m) => m.loaded) || ui.models.find((m) => m.cached) || ui.models[0];
  if (preferred) select.value = preferred.id;
  const loaded = ui.models.filter((m) => m.loaded).length;
  setStatus(`${ui.models.length} models · ${loaded} loaded`);
  describeModel();
  document.body.dataset.ready = "true";
}

function setProgress(value, text, state) {
  const bar = $("progress");
  bar.value = Math.max(0, Math.min(1, value));
  bar.dataset.state = state;
  $("progress-text").textContent = text;
}

// Loads m with the progress bar running; Load waits meanwhile. Throws what went wrong.
async function loadWithProgress(m, signal) {
  ui.loading = true;
  describeModel();
  setProgress(0, `Loading ${m.display_name}…`, "running");
  try {
    const response = await api(`/api/models/${encodeURIComponent(m.id)}/load`,
                               { method: "POST", signal });
    for await (const { event, data } of sseEvents(response)) {
      const payload = JSON.parse(data);
      if (event === "progress") {
        setProgress(payload.progress, payload.text || "", "running");
      } else if (event === "done") {
        setProgress(1, `${m.display_name} is ready (${payload.load_time_s}s)`, "done");
      } else if (event === "error") {
        throw new Error(payload.error ? payload.error.message : "Loading failed.");
      }
    }
    if ($("progress").dataset.state !== "done") throw new Error("Loading stopped early.");
  } catch (err) {
    setProgress(0, err.name === "AbortError" ? "Loading goes on in the server." : "", "error");
    throw err;
  } finally {
    ui.loading = false;
    await refreshModels().catch((err) => showError(err.message));  // the header's count
  }
}

async function loadModel() {
  const m = selectedModel();
  if (!m || ui.loading) return;
  clearError();
  await loadWithProgress(m).catch((err) => showError(err.message));
}

// A generation on a model that is not loaded loads it first, with the progress bar, instead
// of "generating…" for as long as the load takes. /api/ps is asked, not the list shown,
// because the server may have unloaded the model (keep_alive) since.
async function ensureLoaded(m, statusNode, signal) {
  const ps = await (await api("/api/ps", { signal })).json();
  if (ps.models.some((entry) => entry.id === m.id)) return;
  statusNode.textContent = `loading ${m.display_name}…`;
  await loadWithProgress(m, signal);
}

// One generation at a time, in either mode: every Send and task button waits.
function setBusy(on) {
  ui.busy = on;
  for (const id of ["send-btn", "chat-send"]) $(id).disabled = on;
  for (const b of document.querySelectorAll(".task-btn")) b.disabled = on;
}

// ---------------------------------------------------------------- one-shot generation

function requestFor(m, prompt, maxTokens) {
  const common = { model: m.id, stream: true, stream_options: { include_usage: true },
                   max_tokens: maxTokens };
  if (m.prompt_style === "completion") {
    return ["/v1/completions", { ...common, prompt }];
  }
  return ["/v1/chat/completions", { ...common, messages: [{ role: "user", content: prompt }] }];
}

// A run failed: Stop (an abort) is "stopped"; anything else is "error", shown in the banner.
function failed(err) {
  $("output").dataset.result = err.name === "AbortError" ? "stopped" : "error";
  if (err.name !== "AbortError") showError(err.message);
}

// A run is over: the buttons come back; returns how it ended.
function ended() {
  ui.controller = null;
  setGenerating(false);
  return $("output").dataset.result;
}

function setGenerating(on) {
  setBusy(on);
  $("stop-btn").disabled = !on;
  $("output").dataset.state = on ? "streaming" : "idle";
}

async function send() {
  const m = selectedModel();
  const prompt = $("prompt").value;
  if (!m) return showError("Pick a model first.");
  if (!prompt.trim()) return showError("Type a prompt first.");
  if (ui.busy) return;
  clearError();
  const maxTokens = Math.max(1, parseInt($("max-tokens").value, 10) || 256);
  const [path, body] = requestFor(m, prompt, maxTokens);
  const output = $("output");
  output.textContent = "";
  delete output.dataset.result;  // the last run's ending is no longer this one's
  $("tps").textContent = "–";
  ui.controller = new AbortController();
  setGenerating(true);
  let meter = null;
  try {
    await ensureLoaded(m, $("gen-status"), ui.controller.signal);
    $("gen-status").textContent = "generating…";
    meter = new Meter();
    const response = await api(path, { method: "POST", body: JSON.stringify(body),
                                       signal: ui.controller.signal });
    for await (const { data } of sseEvents(response, ui.controller.signal)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      const text = textOf(chunk);
      if (text) {
        meter.piece();
        output.textContent += text;
      }
      if (chunk.usage) meter.usage(chunk.usage.completion_tokens);
      $("tps").textContent = meter.rateText();
    }
    output.dataset.result = "complete";
  } catch (err) {
    failed(err);
  } finally {
    const result = ended();
    if (meter) $("tps").textContent = meter.rateText();
    const counted = meter ? meter.count : 0;
    $("gen-status").textContent = result === "complete" ? `done · ${meter.summary()}`
      : result === "stopped" ? `stopped after ${counted} tokens` : "failed";
  }
}

function stop() {
  if (ui.controller) ui.controller.abort();
}

// ---------------------------------------------------------------- tasks

// POST /api/tasks/{task}: `delta` and `progress` events, then `done` (or `error`).
async function runTask(task) {
  const m = selectedModel();
  const text = $("prompt").value;
  if (!m) return showError("Pick a model first.");
  if (!text.trim()) return showError("Paste some text to work on first.");
  if (ui.busy) return;
  clearError();
  const body = { text, model: m.id, save: $("save-check").checked,
                 max_tokens: Math.max(1, parseInt($("max-tokens").value, 10) || 256) };
  if (task === "translate") body.to = $("task-to").value.trim();
  const options = ui.taskOptions?.valuesFor(task);
  if (options) {
    body.options = options;
    ui.taskOptions.show(task); // the controls show what this run uses
  }
  const output = $("output");
  output.textContent = "";
  output.classList.remove("markdown");
  delete output.dataset.result;  // the last run's ending is no longer this one's
  output.dataset.task = task;
  $("task-progress").textContent = "";
  $("tps").textContent = "–";
  ui.controller = new AbortController();
  setGenerating(true);
  let done = null;
  // Deltas only: a long text's map-reduce calls stream nothing, so usage would overcount.
  let meter = null;
  try {
    await ensureLoaded(m, $("gen-status"), ui.controller.signal);
    $("gen-status").textContent = `${task}…`;
    meter = new Meter();
    const response = await api(`/api/tasks/${encodeURIComponent(task)}`, {
      method: "POST", body: JSON.stringify(body), signal: ui.controller.signal });
    for await (const { event, data } of sseEvents(response, ui.controller.signal)) {
      const payload = JSON.parse(data);
      if (event === "delta") {
        meter.piece();
        output.textContent += payload.text;
        $("tps").textContent = meter.rateText();
      } else if (event === "progress") {
        $("task-progress").textContent = `${payload.text} (${payload.done}/${payload.total})`;
      } else if (event === "done") done = payload;
      else if (event === "error") throw new Error(payload.error.message);
    }
    if (!done) throw new Error("The task stopped before it finished.");
    // Markdown answers as DOM nodes (markdown.js never makes HTML from model text).
    const markdown = done.options?.format === "markdown";
    output.classList.toggle("markdown", markdown);
    if (markdown) output.replaceChildren(renderMarkdown(done.text));
    else output.textContent = done.text;
    output.dataset.result = "complete";
  } catch (err) {
    failed(err);
  } finally {
    const result = ended();
    const saved = done && done.saved_id ? ` · saved as ${done.saved_id.slice(0, 12)}` : "";
    $("gen-status").textContent = result === "complete"
      ? `${task} done · ${done.usage.completion_tokens} tokens${saved}`
      : result === "stopped" ? `${task} stopped` : `${task} failed`;
    refreshModels().catch(() => {});
    if (done && done.saved_id && !$("history-panel").hidden) {
      await refreshHistory().catch((err) => showError(err.message));
    }
  }
}

// ---------------------------------------------------------------- history

function historyItem(record) {
  const li = document.createElement("li");
  li.dataset.id = record.id;
  const meta = document.createElement("div");
  meta.className = "meta muted";
  meta.textContent = `${record.task} · ${record.model} · ${new Date(record.created_at).toLocaleString()}`;
  const result = document.createElement("div");
  result.className = "result";
  result.textContent = record.result;
  const original = document.createElement("details");
  const summary = document.createElement("summary");
  summary.textContent = "original text";
  const text = document.createElement("div");
  text.className = "result muted";
  text.textContent = record.original;
  original.append(summary, text);
  const del = document.createElement("button");
  del.type = "button";
  del.className = "history-delete";
  del.textContent = "Delete";
  del.addEventListener("click", async () => {
    try {
      await api(`/api/history/${encodeURIComponent(record.id)}`, { method: "DELETE" });
      await refreshHistory();
    } catch (err) { showError(err.message); }
  });
  li.append(meta, result, original, del);
  return li;
}

async function refreshHistory() {
  const q = $("history-search").value.trim();
  const params = new URLSearchParams({ limit: "50" });
  if (q) params.set("q", q);
  const list = $("history-list");
  list.dataset.state = "loading";
  const page = await (await api(`/api/history?${params}`)).json();
  list.replaceChildren(...page.results.map(historyItem));
  $("history-count").textContent = q
    ? `${page.results.length} result(s) for “${q}”`
    : `${page.total} saved result(s)`;
  list.dataset.state = "ready";
}

// A download needs the token too, so it is fetched and handed over as a blob.
async function exportHistory(format) {
  const response = await api(`/api/history/export?format=${encodeURIComponent(format)}`);
  const blob = await response.blob();
  const named = /filename="?([^";]+)"?/.exec(response.headers.get("content-disposition") || "");
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = named ? named[1] : `localloom-history.${format}`;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

// One saved result asked for by the URL (#history=<id>): the history opens with it first,
// marked, scrolled to and focused.
const SIGN_IN_TO_OPEN = "Sign in to see this saved result: open the URL that `localloom "
  + "serve` printed (it ends in #token=...) in this tab; the result opens then.";

async function openSavedResult(id) {
  if (!signedIn()) {
    showError(SIGN_IN_TO_OPEN);
    return;
  }
  const panel = $("history-panel");
  if (panel.hidden) toggleHistory(false);
  const record = await (await api(`/api/history/${encodeURIComponent(id)}`)).json();
  await refreshHistory();
  const list = $("history-list");
  let item = [...list.children].find((li) => li.dataset.id === record.id);
  if (!item) {
    item = historyItem(record);
    list.prepend(item);
  }
  for (const li of list.children) delete li.dataset.opened;
  item.dataset.opened = "true";
  item.tabIndex = -1;
  item.scrollIntoView({ block: "start" });
  item.focus({ preventScroll: true });
}

function toggleHistory(refresh = true) {
  const panel = $("history-panel");
  panel.hidden = !panel.hidden;
  $("history-toggle").textContent = panel.hidden ? "Show" : "Hide";
  $("history-toggle").setAttribute("aria-expanded", String(!panel.hidden));
  if (!panel.hidden && refresh) refreshHistory().catch((err) => showError(err.message));
}

// ---------------------------------------------------------------- modes

const MODE_KEY = "localloom-mode";

// One-shot (prompt, tasks, output) or chat; the choice lasts for this tab.
function showMode(mode) {
  for (const [name, view] of [["oneshot", "oneshot-view"], ["chat", "chat-view"]]) {
    const on = name === mode;
    $(view).hidden = !on;
    $(`mode-${name}`).setAttribute("aria-selected", String(on));
  }
  document.body.dataset.mode = mode;
  sessionStorage.setItem(MODE_KEY, mode);
}

// ---------------------------------------------------------------- wiring

document.addEventListener("DOMContentLoaded", () => {
  ui.chat = setupChat({ selectedModel, ensureLoaded, setBusy });
  setupPairing();
  showMode(sessionStorage.getItem(MODE_KEY) === "chat" ? "chat" : "oneshot");
  $("mode-oneshot").addEventListener("click", () => showMode("oneshot"));
  $("mode-chat").addEventListener("click", () => showMode("chat"));
  $("model-select").addEventListener("change", () => { clearError(); describeModel(); });
  $("load-btn").addEventListener("click", loadModel);
  $("send-btn").addEventListener("click", send);
  $("stop-btn").addEventListener("click", stop);
  $("error-close").addEventListener("click", clearError);
  // Delegated: the buttons of the user's tasks are added once /api/tasks answers.
  $("task-buttons").addEventListener("click", (e) => {
    const button = e.target.closest(".task-btn");
    if (button) runTask(button.dataset.task);
  });
  $("history-toggle").addEventListener("click", () => toggleHistory());
  const openRecord = (id) => openSavedResult(id).catch((err) => showError(err.message));
  watchHash(openRecord);

  for (const format of ["json", "md", "csv"]) {
    $(`export-${format}`).addEventListener("click", (e) => {
      e.preventDefault();
      exportHistory(format).catch((err) => showError(err.message));
    });
  }
  $("history-search-btn").addEventListener("click",
    () => refreshHistory().catch((err) => showError(err.message)));
  $("history-search").addEventListener("keydown", (e) => {
    if (e.key === "Enter") refreshHistory().catch((err) => showError(err.message));
  });
  $("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) send();
  });
  const requested = takeRequestedRecord();
  ui.taskOptions = setupTaskOptions();
  // Without a sign-in this fails too; refreshModels below says what to do.
  ui.taskOptions.ready.then(() => { $("task-options").dataset.ready = "true"; }, () => {});
  refreshModels().then(() => { if (requested) openRecord(requested); }).catch((err) => {
    setStatus("offline");
    showError(requested && !signedIn() ? SIGN_IN_TO_OPEN : err.message);
  });
});
