// What every part of the page shares: sign-in token, the API call, server-sent events, the
// error banner and an honest tokens/s meter.
//
// The sign-in URL carries the token in its fragment (#token=...), which no server sees. The
// page keeps it in this tab's sessionStorage (this origin only, port included: a program on
// another port of 127.0.0.1 cannot read it, as it could a cookie) and sends it as a header.

const TOKEN_KEY = "localloom-token";
// A saved result to show (#history=<id>, as the browser extension's "Open in LocalLoom"
// links): kept for this tab until the page is signed in and opens it.
const OPEN_KEY = "localloom-open-history";

function takeToken() {
  const hash = window.location.hash;
  const found = /(?:^#|&)token=([^&]+)/.exec(hash);
  const wanted = /(?:^#|&)history=([^&]+)/.exec(hash);
  if (found) sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(found[1]));
  if (wanted) sessionStorage.setItem(OPEN_KEY, decodeURIComponent(wanted[1]));
  if (found || wanted) {
    // Out of the address bar, the history and any bookmark.
    history.replaceState(null, "", window.location.pathname + window.location.search);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

const token = takeToken();

/** True when this tab holds a token (opened from the sign-in URL). */
export const signedIn = () => Boolean(token);

/** The saved result asked for in the URL (#history=<id>), once: null when there is none. */
export function takeRequestedRecord() {
  const id = sessionStorage.getItem(OPEN_KEY);
  if (id && token) sessionStorage.removeItem(OPEN_KEY);
  return id;
}

/** The address changed in place (the extension reusing this tab, or the sign-in URL pasted
 * into it): a new token needs a fresh start; a saved result is handed to `onRecord`. */
export function watchHash(onRecord) {
  window.addEventListener("hashchange", () => {
    if (/(?:^#|&)token=/.test(window.location.hash)) {
      window.location.reload();
      return;
    }
    takeToken();
    const id = takeRequestedRecord();
    if (id) onRecord(id);
  });
}

export const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- errors

export function showError(message) {
  $("error-text").textContent = message;
  $("error").hidden = false;
}

export function clearError() {
  $("error").hidden = true;
  $("error-text").textContent = "";
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

/** fetch() with the token and JSON headers; a non-2xx answer throws its message. */
export async function api(path, options = {}) {
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

/** Yields {event, data} for each event of a text/event-stream response body. After
 * `signal` aborts (Stop), events already read are dropped: nothing shows up after Stop. */
export async function* sseEvents(response, signal = null) {
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
      if (signal && signal.aborted) throw new DOMException("Stopped.", "AbortError");
      if (data.length) yield { event, data: data.join("\n") };
    }
  }
}

/** The text of one streamed chat or completion chunk. */
export function textOf(chunk) {
  const choice = chunk.choices && chunk.choices[0];
  if (!choice) return "";
  if (choice.delta) return choice.delta.content || "";
  return choice.text || "";
}

// ---------------------------------------------------------------- tokens/s

// Below this many seconds between the first and the last token, or with fewer tokens after
// the first, a rate says more about network buffering than about the model: none is shown
// (one token 0.1 ms after another once read as "10000.0 tokens/s").
const MIN_SPAN_S = 0.25;
const MIN_STEPS = 2;

/** Times one generation: time to first token, and tokens/s after the first token. */
export class Meter {
  constructor() {
    this.start = performance.now();
    this.first = 0;
    this.last = 0;
    this.pieces = 0;
    this.tokens = null;  // the server's count (usage), once it arrives
  }

  /** A piece of text arrived (one token, or a few when they arrive together). */
  piece() {
    const now = performance.now();
    if (!this.first) this.first = now;
    this.last = now;
    this.pieces += 1;
  }

  usage(completionTokens) { this.tokens = completionTokens; }

  get count() { return this.tokens ?? this.pieces; }

  /** Tokens/s after the first token, or null when there is too little to tell. */
  rate() {
    const span = (this.last - this.first) / 1000;
    const steps = this.count - 1;
    return steps >= MIN_STEPS && span >= MIN_SPAN_S ? steps / span : null;
  }

  /** The rate as the page shows it: one decimal, or "–". */
  rateText() {
    const r = this.rate();
    return r === null ? "–" : r.toFixed(1);
  }

  /** "12 tokens · first after 0.31 s" (the count only when nothing arrived). */
  summary() {
    const n = this.count;
    const words = `${n} token${n === 1 ? "" : "s"}`;
    if (!this.first) return words;
    return `${words} · first after ${((this.first - this.start) / 1000).toFixed(2)} s`;
  }
}
