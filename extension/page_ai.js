// Chrome's built-in AI APIs (Summarizer, Rewriter, Writer, Proofreader, Translator,
// LanguageDetector, LanguageModel) for pages whose browser lacks them, backed by
// `localloom serve`. This file runs in the page's own world (MAIN) on sites where the
// extension runs, so page scripts see the globals; it holds no secret. A name the browser
// lacks is defined; where the browser has one (Chromium 138+ has Summarizer, Translator,
// LanguageDetector and LanguageModel), availability() and create() ask it first and use
// it when its model is on the device ("available", or "downloading"): Chrome's own model
// wins whenever it is there.
//
// Calls go to the extension's isolated content script (ai_bridge.js) over a private
// MessageChannel whose port is handed over once, before any page script runs; the bridge
// relays them to the service worker, which checks that the user allowed this origin,
// applies the per-origin rate limit and calls the server with the token it alone holds.
(() => {
  "use strict";
  const TAG = "localloom-builtin-ai";
  const NAMES = ["Summarizer", "Rewriter", "Writer", "Proofreader", "Translator",
    "LanguageDetector", "LanguageModel"];

  // ---------------------------------------------------------------- the channel

  const calls = new Map(); // id -> {onEvent}
  const waiting = []; // calls made before the bridge took the port
  let nextId = 1;
  let port = null;

  function onReply(event) {
    const data = event.data || {};
    const call = calls.get(data.id);
    if (call) call.onEvent(data);
  }

  /** Offer a fresh port; the bridge acknowledges the first one it takes. */
  function offer() {
    const channel = new MessageChannel();
    channel.port1.onmessage = (event) => {
      if (port || event.data?.kind !== "ack") return;
      port = channel.port1;
      port.onmessage = onReply;
      for (const message of waiting.splice(0)) port.postMessage(message);
    };
    window.postMessage({ tag: TAG, kind: "hello" }, "*", [channel.port2]);
  }

  function send(message) {
    if (port) port.postMessage(message);
    else waiting.push(message);
  }
  // The bridge may start after this script: it says so, and gets a port then.
  window.addEventListener("message", (event) => {
    if (!port && event.source === window && event.data?.tag === TAG &&
        event.data.kind === "ready") offer();
  });
  offer();

  function abortReason(signal) {
    return signal.reason ?? new DOMException("The operation was aborted.", "AbortError");
  }

  /** One call to the service worker: resolves with its `done` data, rejects with a
   * DOMException; `onDelta` and `onProgress` see what streams in between. */
  function request(op, payload, { signal, onDelta, onProgress } = {}) {
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    const id = nextId++;
    return new Promise((resolve, reject) => {
      const finish = () => {
        calls.delete(id);
        signal?.removeEventListener("abort", onAbort);
      };
      const onAbort = () => {
        send({ id, op: "abort" });
        finish();
        reject(abortReason(signal));
      };
      calls.set(id, {
        onEvent(data) {
          if (data.type === "delta") onDelta?.(data.text);
          else if (data.type === "progress") onProgress?.(data.loaded);
          else if (data.type === "done") { finish(); resolve(data.result); }
          else if (data.type === "error") {
            finish();
            reject(new DOMException(data.message, data.name || "OperationError"));
          }
        },
      });
      signal?.addEventListener("abort", onAbort, { once: true });
      send({ id, op, payload });
    });
  }

  /** A ReadableStream of the answer's string chunks (deltas), as Chrome streams them. */
  function streamOf(op, payload, signal) {
    let stop = null;
    return new ReadableStream({
      start(controller) {
        const inner = new AbortController();
        stop = () => inner.abort();
        const relay = () => inner.abort(abortReason(signal));
        signal?.addEventListener("abort", relay, { once: true });
        if (signal?.aborted) relay();
        request(op, payload, { signal: inner.signal,
          onDelta: (text) => controller.enqueue(text) })
          .then(() => controller.close(), (error) => controller.error(error))
          .finally(() => signal?.removeEventListener("abort", relay));
      },
      cancel() { stop?.(); },
    });
  }

  // ---------------------------------------------------------------- options

  const ENUMS = {
    Summarizer: {
      type: ["key-points", "tldr", "teaser", "headline"], format: ["markdown", "plain-text"],
      length: ["short", "medium", "long"],
    },
    Rewriter: {
      tone: ["more-formal", "as-is", "more-casual"], format: ["as-is", "markdown", "plain-text"],
      length: ["shorter", "as-is", "longer"],
    },
    Writer: {
      tone: ["formal", "neutral", "casual"], format: ["markdown", "plain-text"],
      length: ["short", "medium", "long"],
    },
  };
  const DEFAULTS = {
    Summarizer: { type: "key-points", format: "markdown", length: "short" },
    Rewriter: { tone: "as-is", format: "as-is", length: "as-is" },
    Writer: { tone: "neutral", format: "markdown", length: "short" },
  };

  /** The options with Chrome's defaults filled in; an unknown value is a TypeError, as the
   * WebIDL enums make it in Chrome. */
  function settle(api, options) {
    const out = { ...(DEFAULTS[api] || {}) };
    for (const [name, values] of Object.entries(ENUMS[api] || {})) {
      const value = options?.[name];
      if (value === undefined) continue;
      if (!values.includes(value)) {
        throw new TypeError(`Failed to read the '${name}' property: The provided value ` +
          `'${value}' is not a valid enum value. Use one of: ${values.join(", ")}.`);
      }
      out[name] = value;
    }
    return out;
  }

  function languages(list) {
    return Array.isArray(list) ? list.map(String) : null;
  }

  const CONSTRUCTING = Symbol("constructing");
  const illegal = () => new TypeError("Illegal constructor");

  function monitorOf(options) {
    const target = new EventTarget();
    if (typeof options?.monitor === "function") options.monitor(target);
    return (loaded) => {
      const event = new Event("downloadprogress");
      Object.defineProperties(event, { loaded: { value: loaded }, total: { value: 1 } });
      target.dispatchEvent(event);
    };
  }

  async function open(api, options) {
    const progress = monitorOf(options);
    return request("create", { api }, { signal: options?.signal, onProgress: progress });
  }

  // ---------------------------------------------------------------- the session base

  /** What every object has: destroy(), the input quota and the calls it started. */
  class Session {
    #api;
    #quota;
    #destroyed = new AbortController();

    constructor(api, quota) {
      this.#api = api;
      this.#quota = quota;
    }

    get inputQuota() { return this.#quota; }

    /** LocalLoom counts about four characters per token (an estimate, not the model's
     * tokenizer). */
    async measureInputUsage(input) {
      this.check();
      return Math.ceil(String(input ?? "").length / 4);
    }

    destroy() {
      this.#destroyed.abort(new DOMException("The object was destroyed.", "AbortError"));
    }

    check() {
      if (this.#destroyed.signal.aborted) {
        throw new DOMException(`This ${this.#api} was destroyed; create another one.`,
          "InvalidStateError");
      }
    }

    /** The call's signal joined with destroy(). */
    signal(extra) {
      const own = this.#destroyed.signal;
      return extra ? AbortSignal.any([own, extra]) : own;
    }

    run(method, payload, options) {
      this.check();
      return request("run", { api: this.#api, method, ...payload },
        { signal: this.signal(options?.signal) });
    }

    stream(method, payload, options) {
      this.check();
      return streamOf("run", { api: this.#api, method, ...payload },
        this.signal(options?.signal));
    }
  }

  // ---------------------------------------------------------------- the writing APIs

  function textApi(api, verb, extraFields) {
    const Klass = class extends Session {
      #options;

      constructor(token, options, quota) {
        if (token !== CONSTRUCTING) throw illegal();
        super(api, quota);
        this.#options = options;
      }

      static async availability(options = {}) {
        settle(api, options);
        return request("availability", { api });
      }

      static async create(options = {}) {
        const settled = settle(api, options);
        const created = await open(api, options);
        const kept = { ...settled, sharedContext: String(options.sharedContext ?? ""),
          expectedInputLanguages: languages(options.expectedInputLanguages),
          expectedContextLanguages: languages(options.expectedContextLanguages),
          outputLanguage: options.outputLanguage ?? null };
        return new Klass(CONSTRUCTING, Object.freeze(kept), created.inputQuota);
      }

      payload(input, options) {
        return { input: String(input), context: String(options?.context ?? ""),
          options: this.#options };
      }
    };
    for (const name of ["sharedContext", "expectedInputLanguages", "expectedContextLanguages",
      "outputLanguage", ...extraFields]) {
      Object.defineProperty(Klass.prototype, name, {
        get() { return this.optionsOf()[name]; }, configurable: true });
    }
    Klass.prototype.optionsOf = function optionsOf() {
      return this.payload("", {}).options;
    };
    Klass.prototype[verb] = async function single(input, options = {}) {
      return (await this.run(verb, this.payload(input, options), options)).text;
    };
    Klass.prototype[`${verb}Streaming`] = function streaming(input, options = {}) {
      return this.stream(verb, this.payload(input, options), options);
    };
    Object.defineProperty(Klass, "name", { value: api });
    return Klass;
  }

  const Summarizer = textApi("Summarizer", "summarize", ["type", "format", "length"]);
  const Rewriter = textApi("Rewriter", "rewrite", ["tone", "format", "length"]);
  const Writer = textApi("Writer", "write", ["tone", "format", "length"]);

  class Proofreader extends Session {
    #options;

    constructor(token, options, quota) {
      if (token !== CONSTRUCTING) throw illegal();
      super("Proofreader", quota);
      this.#options = options;
    }

    static async availability() { return request("availability", { api: "Proofreader" }); }

    static async create(options = {}) {
      const created = await open("Proofreader", options);
      return new Proofreader(CONSTRUCTING, Object.freeze({
        expectedInputLanguages: languages(options.expectedInputLanguages),
        correctionExplanationLanguage: options.correctionExplanationLanguage ?? null,
      }), created.inputQuota);
    }

    get expectedInputLanguages() { return this.#options.expectedInputLanguages; }

    /** {correctedInput, corrections: [{startIndex, endIndex, correction}]}. */
    async proofread(input, options = {}) {
      const result = await this.run("proofread", { input: String(input), options: {} },
        options);
      return { correctedInput: result.text, corrections: result.corrections };
    }
  }

  class Translator extends Session {
    #pair;

    constructor(token, pair, quota) {
      if (token !== CONSTRUCTING) throw illegal();
      super("Translator", quota);
      this.#pair = pair;
    }

    static #pairOf(options) {
      if (!options?.sourceLanguage || !options?.targetLanguage) {
        throw new TypeError("Translator needs sourceLanguage and targetLanguage, e.g. " +
          "{sourceLanguage: 'en', targetLanguage: 'es'}.");
      }
      return { sourceLanguage: String(options.sourceLanguage),
        targetLanguage: String(options.targetLanguage) };
    }

    static async availability(options) {
      Translator.#pairOf(options);
      return request("availability", { api: "Translator" });
    }

    static async create(options) {
      const pair = Translator.#pairOf(options);
      const created = await open("Translator", options);
      return new Translator(CONSTRUCTING, Object.freeze(pair), created.inputQuota);
    }

    get sourceLanguage() { return this.#pair.sourceLanguage; }
    get targetLanguage() { return this.#pair.targetLanguage; }

    async translate(input, options = {}) {
      return (await this.run("translate", { input: String(input), options: this.#pair },
        options)).text;
    }

    translateStreaming(input, options = {}) {
      return this.stream("translate", { input: String(input), options: this.#pair }, options);
    }
  }

  class LanguageDetector extends Session {
    constructor(token, quota) {
      if (token !== CONSTRUCTING) throw illegal();
      super("LanguageDetector", quota);
    }

    static async availability() { return request("availability", { api: "LanguageDetector" }); }

    static async create(options = {}) {
      const created = await open("LanguageDetector", options);
      return new LanguageDetector(CONSTRUCTING, created.inputQuota);
    }

    /** [{detectedLanguage, confidence}], most likely first, ending with "und". */
    async detect(input, options = {}) {
      return (await this.run("detect", { input: String(input), options: {} }, options)).results;
    }
  }

  // ---------------------------------------------------------------- LanguageModel

  function messagesOf(input) {
    if (typeof input === "string") return [{ role: "user", content: input }];
    if (!Array.isArray(input)) return [{ role: "user", content: String(input) }];
    return input.map((m) => {
      const text = typeof m.content === "string" ? m.content
        : (m.content || []).filter((p) => p.type === "text").map((p) => p.value).join("\n");
      if (!["system", "user", "assistant"].includes(m.role)) {
        throw new TypeError(`A message's role is 'system', 'user' or 'assistant', not '${m.role}'.`);
      }
      return { role: m.role, content: text };
    });
  }

  class LanguageModel extends Session {
    #history;
    #params;

    constructor(token, history, params, quota) {
      if (token !== CONSTRUCTING) throw illegal();
      super("LanguageModel", quota);
      this.#history = history;
      this.#params = params;
    }

    static async availability() { return request("availability", { api: "LanguageModel" }); }

    static async params() {
      return { defaultTopK: 40, maxTopK: 128, defaultTemperature: 0.8, maxTemperature: 2 };
    }

    static async create(options = {}) {
      const history = messagesOf(options.initialPrompts || []);
      if (history.slice(1).some((m) => m.role === "system")) {
        throw new TypeError("Only the first initial prompt may have the 'system' role.");
      }
      const params = {};
      if (options.temperature !== undefined) params.temperature = Number(options.temperature);
      if (options.topK !== undefined) params.topK = Number(options.topK);
      const created = await open("LanguageModel", options);
      return new LanguageModel(CONSTRUCTING, history, Object.freeze(params), created.inputQuota);
    }

    get temperature() { return this.#params.temperature ?? 0.8; }
    get topK() { return this.#params.topK ?? 40; }
    get inputUsage() { return Math.ceil(JSON.stringify(this.#history).length / 4); }

    #payload(input) {
      return { messages: [...this.#history, ...messagesOf(input)], options: this.#params };
    }

    async prompt(input, options = {}) {
      const asked = messagesOf(input);
      const { text } = await this.run("prompt", this.#payload(input), options);
      this.#history.push(...asked, { role: "assistant", content: text });
      return text;
    }

    promptStreaming(input, options = {}) {
      const asked = messagesOf(input);
      const history = this.#history;
      let answer = "";
      const source = this.stream("prompt", this.#payload(input), options);
      return source.pipeThrough(new TransformStream({
        transform(chunk, controller) { answer += chunk; controller.enqueue(chunk); },
        flush() { history.push(...asked, { role: "assistant", content: answer }); },
      }));
    }

    async append(input) { this.#history.push(...messagesOf(input)); }

    async clone(options = {}) {
      this.check();
      return new LanguageModel(CONSTRUCTING, [...this.#history], this.#params, this.inputQuota);
    }
  }

  /** `ours`, but deferring to the browser's own API wherever that one can run. */
  function deferTo(native, ours) {
    // "downloadable" is not enough: Chromium reports it for models it never fetches (no
    // component updater), and the page's call would hang on a download; LocalLoom's model
    // is already here.
    const works = async (options) => {
      try {
        return ["available", "downloading"].includes(await native.availability(options));
      } catch {
        return false; // e.g. options the browser's model does not support
      }
    };
    const { availability, create } = ours;
    Object.defineProperties(ours, {
      availability: { value: async function availabilityOf(options = {}) {
        return (await works(options)) ? native.availability(options)
          : availability.call(ours, options);
      }, writable: true, configurable: true },
      create: { value: async function createOne(options = {}) {
        return (await works(options)) ? native.create(options) : create.call(ours, options);
      }, writable: true, configurable: true },
    });
    return ours;
  }

  const apis = { Summarizer, Rewriter, Writer, Proofreader, Translator, LanguageDetector,
    LanguageModel };
  for (const name of NAMES) {
    const native = globalThis[name];
    const api = typeof native?.availability === "function" ? deferTo(native, apis[name])
      : apis[name];
    Object.defineProperty(globalThis, name, { value: api, writable: true,
      configurable: true, enumerable: false });
  }
})();
