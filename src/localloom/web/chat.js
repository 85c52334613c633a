// Conversation mode: the turns of one chat (kept in this tab's sessionStorage), a system
// prompt, regenerate, copy, and answers rendered from markdown as DOM nodes.
//
//   const chat = setupChat({ selectedModel, ensureLoaded, setBusy });
//   chat.modelChanged();  // after the model picker changes

import { $, Meter, api, clearError, showError, sseEvents, textOf } from "./core.js";
import { renderMarkdown } from "./markdown.js";

const CHAT_KEY = "localloom-chat";

function loadState() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(CHAT_KEY) || "null");
    if (saved && Array.isArray(saved.turns)) {
      const turns = saved.turns.filter((t) => t && (t.role === "user" || t.role === "assistant")
                                              && typeof t.content === "string");
      return { system: String(saved.system || ""), turns };
    }
  } catch (_) { /* a damaged entry: start over */ }
  return { system: "", turns: [] };
}

function button(text, className, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = className;
  b.textContent = text;
  b.addEventListener("click", onClick);
  return b;
}

/** Wires the chat panel; returns {modelChanged, busy} for the rest of the page. */
export function setupChat({ selectedModel, ensureLoaded, setBusy }) {
  const state = loadState();
  let controller = null;

  function save() {
    sessionStorage.setItem(CHAT_KEY, JSON.stringify({ system: $("system-prompt").value,
                                                      turns: state.turns }));
  }

  function fillBody(body, turn) {
    if (turn.role === "assistant") body.replaceChildren(renderMarkdown(turn.content));
    else body.textContent = turn.content;
  }

  async function copy(turn, b) {
    try {
      await navigator.clipboard.writeText(turn.content);
      b.textContent = "Copied ✓";
      b.dataset.copied = "true";
      setTimeout(() => { b.textContent = "Copy"; delete b.dataset.copied; }, 1500);
    } catch (_) {
      showError("The browser did not allow copying; select the text and copy it instead.");
    }
  }

  function turnNode(turn, index) {
    const li = document.createElement("li");
    li.className = "turn";
    li.dataset.role = turn.role;
    const head = document.createElement("div");
    head.className = "turn-head";
    const who = document.createElement("span");
    who.className = "who muted";
    who.textContent = turn.role === "user" ? "You" : "Model";
    head.append(who);
    if (turn.role === "assistant") {
      const b = button("Copy", "copy-btn", () => copy(turn, b));
      head.append(b);
    }
    if (index === state.turns.length - 1 && !controller) {
      // The last answer can be asked for again; a question left without one, retried.
      head.append(button(turn.role === "assistant" ? "Regenerate" : "Retry", "regen-btn",
                         regenerate));
    }
    const body = document.createElement("div");
    body.className = turn.role === "assistant" ? "body md" : "body plain";
    fillBody(body, turn);
    li.append(head, body);
    return li;
  }

  function render() {
    $("chat-log").replaceChildren(...state.turns.map(turnNode));
    $("chat-empty").hidden = state.turns.length > 0;
  }

  function setRunning(on) {
    setBusy(on);
    $("chat-stop").disabled = !on;
    $("chat-clear").disabled = on;
    for (const b of document.querySelectorAll("#chat-log .regen-btn")) b.disabled = on;
    $("chat-log").dataset.state = on ? "streaming" : "idle";
  }

  function request(m) {
    const messages = [];
    const system = $("system-prompt").value.trim();
    if (system) messages.push({ role: "system", content: system });
    for (const t of state.turns) messages.push({ role: t.role, content: t.content });
    const maxTokens = Math.max(1, parseInt($("chat-max-tokens").value, 10) || 512);
    return { model: m.id, messages, stream: true, max_tokens: maxTokens,
             stream_options: { include_usage: true } };
  }

  // Streams one answer to the turns so far into a new assistant turn.
  async function answer() {
    const m = selectedModel();
    if (!m) return showError("Pick a model first.");
    clearError();
    controller = new AbortController();
    setRunning(true);
    delete $("chat-log").dataset.result;
    $("chat-tps").textContent = "–";
    const turn = { role: "assistant", content: "" };
    let node = null;
    let meter = null;
    let result = "error";
    let pending = false;
    const paint = () => {
      pending = false;
      fillBody(node.querySelector(".body"), turn);
    };
    try {
      await ensureLoaded(m, $("chat-status"), controller.signal);
      $("chat-status").textContent = "generating…";
      meter = new Meter();
      const response = await api("/v1/chat/completions", {
        method: "POST", body: JSON.stringify(request(m)), signal: controller.signal });
      state.turns.push(turn);
      node = turnNode(turn, state.turns.length - 1);
      $("chat-log").append(node);
      $("chat-empty").hidden = true;
      for await (const { data } of sseEvents(response, controller.signal)) {
        if (data === "[DONE]") break;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        const text = textOf(chunk);
        if (text) {
          meter.piece();
          turn.content += text;
          if (!pending) { pending = true; requestAnimationFrame(paint); }
        }
        if (chunk.usage) meter.usage(chunk.usage.completion_tokens);
        $("chat-tps").textContent = meter.rateText();
      }
      result = "complete";
    } catch (err) {
      result = err.name === "AbortError" ? "stopped" : "error";
      if (result === "error") showError(err.message);
    } finally {
      controller = null;
      if (!turn.content && result !== "complete") {
        state.turns = state.turns.filter((t) => t !== turn);
      }
      save();
      render();
      setRunning(false);
      $("chat-log").dataset.result = result;
      if (meter) $("chat-tps").textContent = meter.rateText();
      const counted = meter ? meter.summary() : "";
      $("chat-status").textContent = result === "complete" ? `done · ${counted}`
        : result === "stopped" ? `stopped · ${counted}` : "failed";
    }
  }

  async function send() {
    const text = $("chat-input").value;
    if (!text.trim()) return showError("Type a message first.");
    if (!selectedModel()) return showError("Pick a model first.");
    state.turns.push({ role: "user", content: text });
    $("chat-input").value = "";
    save();
    render();
    await answer();
  }

  async function regenerate() {
    if (controller) return;
    while (state.turns.length && state.turns[state.turns.length - 1].role === "assistant") {
      state.turns.pop();
    }
    if (!state.turns.length) return;
    render();
    await answer();
  }

  function newChat() {
    if (controller) return;
    state.turns = [];
    save();
    render();
    $("chat-status").textContent = "";
    $("chat-tps").textContent = "–";
  }

  function modelChanged() {
    const m = selectedModel();
    $("chat-note").hidden = !(m && m.prompt_style === "completion");
  }

  $("system-prompt").value = state.system;
  if (state.system) $("system-box").open = true;
  $("system-prompt").addEventListener("change", save);
  $("chat-send").addEventListener("click", send);
  $("chat-stop").addEventListener("click", () => controller && controller.abort());
  $("chat-clear").addEventListener("click", newChat);
  $("chat-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      if (!controller && !$("chat-send").disabled) send();
    }
  });
  render();
  modelChanged();
  return { modelChanged };
}
