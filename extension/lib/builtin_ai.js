// The service worker's half of the built-in AI APIs that page_ai.js offers to pages. Each
// call arrives on its own port from ai_bridge.js; the page's origin comes from the
// browser's sender information (never from the message). A call runs only when the user
// allowed that origin (popup > "Let this site use the local model"; off by default,
// revocable, the list in the side panel), within the origin's rate limit, and only as a
// task request this file builds itself: a page cannot pick the model, save to the history,
// read it, or see the token.
import { ext } from "./browser.js";
import * as server from "./server.js";

// aiMaxTokens caps a LanguageModel answer (Chrome's API has no such option; a base model
// may otherwise go on to the end of its context).
export const AI_DEFAULTS = { aiOrigins: [], aiPerMinute: 20, aiConcurrent: 2, aiMaxTokens: 512 };
const TASK_OF = { Summarizer: "summarize", Rewriter: "rewrite", Writer: "write",
  Proofreader: "proofread", Translator: "translate" };
const METHODS = { Summarizer: "summarize", Rewriter: "rewrite", Writer: "write",
  Proofreader: "proofread", Translator: "translate", LanguageDetector: "detect",
  LanguageModel: "prompt" };
const ROLES = ["system", "user", "assistant"];
// What each API passes on as the task's options (the rest of a page's object is dropped).
const OPTION_NAMES = { Summarizer: ["type", "length", "format"],
  Rewriter: ["tone", "length", "format"], Writer: ["tone", "length", "format"] };
const DEFAULT_QUOTA = 4096;

/** An error the page sees as a DOMException of this name. */
export class PageError extends Error {
  constructor(name, message) {
    super(message);
    this.domName = name;
  }
}

/** The web origin of a content script's frame, or null (not a tab, not http/https). */
export function originOf(sender) {
  if (!sender?.tab || sender.id !== ext.runtime.id) return null;
  try {
    const url = new URL(sender.origin || sender.url || "");
    return /^https?:$/.test(url.protocol) ? url.origin : null;
  } catch {
    return null;
  }
}

async function aiSettings() {
  return { ...AI_DEFAULTS, ...(await ext.storage.local.get(Object.keys(AI_DEFAULTS))) };
}

/** The origins the user allowed, oldest first. */
export async function allowedOrigins() {
  return (await aiSettings()).aiOrigins;
}

/** Let `origin` (e.g. "https://example.com") use the local model through the APIs. */
export async function allowOrigin(origin) {
  const origins = await allowedOrigins();
  if (!origins.includes(origin)) await ext.storage.local.set({ aiOrigins: [...origins, origin] });
}

/** Take the permission back; the origin's calls fail from the next one on. */
export async function revokeOrigin(origin) {
  const origins = await allowedOrigins();
  await ext.storage.local.set({ aiOrigins: origins.filter((o) => o !== origin) });
}

/** Per origin: a token bucket of `perMinute` calls refilled over a minute, and at most
 * `concurrent` calls at once. Kept in the worker's memory (a restarted worker starts full). */
export class RateLimiter {
  constructor() {
    this.buckets = new Map();
  }

  /** Count one call; returns its release function, or throws QuotaExceededError. */
  take(origin, perMinute, concurrent, now = Date.now()) {
    const b = this.buckets.get(origin) || { tokens: perMinute, at: now, running: 0 };
    b.tokens = Math.min(perMinute, b.tokens + ((now - b.at) * perMinute) / 60_000);
    b.at = now;
    this.buckets.set(origin, b);
    if (b.running >= concurrent) {
      throw new PageError("QuotaExceededError", `LocalLoom runs at most ${concurrent} ` +
        `call(s) at a time for ${origin}: wait for one to finish (or abort it) first.`);
    }
    if (b.tokens < 1) {
      const wait = Math.ceil(((1 - b.tokens) * 60) / perMinute);
      throw new PageError("QuotaExceededError", `${origin} made more than ${perMinute} ` +
        `calls to LocalLoom in a minute: try again in ${wait} s.`);
    }
    b.tokens -= 1;
    b.running += 1;
    let released = false;
    return () => {
      if (!released) b.running -= 1;
      released = true;
    };
  }
}

function refused(origin) {
  return new PageError("NotAllowedError", `${origin} may not use LocalLoom's local model: ` +
    "the user has not allowed this site (LocalLoom's popup > Let this site use the local " +
    "model).");
}

/** The port handler and the state behind it. `missingModel(cfg)` is the worker's check
 * of the task model (null when it is downloaded, else what can be done). */
