// The extension's client for `localloom serve`: settings, status, JSON calls, SSE streams.
// Only extension pages and the service worker use it; content scripts go through the
// service worker, so the token never enters a web page's process.
import { ext } from "./browser.js";

// taskOptions: the options last chosen in the card, per task ({summarize: {type: ...}}).
export const DEFAULTS = { port: 8765, token: "", lastTask: "summarize", model: "",
  taskOptions: {} };

export const BUILTIN_TASKS = [
  { name: "summarize", label: "Summarize" },
  { name: "rewrite", label: "Rewrite" },
  { name: "counter", label: "Counter-argument" },
  { name: "question", label: "Question" },
  { name: "translate", label: "Translate" },
];

/** A failure the user can act on: `kind` picks what the UI says. */
export class ServerError extends Error {
  constructor(kind, message, status = 0) {
    super(message);
    this.kind = kind; // not_running | not_paired | forbidden | http | interrupted
    this.status = status;
  }
}

export async function settings() {
  const stored = await ext.storage.local.get(Object.keys(DEFAULTS));
  return { ...DEFAULTS, ...stored };
}

export async function saveSettings(values) {
  await ext.storage.local.set(values);
}

export function origin() {
  return new URL(ext.runtime.getURL("")).origin;
}

export function startCommand(port) {
  return port === 8765 ? "localloom serve" : `localloom serve --port ${port}`;
}

export function pairCommand() {
  return `localloom pair ${origin()}`;
}

function base(cfg) {
  return `http://127.0.0.1:${cfg.port}`;
}

async function send(path, { method = "GET", body, signal, auth = true } = {}) {
  const cfg = await settings();
  const headers = { Accept: "application/json" };
  if (auth && cfg.token) headers.Authorization = `Bearer ${cfg.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(base(cfg) + path, {
      method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit", cache: "no-store",
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ServerError("not_running",
      `LocalLoom is not running on port ${cfg.port}. Start it with: ${startCommand(cfg.port)}`);
  }
  if (response.status === 401 || (response.status === 403 && !cfg.token)) {
    throw new ServerError("not_paired", `This extension is not paired. Run: ${pairCommand()} ` +
      "and paste the token it prints into the popup.", response.status);
  }
  if (!response.ok) {
    const message = await errorMessage(response);
    const kind = response.status === 403 ? "forbidden" : "http";
    throw new ServerError(kind, message, response.status);
  }
  return response;
}

async function errorMessage(response) {
  try {
    const data = await response.json();
    return data?.error?.message || data?.detail || `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

export async function getJSON(path, options = {}) {
  return (await send(path, options)).json();
}

export async function postJSON(path, body) {
  return (await send(path, { method: "POST", body })).json();
}

export async function del(path) {
  return (await send(path, { method: "DELETE" })).json();
}

/** Something answers on the port, even if CORS hides the answer from us (the server
 * refuses origins it has not paired, and the browser then reports a network error). */
async function answers(cfg) {
  try {
    await fetch(`${base(cfg)}/health`, { mode: "no-cors", cache: "no-store", credentials: "omit" });
    return true;
  } catch {
    return false;
  }
}

/** running | not_running | not_paired, with what to tell the user. */
export async function status() {
  const cfg = await settings();
  try {
    const health = await send("/health", { auth: false });
    await health.json();
  } catch (error) {
    if (error.kind === "not_running" && !(await answers(cfg))) {
      return { state: "not_running", command: startCommand(cfg.port), port: cfg.port };
    }
    if (!(error instanceof ServerError)) throw error;
    // 403 on /health: this origin is not on the allowlist, i.e. not paired (or revoked).
    return { state: "not_paired", command: pairCommand(), port: cfg.port };
  }
  if (!cfg.token) return { state: "not_paired", command: pairCommand(), port: cfg.port };
  try {
    const info = await getJSON("/api/status");
    return { state: "running", port: cfg.port, info };
  } catch (error) {
    if (error.kind === "not_running") {
      return { state: "not_running", command: startCommand(cfg.port), port: cfg.port };
    }
    return { state: "not_paired", command: pairCommand(), port: cfg.port,
             message: error.message };
  }
}

/** POST a JSON body and yield the server-sent events ({event, data}) as they arrive. */
export async function* stream(path, body, signal) {
  const response = await send(path, { method: "POST", body, signal });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let finished = false;
  try {
    while (true) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (error) {
        if (signal?.aborted) return;
        throw new ServerError("interrupted",
          "The connection to LocalLoom broke mid-answer (the server stopped or restarted). " +
          "The text so far is kept; run the task again for a full answer.");
      }
      if (chunk.done) break;
      buffer += decoder.decode(chunk.value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const event = parseFrame(frame);
        if (event) {
          if (event.event === "done" || event.event === "error") finished = true;
          yield event;
        }
      }
    }
  } finally {
    reader.releaseLock?.();
  }
  if (!finished && !signal?.aborted) {
    throw new ServerError("interrupted",
      "LocalLoom ended the answer early (the server stopped or restarted). The text so far " +
      "is kept; run the task again for a full answer.");
  }
}

function parseFrame(frame) {
  let event = "message";
  const data = [];
  for (const line of frame.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
  }
  if (!data.length) return null;
  try {
    return { event, data: JSON.parse(data.join("\n")) };
  } catch {
    return { event, data: data.join("\n") };
  }
}

/** Every task: the built-in ones first, then the user's from /api/tasks; each with its
 * options' metadata (what the card builds its controls from). */
export async function tasks() {
  try {
    const listed = (await getJSON("/api/tasks")).tasks;
    const byName = new Map(listed.map((t) => [t.name, t]));
    const known = new Set(BUILTIN_TASKS.map((t) => t.name));
    const builtin = BUILTIN_TASKS.filter((t) => byName.has(t.name));
    const extra = listed.filter((t) => !known.has(t.name)).map((t) => ({ name: t.name, label: t.name }));
    return [...builtin, ...extra].map((t) => ({ ...t, options: byName.get(t.name).options || [] }));
  } catch {
    return BUILTIN_TASKS.map((t) => ({ ...t, options: [] }));
  }
}
