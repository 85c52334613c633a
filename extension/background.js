// The service worker: the only part that holds the token and talks to `localloom serve`
// for content scripts. It accepts messages and ports only from this extension's own pages
// and the content script it injected (sender.id checked); it declares no
// externally_connectable, so web pages cannot reach it at all.
import { ext } from "./lib/browser.js";
import * as server from "./lib/server.js";
import * as ai from "./lib/builtin_ai.js";

const MENU_ROOT = "localloom";
const STARTER_ID = "gemma3-270m-starter";
// lastDone: the task and options of the last answer the server finished (what it used).
const state = { tasksStarted: 0, running: new Map(), lastDone: null };
// The built-in AI APIs' per-origin checks and rate limits (missingModel is hoisted).
const builtin = ai.builtinAI({ missingModel });

function trusted(sender) {
  if (!sender || sender.id !== ext.runtime.id) return false;
  const own = ext.runtime.getURL("");
  // Extension pages (popup, side panel) or a content script in a tab.
  return Boolean(sender.tab) || (sender.url || "").startsWith(own);
}

/** The popup and side panel only (pages of this extension, even opened in a tab; never a
 * content script, whose sender URL is the web page's): what may change permissions. */
function ownPage(sender) {
  return sender?.id === ext.runtime.id && (sender.url || "").startsWith(ext.runtime.getURL(""));
}

function translateTarget() {
  return (globalThis.navigator?.language || "en").slice(0, 2);
}

// ------------------------------------------------------------------ content script

async function inject(tabId) {
  await ext.scripting.executeScript({ target: { tabId }, files: ["content.js"] });
}

