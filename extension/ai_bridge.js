// The isolated-world half of the built-in AI APIs (page_ai.js is the page's half): takes
// the MessageChannel port page_ai.js hands over once, and relays each call to the service
// worker over its own runtime port (streamed answers, and aborting by disconnecting).
// Nothing here decides anything: the service worker checks the origin (from the browser's
// own sender information, never from the message) and the rate limit.
(() => {
  "use strict";
  const ext = globalThis.browser ?? globalThis.chrome;
  const TAG = "localloom-builtin-ai";
  if (globalThis.localloomBridge) return; // injected once per page
  globalThis.localloomBridge = true;
  let page = null; // the MessagePort to page_ai.js
  const calls = new Map(); // id -> runtime port

  function relay(message) {
    const { id, op, payload } = message || {};
    if (typeof id !== "number") return;
    if (op === "abort") {
      calls.get(id)?.disconnect(); // the worker aborts the server request
      calls.delete(id);
      return;
    }
    let finished = false;
    let worker;
    try {
      worker = ext.runtime.connect({ name: "localloom-ai" });
    } catch {
      page.postMessage({ id, type: "error", name: "OperationError",
        message: "LocalLoom's extension was updated or removed: reload the page." });
      return;
    }
    calls.set(id, worker);
    worker.onMessage.addListener((event) => {
      if (event.type === "done" || event.type === "error") {
        finished = true;
        calls.delete(id);
        worker.disconnect();
      }
      page.postMessage({ id, ...event });
    });
    worker.onDisconnect.addListener(() => {
      calls.delete(id);
      if (!finished) {
        page.postMessage({ id, type: "error", name: "OperationError",
          message: "LocalLoom's extension stopped answering: reload the page and try again." });
      }
    });
    worker.postMessage({ op, payload });
  }

  window.addEventListener("message", (event) => {
    if (page || event.source !== window || event.data?.tag !== TAG) return;
    if (event.data.kind !== "hello" || !event.ports?.[0]) return;
    page = event.ports[0];
    page.onmessage = (e) => relay(e.data);
    page.postMessage({ kind: "ack" });
  });
  window.postMessage({ tag: TAG, kind: "ready" }, "*");
})();
