// The "Browser extension" panel: approve one extension origin (what `localloom pair` does),
// show its token once with Copy, list the paired extensions with Revoke. These calls need
// the server token, which only this page (signed in) holds; a paired extension cannot make them.

import { $, api, clearError, showError } from "./core.js";

function pairingItem(pairing, refresh) {
  const li = document.createElement("li");
  li.dataset.id = pairing.id;
  li.dataset.origin = pairing.origin;
  const what = document.createElement("span");
  what.className = "origin";
  const pulls = pairing.scopes.includes("pull") ? " · may download models" : "";
  what.textContent = `${pairing.origin}${pulls} · paired ${new Date(pairing.created_at).toLocaleString()}`;
  const revoke = document.createElement("button");
  revoke.type = "button";
  revoke.className = "pair-revoke";
  revoke.textContent = "Revoke";
  revoke.setAttribute("aria-label", `Revoke ${pairing.origin}`);
  revoke.addEventListener("click", async () => {
    try {
      // By id: an origin holds slashes, which a path segment cannot carry.
      await api(`/api/pairings/${encodeURIComponent(pairing.id)}`, { method: "DELETE" });
      $("pair-token-box").hidden = true;
      await refresh();
    } catch (err) { showError(err.message); }
  });
  li.append(what, revoke);
  return li;
}

async function refreshPairings() {
  const list = $("pair-list");
  const body = await (await api("/api/pairings")).json();
  list.replaceChildren(...body.pairings.map((p) => pairingItem(p, refreshPairings)));
  $("pair-count").textContent = body.pairings.length
    ? `${body.pairings.length} paired extension(s):` : "No extension is paired.";
  list.dataset.state = "ready";
}

async function pair() {
  const origin = $("pair-origin").value.trim();
  if (!origin) {
    showError("Paste the extension origin first: the extension's popup shows it "
              + "(chrome-extension://… or moz-extension://…).");
    return;
  }
  clearError();
  const response = await api("/api/pairings", { method: "POST", body: JSON.stringify({
    origin, allow_pull: $("pair-allow-pull").checked }) });
  const made = await response.json();
  $("pair-token").textContent = made.token;
  $("pair-token-for").textContent = made.origin;
  $("pair-token-box").hidden = false;
  $("pair-origin").value = "";
  await refreshPairings();
}

async function copyToken() {
  try {
    await navigator.clipboard.writeText($("pair-token").textContent);
    $("pair-copy").textContent = "Copied";
  } catch (_) {
    // No clipboard permission (plain http in some browsers): select it for Ctrl+C.
    getSelection().selectAllChildren($("pair-token"));
    $("pair-copy").textContent = "Press Ctrl+C";
  }
  setTimeout(() => { $("pair-copy").textContent = "Copy"; }, 2000);
}

/** Wire the panel; the list loads the first time it is opened. */
export function setupPairing() {
  $("pair-box").addEventListener("toggle", () => {
    if ($("pair-box").open) refreshPairings().catch((err) => showError(err.message));
  });
  $("pair-form").addEventListener("submit", (e) => {
    e.preventDefault();
    pair().catch((err) => showError(err.message));
  });
  $("pair-copy").addEventListener("click", () => { copyToken(); });
}
