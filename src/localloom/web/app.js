// LocalLoom web UI: the extension's popup as a page. No build step, no dependencies.
// The sign-in URL carries the token in its fragment (#token=...), which no server sees. The
// page keeps it in this tab's sessionStorage (this origin only, port included: a program on
// another port of 127.0.0.1 cannot read it, as it could a cookie) and sends it as a header.
"use strict";

const TOKEN_KEY = "localloom-token";

function takeToken() {
  const found = /(?:^#|&)token=([^&]+)/.exec(window.location.hash);
  if (found) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(found[1]));
    // Out of the address bar, the history and any bookmark.
    history.replaceState(null, "", window.location.pathname + window.location.search);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

const token = takeToken();

const $ = (id) => document.getElementById(id);
const ui = {
  models: [],          // from GET /api/models
  controller: null,    // AbortController of the running generation
  loading: false,
};

// ---------------------------------------------------------------- errors and status

function showError(message) {
  $("error-text").textContent = message;
  $("error").hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error-text").textContent = "";
}

function setStatus(text) {
  $("status").textContent = text;
}

// A non-2xx answer: OpenAI's {"error": {"message": ...}} body, or the status line.
async function errorFrom(response) {
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return new Error(body.error.message);
  } catch (_) { /* not JSON */ }
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);  // a token from an earlier server start
    return new Error("Not signed in: open the URL that `localloom serve` printed "
                     + "(it ends in #token=...).");
  }
  return new Error(`The server answered ${response.status} ${response.statusText}.`);
}

async function api(path, options = {}) {
  const init = { ...options, headers: { Accept: "application/json", ...(options.headers || {}) } };
  if (init.body !== undefined) init.headers["Content-Type"] = "application/json";
  if (token) init.headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new Error("Cannot reach the LocalLoom server. Is `localloom serve` still running?");
  }
  if (!response.ok) throw await errorFrom(response);
  return response;
}

// ---------------------------------------------------------------- server-sent events

// Yields {event, data} for each event of a text/event-stream response body.
async function* sseEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { event, data: data.join("\n") };
    }
  }
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

