// The popup: server status (with the command to start or pair), model picker with load
// progress, and the task buttons for the selection or the whole page's main text.
import { ext, hasSidePanel } from "./lib/browser.js";
import * as server from "./lib/server.js";

const $ = (id) => document.getElementById(id);
let models = [];
let lastRun = null;

async function targetTab() {
  // Opened as a page (tests, a pinned tab): ?tab=<id> names the tab to work on.
  const wanted = Number(new URLSearchParams(location.search).get("tab"));
  if (wanted) return ext.tabs.get(wanted);
  return (await ext.tabs.query({ active: true, lastFocusedWindow: true }))[0];
}

function show(state) {
  for (const id of ["not-running", "not-paired", "ready"]) $(id).hidden = true;
  const pill = $("state");
  pill.className = `pill ${state}`;
  pill.textContent = { running: "running", not_running: "not running",
                       not_paired: "not paired" }[state] || state;
}

async function refresh() {
  const cfg = await server.settings();
  $("port").value = cfg.port;
  $("origin").textContent = server.origin();
  const st = await server.status();
  show(st.state);
  if (st.state === "not_running") {
    $("start-command").textContent = st.command;
    $("not-running").hidden = false;
  } else if (st.state === "not_paired") {
    $("pair-command").textContent = st.command;
    $("not-paired").hidden = false;
  } else {
    $("ready").hidden = false;
    await Promise.all([fillModels(cfg), fillTasks()]);
  }
  return st.state;
}

async function fillModels(cfg) {
  try {
    models = (await server.getJSON("/api/models")).models;
  } catch (error) {
    $("model-fit").textContent = error.message;
    return;
  }
  const select = $("model");
  select.replaceChildren();
  const loaded = models.find((m) => m.loaded);
  const chosen = cfg.model || loaded?.id || models[0]?.id || "";
  for (const m of models) {
    const state = m.loaded ? "loaded" : m.cached ? "downloaded" : "not downloaded";
    const option = new Option(`${m.display_name} (${state})`, m.id);
    option.selected = m.id === chosen;
    select.append(option);
  }
  describeModel();
}

function describeModel() {
  const m = models.find((x) => x.id === $("model").value);
  if (!m) return;
  $("model-fit").textContent = `${m.fit.label}: ${m.fit.reason}`;
  $("load").textContent = m.loaded ? "Loaded" : m.cached ? "Load" : "Download and load";
  $("load").disabled = m.loaded;
}

async function loadModel() {
  const id = $("model").value;
  const bar = $("load-progress");
  bar.hidden = false;
  $("load").disabled = true;
  try {
    for await (const { event, data } of server.stream(
      `/api/models/${encodeURIComponent(id)}/load`, {})) {
      if (event === "progress") {
        bar.value = data.progress ?? 0;
        $("load-text").textContent = data.text || "";
      } else if (event === "error") {
        $("load-text").textContent = data?.error?.message || "Loading failed.";
      } else if (event === "done") {
        $("load-text").textContent = `${id} is ready.`;
      }
    }
  } catch (error) {
    $("load-text").textContent = error.message;
  } finally {
    bar.hidden = true;
    await fillModels(await server.settings());
  }
}

async function fillTasks() {
  const box = $("tasks");
  box.replaceChildren();
  for (const task of await server.tasks()) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = task.label;
    button.addEventListener("click", () => runTask(task.name));
    box.append(button);
  }
}

async function pageInput(scope) {
  const tab = await targetTab();
  const [{ result }] = await ext.scripting.executeScript({
    target: { tabId: tab.id },
    func: (whole) => (whole ? document.documentElement.outerHTML
                            : String(window.getSelection() || "").trim()),
    args: [scope === "page"],
  });
  return { tab, value: result };
}

async function runTask(task) {
  const scope = document.querySelector("input[name=scope]:checked").value;
  const answer = $("answer");
  answer.hidden = false;
  answer.textContent = "";
  $("save").disabled = true;
  lastRun = null;
  let input;
  try {
    input = await pageInput(scope);
  } catch (error) {
    $("task-status").textContent = "LocalLoom cannot read this tab (browser pages are off " +
      `limits): ${error.message}`;
    return;
  }
  if (!input.value) {
    $("task-status").textContent = "Nothing is selected: select text on the page, or choose " +
      "the whole page.";
    return;
  }
  await server.saveSettings({ lastTask: task });
  const body = scope === "page" ? { html: input.value, url: input.tab.url }
                                : { text: input.value, url: input.tab.url };
  if (task === "translate") body.to = (navigator.language || "en").slice(0, 2);
  if ($("model").value) body.model = $("model").value;
  $("task-status").textContent = scope === "page" ? "Reading the page…" : "Starting…";
  try {
    for await (const { event, data } of server.stream(
      `/api/tasks/${encodeURIComponent(task)}`, body)) {
      if (event === "delta") answer.append(document.createTextNode(data.text));
      else if (event === "progress") {
        $("task-status").textContent = `Long text: part ${data.done} of ${data.total}…`;
      } else if (event === "done") {
        answer.textContent = data.text;
        $("task-status").textContent = "Done.";
        lastRun = { task, result: data, tab: input.tab };
        $("save").disabled = false;
      } else if (event === "error") {
        $("task-status").textContent = data?.error?.message || "The task failed.";
      }
    }
  } catch (error) {
    $("task-status").textContent = error.message;
  }
}

