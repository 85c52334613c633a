// The side panel (a sidebar in Firefox): saved results with search and export, each
// linked to the page it came from. Saved text is shown as text nodes only.
import { ext } from "./lib/browser.js";
import * as server from "./lib/server.js";

const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

function item(r) {
  const box = el("article", undefined, "item");
  box.append(el("h2", `${r.task} · ${new Date(r.created_at).toLocaleString()}`));
  if (r.source_url && /^https?:|^file:/.test(r.source_url)) {
    const link = el("a", r.source_title || r.source_url);
    link.href = r.source_url;
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    box.append(link);
  }
  box.append(el("div", r.result, "text"), el("div", `${r.model} · ${r.id.slice(0, 12)}`, "meta"));
  return box;
}

async function load() {
  const q = $("q").value.trim();
  const params = new URLSearchParams({ limit: "50" });
  if (q) params.set("q", q);
  try {
    const page = await server.getJSON(`/api/history?${params}`);
    $("list").replaceChildren(...page.results.map(item));
    $("status").textContent = q ? `${page.total} found for “${q}”.`
                                : `${page.total} saved result${page.total === 1 ? "" : "s"}.`;
  } catch (error) {
    $("list").replaceChildren();
    $("status").textContent = error.message;
  }
}

async function exportAll() {
  try {
    const text = JSON.stringify(await server.getJSON("/api/history/export?format=json"), null, 2);
    const url = URL.createObjectURL(new Blob([text], { type: "application/json" }));
    const a = el("a");
    a.href = url;
    a.download = "localloom-history.json";
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (error) {
    $("status").textContent = error.message;
  }
}

$("search-form").addEventListener("submit", (event) => { event.preventDefault(); load(); });
$("export").addEventListener("click", exportAll);
globalThis.panelReady = load();

// The sites allowed to use the built-in AI APIs, each with Revoke.
async function listAISites() {
  const { origins } = await ext.runtime.sendMessage({ type: "aiOrigins" });
  const list = $("ai-list");
  list.replaceChildren();
  if (!origins.length) list.append(el("li", "None yet."));
  for (const origin of origins) {
    const row = el("li", undefined, "ai-site");
    const revoke = el("button", "Revoke");
    revoke.type = "button";
    revoke.addEventListener("click", async () => {
      await ext.runtime.sendMessage({ type: "revokeAI", origin });
      await listAISites();
    });
    row.append(el("span", origin), " ", revoke);
    list.append(row);
  }
}

globalThis.aiSitesReady = listAISites();