function describeModel() {
  const m = selectedModel();
  const loadBtn = $("load-btn");
  if (!m) {
    $("model-info").textContent = "No models in the catalog.";
    loadBtn.disabled = true;
    return;
  }
  const where = m.loaded ? "loaded" : m.cached ? "downloaded" : "not downloaded yet";
  $("model-info").textContent =
    `${m.fit.label}: ${m.fit.reason} · ${where} · context ${m.context_length} tokens` +
    (m.description ? ` · ${m.description}` : "");
  loadBtn.disabled = ui.loading;
  loadBtn.textContent = m.loaded ? "Loaded ✓" : m.cached ? "Load" : "Download and load";
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

async function loadModel() {
  const m = selectedModel();
  if (!m || ui.loading) return;
  clearError();
  ui.loading = true;
  describeModel();
  setProgress(0, `Loading ${m.display_name}…`, "running");
  try {
    const response = await api(`/api/models/${encodeURIComponent(m.id)}/load`, { method: "POST" });
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
    setProgress(0, "", "error");
    showError(err.message);
  } finally {
    ui.loading = false;
    await refreshModels().catch((err) => showError(err.message));
  }
}

// ---------------------------------------------------------------- generation

function requestFor(m, prompt, maxTokens) {
  const common = { model: m.id, stream: true, stream_options: { include_usage: true },
                   max_tokens: maxTokens };
  if (m.prompt_style === "completion") {
    return ["/v1/completions", { ...common, prompt }];
  }
  return ["/v1/chat/completions", { ...common, messages: [{ role: "user", content: prompt }] }];
}

function textOf(chunk) {
  const choice = chunk.choices && chunk.choices[0];
  if (!choice) return "";
  if (choice.delta) return choice.delta.content || "";
  return choice.text || "";
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
  $("send-btn").disabled = on;
  for (const b of document.querySelectorAll(".task-btn")) b.disabled = on;
  $("stop-btn").disabled = !on;
  $("output").dataset.state = on ? "streaming" : "idle";
  if (on) $("gen-status").textContent = "generating…";
}

async function send() {
  const m = selectedModel();
  const prompt = $("prompt").value;
  if (!m) return showError("Pick a model first.");
  if (!prompt.trim()) return showError("Type a prompt first.");
  clearError();
  const maxTokens = Math.max(1, parseInt($("max-tokens").value, 10) || 256);
  const [path, body] = requestFor(m, prompt, maxTokens);
  const output = $("output");
  output.textContent = "";
  $("tps").textContent = "–";
  ui.controller = new AbortController();
  setGenerating(true);
  let first = 0;
  let pieces = 0;
  let tokens = 0;
  try {
    const response = await api(path, { method: "POST", body: JSON.stringify(body),
                                       signal: ui.controller.signal });
    for await (const { data } of sseEvents(response)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      const text = textOf(chunk);
      if (text) {
        if (!first) first = performance.now();
        pieces += 1;
        output.textContent += text;
      }
      const seconds = (performance.now() - first) / 1000;
      tokens = chunk.usage ? chunk.usage.completion_tokens : pieces;
      if (first && seconds > 0) $("tps").textContent = (tokens / seconds).toFixed(1);
    }
    output.dataset.result = "complete";
  } catch (err) {
    failed(err);
  } finally {
    const result = ended();
    $("gen-status").textContent = result === "complete" ? `done · ${tokens} tokens`
      : result === "stopped" ? `stopped after ${tokens} tokens` : "failed";
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
  clearError();
  const body = { text, model: m.id, save: $("save-check").checked,
                 max_tokens: Math.max(1, parseInt($("max-tokens").value, 10) || 256) };
  if (task === "translate") body.to = $("task-to").value.trim();
  const output = $("output");
  output.textContent = "";
  output.dataset.task = task;
  $("task-progress").textContent = "";
  $("tps").textContent = "–";
  ui.controller = new AbortController();
  setGenerating(true);
  let done = null;
  try {
    const response = await api(`/api/tasks/${encodeURIComponent(task)}`, {
      method: "POST", body: JSON.stringify(body), signal: ui.controller.signal });
    for await (const { event, data } of sseEvents(response)) {
      const payload = JSON.parse(data);
      if (event === "delta") output.textContent += payload.text;
      else if (event === "progress") {
        $("task-progress").textContent = `${payload.text} (${payload.done}/${payload.total})`;
      } else if (event === "done") done = payload;
      else if (event === "error") throw new Error(payload.error.message);
    }
    if (!done) throw new Error("The task stopped before it finished.");
    output.textContent = done.text;
    output.dataset.result = "complete";
  } catch (err) {
    failed(err);
  } finally {
    const result = ended();
    const saved = done && done.saved_id ? ` · saved as ${done.saved_id.slice(0, 12)}` : "";
    $("gen-status").textContent = result === "complete"
      ? `${task} done · ${done.usage.completion_tokens} tokens${saved}`
      : result === "stopped" ? `${task} stopped` : `${task} failed`;
    refreshModels().catch(() => {});  // the task may have loaded the model
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

function toggleHistory() {
  const panel = $("history-panel");
  panel.hidden = !panel.hidden;
  $("history-toggle").textContent = panel.hidden ? "Show" : "Hide";
  $("history-toggle").setAttribute("aria-expanded", String(!panel.hidden));
  if (!panel.hidden) refreshHistory().catch((err) => showError(err.message));
}

// ---------------------------------------------------------------- wiring

document.addEventListener("DOMContentLoaded", () => {
  $("model-select").addEventListener("change", () => { clearError(); describeModel(); });
  $("load-btn").addEventListener("click", loadModel);
  $("send-btn").addEventListener("click", send);
  $("stop-btn").addEventListener("click", stop);
  $("error-close").addEventListener("click", clearError);
  for (const b of document.querySelectorAll(".task-btn")) {
    b.addEventListener("click", () => runTask(b.dataset.task));
  }
  $("history-toggle").addEventListener("click", toggleHistory);
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
  refreshModels().catch((err) => {
    setStatus("offline");
    showError(err.message);
  });
});