async function save() {
  if (!lastRun) return;
  const r = lastRun.result;
  $("save").disabled = true;
  try {
    await server.postJSON("/api/history", {
      task: lastRun.task, model: r.model, original: r.original, result: r.text,
      language: r.language || null, source_url: lastRun.tab.url,
      source_title: lastRun.tab.title || null,
      prompt_tokens: r.usage?.prompt_tokens || 0,
      completion_tokens: r.usage?.completion_tokens || 0 });
    $("task-status").textContent = "Saved.";
  } catch (error) {
    $("task-status").textContent = error.message;
    $("save").disabled = false;
  }
}

async function openPanel() {
  if (hasSidePanel()) {
    const tab = await targetTab();
    await ext.sidePanel.open({ windowId: tab.windowId });
  } else {
    await ext.sidebarAction.open();
  }
}

// "Allowed pages": the floating button shows on this site without a click first. The
// permission request must run straight from the click (a user gesture), so the site's
// origin is worked out when the popup opens.
let siteOrigin = null;

// The target tab's address when it is a web page (http or https), else null.
async function tabWebUrl() {
  const tab = await targetTab();
  try {
    const url = new URL(tab?.url || "");
    return /^https?:$/.test(url.protocol) ? url : null;
  } catch {
    return null;
  }
}

async function offerSite() {
  const url = await tabWebUrl();
  if (!url) return;
  siteOrigin = `${url.origin}/*`;
  const has = await ext.permissions.contains({ origins: [siteOrigin] });
  $("allow-site").hidden = has;
  if (has) $("site-status").textContent = `The button shows on ${url.host}.`;
}

$("allow-site").addEventListener("click", () => {
  if (!siteOrigin) return;
  ext.permissions.request({ origins: [siteOrigin] }).then(async (granted) => {
    if (!granted) return;
    await ext.runtime.sendMessage({ type: "allowedPages" });
    const tab = await targetTab();
    await ext.scripting.executeScript({ target: { tabId: tab.id }, files: ["content.js"] });
    await offerSite();
  }, (error) => { $("site-status").textContent = error.message; });
});

// Built-in AI for this site: the page's calls to Summarizer & co. reach the local model only
// when its origin is on this list (off by default; the side panel lists and revokes them).
let aiOrigin = null;
let aiRunsThere = false; // the extension may already run on the site: nothing to ask

async function offerBuiltinAI() {
  const url = await tabWebUrl();
  if (!url) return;
  aiOrigin = url.origin;
  aiRunsThere = await ext.permissions.contains({ origins: [`${aiOrigin}/*`] });
  const { origins, asked } = await ext.runtime.sendMessage({ type: "aiOrigins" });
  const allowed = origins.includes(aiOrigin);
  $("ai-site").hidden = false;
  $("ai-allow").hidden = allowed;
  $("ai-revoke").hidden = !allowed;
  $("ai-status").textContent = allowed ? `${url.host} may use the local model.`
    : asked.includes(aiOrigin) ? `${url.host} asked to use the local model.` : "";
}

$("ai-allow").addEventListener("click", () => {
  if (!aiOrigin) return;
  // The extension must run on the site too: ask for it straight from the click.
  const asked = aiRunsThere ? Promise.resolve(true)
    : ext.permissions.request({ origins: [`${aiOrigin}/*`] });
  asked.then(async (granted) => {
    if (!granted) return;
    await ext.runtime.sendMessage({ type: "allowAI", origin: aiOrigin });
    await ext.runtime.sendMessage({ type: "allowedPages" });
    await offerBuiltinAI(); // a page opened before the extension could run there: reload it
  }, (error) => { $("ai-status").textContent = error.message; });
});
$("ai-revoke").addEventListener("click", async () => {
  await ext.runtime.sendMessage({ type: "revokeAI", origin: aiOrigin });
  await offerBuiltinAI();
});

$("pair-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  await server.saveSettings({ token: $("token").value.trim() });
  $("token").value = "";
  const state = await refresh();
  const problem = $("pair-problem");
  problem.hidden = state !== "not_paired";
  problem.textContent = "That token was not accepted: run the command above again and paste " +
    "the new token.";
});
$("retry").addEventListener("click", refresh);
$("model").addEventListener("change", async () => {
  await server.saveSettings({ model: $("model").value });
  describeModel();
});
$("load").addEventListener("click", loadModel);
$("save").addEventListener("click", save);
$("panel").addEventListener("click", openPanel);
$("port").addEventListener("change", async () => {
  const port = Number($("port").value);
  if (port > 0 && port < 65536) {
    await server.saveSettings({ port });
    await refresh();
  }
});
$("forget").addEventListener("click", async () => {
  await server.saveSettings({ token: "" });
  await refresh();
});

globalThis.popupReady = refresh().then(offerSite).then(offerBuiltinAI);