/** Allowed pages: origins the user granted get the floating button without a click. */
async function registerAllowedPages() {
  const granted = (await ext.permissions.getAll()).origins || [];
  const matches = granted.filter((o) => !/^http:\/\/127\.0\.0\.1:8765\//.test(o));
  const id = "localloom-allowed-pages";
  const existing = await ext.scripting.getRegisteredContentScripts({ ids: [id] });
  if (existing.length) await ext.scripting.unregisterContentScripts({ ids: [id] });
  if (matches.length) {
    await ext.scripting.registerContentScripts([{ id, matches, js: ["content.js"],
      runAt: "document_idle", persistAcrossSessions: false }]);
  }
  await registerBuiltinAI(matches);
  return matches;
}

/** Chrome's built-in AI names for pages on the same sites (page_ai.js in the page's own
 * world, before its scripts; ai_bridge.js beside it). A page's calls still need the user's
 * per-origin permission (lib/builtin_ai.js). */
async function registerBuiltinAI(matches) {
  const ids = ["localloom-ai-page", "localloom-ai-bridge"];
  const existing = await ext.scripting.getRegisteredContentScripts({ ids });
  if (existing.length) await ext.scripting.unregisterContentScripts({ ids: existing.map((s) => s.id) });
  if (!matches.length) return;
  await ext.scripting.registerContentScripts([
    { id: ids[0], matches, js: ["page_ai.js"], world: "MAIN", runAt: "document_start",
      persistAcrossSessions: false },
    { id: ids[1], matches, js: ["ai_bridge.js"], runAt: "document_start",
      persistAcrossSessions: false }]);
}

async function runInTab(tab, task, text) {
  await inject(tab.id);
  await ext.tabs.sendMessage(tab.id, { type: "localloom:run", task, text });
}

// ------------------------------------------------------------------ context menu

const menuTitles = [];
let menuQueue = Promise.resolve();

/** Rebuild the menu (after a pairing or a port change); one rebuild at a time. */
function buildMenus() {
  menuQueue = menuQueue.then(rebuildMenus, rebuildMenus);
  return menuQueue;
}

async function rebuildMenus() {
  await ext.contextMenus.removeAll();
  menuTitles.length = 0;
  ext.contextMenus.create({ id: MENU_ROOT, title: "LocalLoom", contexts: ["selection"] });
  for (const task of await server.tasks()) {
    ext.contextMenus.create({ id: `${MENU_ROOT}:${task.name}`, parentId: MENU_ROOT,
      title: task.label, contexts: ["selection"] });
    menuTitles.push(task.label);
  }
}

async function onMenuClick(info, tab) {
  const id = String(info.menuItemId || "");
  if (!id.startsWith(`${MENU_ROOT}:`) || !tab?.id) return;
  const task = id.slice(MENU_ROOT.length + 1);
  await server.saveSettings({ lastTask: task });
  await runInTab(tab, task, info.selectionText || "");
}

async function onCommand(command, tab) {
  if (command !== "run-last-task") return;
  tab = tab ?? (await ext.tabs.query({ active: true, lastFocusedWindow: true }))[0];
  if (!tab?.id) return;
  const { lastTask } = await server.settings();
  await runInTab(tab, lastTask, "");
}

// ------------------------------------------------------------------ task streams

/** One task for a content script, over a port: deltas, progress, then done or error. */
function onConnect(port) {
  if (port.name === "localloom-ai") {
    builtin.onConnect(port); // checks the page's origin itself
    return;
  }
  if (port.name !== "localloom-task" || !trusted(port.sender)) {
    port.disconnect();
    return;
  }
  const abort = new AbortController();
  port.onDisconnect.addListener(() => abort.abort()); // Stop, or the tab navigated away
  let asked = null; // the task waiting for its model's download
  port.onMessage.addListener((message) => {
    if (message?.type === "run") {
      asked = message;
      checkThenRun(port, message, abort.signal);
    } else if (message?.type === "pull" && asked) {
      pullThenRun(port, asked, abort.signal);
    }
  });
}

function poster(port) {
  return (data) => { try { port.postMessage(data); } catch { /* port closed */ } };
}

/** The model the task would use when it is not downloaded yet, with what the user can do
 * (download here when the pairing allows it, else the commands), or null. */
async function missingModel(cfg) {
  const { models } = await server.getJSON("/api/models");
  // No model chosen: the server takes a loaded one, else the starter.
  const wanted = cfg.model || (models.some((m) => m.loaded) ? "" : STARTER_ID);
  const m = models.find((x) => x.id === wanted || (x.aliases || []).includes(wanted));
  if (!m || m.cached || m.loaded) return null;
  const own = (await server.getJSON("/api/pairing")).pairing;
  return { id: m.id, name: m.display_name, size: m.download_size,
           canPull: Boolean(own?.scopes?.includes("pull")),
           commands: [`localloom pull ${m.id}`, `${server.pairCommand()} --allow-pull`] };
}

async function checkThenRun(port, message, signal) {
  const post = poster(port);
  let missing = null;
  try {
    missing = await missingModel(await server.settings());
  } catch (error) {
    if (signal.aborted) return;
    post({ type: "error", kind: error.kind || "http", message: error.message });
    return;
  }
  if (missing) post({ type: "missing", model: missing });
  else await streamTask(port, message, signal);
}

/** Download the task's model with progress for the card, then run the task. */
async function pullThenRun(port, message, signal) {
  const post = poster(port);
  try {
    const cfg = await server.settings();
    const missing = await missingModel(cfg);
    if (missing) {
      let done = false;
      for await (const { event, data } of server.stream(
        `/api/models/${encodeURIComponent(missing.id)}/pull`, undefined, signal)) {
        if (event === "progress") post({ type: "pull-progress", ...data });
        else if (event === "done") done = true;
        else if (event === "error") throw new Error(data?.error?.message || "The download failed.");
      }
      if (!done) return;
    }
  } catch (error) {
    if (!signal.aborted) post({ type: "error", kind: error.kind || "http", message: error.message });
    return;
  }
  post({ type: "pulled" });
  await streamTask(port, message, signal);
}

async function streamTask(port, message, signal) {
  const post = poster(port);
  state.tasksStarted += 1;
  const key = Symbol("task");
  state.running.set(key, message.task);
  try {
    const body = { text: message.text, url: message.url || undefined };
    if (message.task === "translate") body.to = message.to || translateTarget();
    const cfg = await server.settings();
    if (cfg.model) body.model = cfg.model;
    // Options the card sent (kept for the next run of the task), else the last ones kept.
    const chosen = message.options && typeof message.options === "object" ? message.options
      : cfg.taskOptions[message.task];
    if (message.options) {
      await server.saveSettings({ taskOptions: { ...cfg.taskOptions, [message.task]: chosen } });
    }
    if (chosen && Object.keys(chosen).length) body.options = chosen;
    for await (const { event, data } of server.stream(
      `/api/tasks/${encodeURIComponent(message.task)}`, body, signal)) {
      if (event === "delta") post({ type: "delta", text: data.text });
      else if (event === "progress") post({ type: "progress", ...data });
      else if (event === "done") {
        state.lastDone = { task: data.task, options: data.options }; // what the server used
        post({ type: "done", result: data });
      }
      else if (event === "error") {
        const cut = data?.error?.code === "server_shutting_down";
        post({ type: "error", kind: cut ? "interrupted" : "http", message: cut
          ? "LocalLoom stopped mid-answer (it is shutting down or restarting). The text so " +
            "far is kept; run the task again once it is back."
          : data?.error?.message || "The task failed." });
      }
    }
  } catch (error) {
    if (!signal.aborted) {
      post({ type: "error", kind: error.kind || "http", message: error.message });
    }
  } finally {
    state.running.delete(key);
  }
}

// ------------------------------------------------------------------ one-shot messages

const handlers = {
  async save({ record }) {
    const saved = await server.postJSON("/api/history", record);
    return { id: saved.id };
  },
  async tasks() {
    const cfg = await server.settings();
    return { tasks: await server.tasks(), lastTask: cfg.lastTask, taskOptions: cfg.taskOptions };
  },
  async setLastTask({ task }) {
    await server.saveSettings({ lastTask: String(task) });
    return {};
  },
  async open({ what, id }) {
    const cfg = await server.settings();
    if (what === "sidepanel" && ext.sidePanel) {
      return {}; // opened by the page itself (needs its user gesture)
    }
    // The web UI opens #history=<id> itself once it is signed in. A tab that already shows
    // it (signed in) is reused: a new tab has no token and asks the user to sign in first.
    const base = `http://127.0.0.1:${cfg.port}/`;
    const url = id ? `${base}#history=${encodeURIComponent(id)}` : base;
    const [open] = await ext.tabs.query({ url: `${base}*` }).catch(() => []);
    if (open?.id) {
      await ext.tabs.update(open.id, { url, active: true });
      await ext.windows?.update(open.windowId, { focused: true }).catch(() => {});
    } else {
      await ext.tabs.create({ url });
    }
    return {};
  },
  async allowedPages() {
    return { matches: await registerAllowedPages() };
  },
  async aiOrigins() {
    return { origins: await ai.allowedOrigins(), asked: [...builtin.asked] };
  },
};

// Changing which sites may use the model: from the popup and the side panel only.
const ownHandlers = {
  async allowAI({ origin }) {
    await ai.allowOrigin(String(origin));
    return { origins: await ai.allowedOrigins() };
  },
  async revokeAI({ origin }) {
    await ai.revokeOrigin(String(origin));
    return { origins: await ai.allowedOrigins() };
  },
};

function onMessage(message, sender, reply) {
  const own = ownPage(sender) ? ownHandlers[message?.type] : undefined;
  const handler = own || handlers[message?.type];
  if (!trusted(sender) || !handler) return false;
  handler(message).then((data) => reply({ ok: true, ...data }),
    (error) => reply({ ok: false, kind: error.kind || "http", message: error.message }));
  return true; // the reply comes later
}

// ------------------------------------------------------------------ wiring


ext.runtime.onConnect.addListener(onConnect);
ext.runtime.onMessage.addListener(onMessage);
ext.contextMenus.onClicked.addListener((info, tab) => { onMenuClick(info, tab); });
ext.commands?.onCommand.addListener((command, tab) => { onCommand(command, tab); });
ext.permissions.onAdded.addListener(() => { registerAllowedPages(); });
ext.permissions.onRemoved.addListener(() => { registerAllowedPages(); });
ext.runtime.onInstalled.addListener(() => { buildMenus(); });
ext.storage.onChanged.addListener((changes) => {
  if (changes.token || changes.port) buildMenus();
});
// The token lives in storage.local: keep content scripts (which run inside web pages'
// processes) from reading it (Chrome; Firefox has no access levels).
ext.storage.local.setAccessLevel?.({ accessLevel: "TRUSTED_CONTEXTS" }).catch(() => {});
if (ext.sidePanel?.setPanelBehavior) {
  ext.sidePanel.setPanelBehavior({ openPanelOnActionClick: false }).catch(() => {});
}

// Tests and the popup read these from the worker's own global (no page can reach it).
globalThis.localloom = {
  state, onMenuClick, onCommand, buildMenus, registerAllowedPages, inject, builtin,
  allowAI: ai.allowOrigin, revokeAI: ai.revokeOrigin,
  menuTitles: () => [...menuTitles],
  ready: Promise.all([registerAllowedPages(), buildMenus()]).catch(() => {}),
};