export function builtinAI({ missingModel }) {
  const limiter = new RateLimiter();
  const asked = new Set(); // origins refused at create(): the popup offers to allow them

  async function availability(origin, payload) {
    if (!(String(payload.api) in METHODS)) return "unavailable";
    if (!(await allowedOrigins()).includes(origin)) return "downloadable";
    try {
      const missing = await missingModel(await server.settings());
      if (!missing) return "available";
      return missing.canPull ? "downloadable" : "unavailable";
    } catch {
      return "unavailable"; // not running, not paired
    }
  }

  async function create(origin, payload, signal, post) {
    if (!(await allowedOrigins()).includes(origin)) {
      asked.add(origin);
      throw refused(origin);
    }
    const api = String(payload.api);
    if (!(api in METHODS)) {
      throw new PageError("NotSupportedError", `LocalLoom does not offer ${api} yet.`);
    }
    let missing;
    try {
      missing = await missingModel(await server.settings());
    } catch (error) {
      throw new PageError("NotSupportedError", error.message);
    }
    if (missing && !missing.canPull) {
      throw new PageError("NotSupportedError", `The model ${missing.id} is not downloaded: ` +
        `run ${missing.commands.join(" or ")}.`);
    }
    if (missing) await pull(missing.id, signal, post);
    return { inputQuota: DEFAULT_QUOTA };
  }

  async function pull(id, signal, post) {
    for await (const { event, data } of server.stream(
      `/api/models/${encodeURIComponent(id)}/pull`, undefined, signal)) {
      if (event === "progress") post({ type: "progress", loaded: data.progress || 0 });
      else if (event === "error") {
        throw new PageError("NetworkError", data?.error?.message || "The download failed.");
      }
    }
    post({ type: "progress", loaded: 1 });
  }

  async function run(origin, payload, signal, post) {
    const cfg = { ...(await server.settings()), ...(await aiSettings()) };
    if (!cfg.aiOrigins.includes(origin)) throw refused(origin);
    const api = String(payload.api);
    if (METHODS[api] !== payload.method) {
      throw new PageError("NotSupportedError", `LocalLoom does not offer ${api}.` +
        `${payload.method}().`);
    }
    const input = String(payload.input ?? "");
    const release = limiter.take(origin, Number(cfg.aiPerMinute), Number(cfg.aiConcurrent));
    try {
      if (api === "LanguageDetector") {
        const { candidates } = await server.postJSON("/api/language", { text: input });
        const results = candidates.map((c) => ({ detectedLanguage: c.language,
          confidence: c.confidence }));
        const rest = 1 - results.reduce((sum, r) => sum + r.confidence, 0);
        return { results: [...results, { detectedLanguage: "und", confidence: Math.max(0, rest) }] };
      }
      if (api === "LanguageModel") return await chat(payload, cfg, signal, post);
      if (!input.trim()) return { text: "", corrections: [] };
      return await task(taskBody(api, payload, cfg, input), TASK_OF[api], signal, post);
    } finally {
      release();
    }
  }

  async function task(body, name, signal, post) {
    let result = null;
    for await (const { event, data } of server.stream(
      `/api/tasks/${encodeURIComponent(name)}`, body, signal)) {
      if (event === "delta") post({ type: "delta", text: data.text });
      else if (event === "done") result = data;
      else if (event === "error") {
        throw new PageError("OperationError", data?.error?.message || "The task failed.");
      }
    }
    if (!result) throw new PageError("AbortError", "The call was aborted.");
    return { text: result.text, corrections: (result.corrections || []).map((c) => ({
      startIndex: c.start, endIndex: c.end, correction: c.correction })) };
  }

  /** LanguageModel: the conversation so far (the page keeps it) to the chat API, streamed. */
  async function chat(payload, cfg, signal, post) {
    const messages = (Array.isArray(payload.messages) ? payload.messages : []).map((m) => ({
      role: ROLES.includes(m?.role) ? m.role : "user", content: String(m?.content ?? "") }));
    const body = { model: await chatModel(cfg), messages, stream: true,
      max_tokens: Number(cfg.aiMaxTokens) };
    const temperature = Number(payload.options?.temperature);
    if (Number.isFinite(temperature)) body.temperature = Math.min(2, Math.max(0, temperature));
    let text = "";
    for await (const { data } of server.stream("/v1/chat/completions", body, signal)) {
      if (data === "[DONE]") return { text };
      if (data?.error) throw new PageError("OperationError", data.error.message || "Failed.");
      const delta = data?.choices?.[0]?.delta?.content;
      if (delta) {
        text += delta;
        post({ type: "delta", text: delta });
      }
    }
    return { text };
  }

  const ops = { availability, create, run };

  function onConnect(port) {
    const origin = originOf(port.sender);
    if (!origin) {
      port.disconnect();
      return;
    }
    const abort = new AbortController();
    port.onDisconnect.addListener(() => abort.abort()); // the page aborted, or left
    const post = (data) => { try { port.postMessage(data); } catch { /* port closed */ } };
    port.onMessage.addListener(async ({ op, payload } = {}) => {
      try {
        if (!(op in ops)) throw new PageError("NotSupportedError", `Unknown call '${op}'.`);
        post({ type: "done", result: await ops[op](origin, payload || {}, abort.signal, post) });
      } catch (error) {
        if (abort.signal.aborted) return;
        post({ type: "error", name: error.domName || "OperationError", message: error.message });
      }
    });
  }

  return { onConnect, limiter, asked };
}

/** The model a page's prompt goes to: the extension's choice, else a loaded one, else the
 * starter (what tasks use too). */
async function chatModel(cfg) {
  if (cfg.model) return cfg.model;
  const { models } = await server.getJSON("/api/models");
  return models.find((m) => m.loaded)?.id || "gemma3-270m-starter";
}

/** The task request for one call: only the fields this API maps, never `save` or `model`
 * from the page (the model is the extension's setting). */
function taskBody(api, payload, cfg, input) {
  const given = payload.options || {};
  const body = { text: input };
  if (cfg.model) body.model = cfg.model;
  const names = OPTION_NAMES[api];
  if (names) body.options = Object.fromEntries(names.filter((n) => given[n] !== undefined)
    .map((n) => [n, String(given[n])]));
  if (api === "Translator") {
    body.to = String(given.targetLanguage);
    body.options = { from: String(given.sourceLanguage || "auto") };
  }
  if (given.outputLanguage) body.lang = String(given.outputLanguage);
  const context = [given.sharedContext, payload.context].filter((c) => c).join("\n\n");
  if (context) body.context = context;
  return body;
}
