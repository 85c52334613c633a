// LocalLoom's content script: a floating button beside a selection and a result card.
// Everything it draws lives in a closed shadow root, and model output only ever becomes
// text nodes (never innerHTML), so a page can neither read the card nor be scripted by it.
// It reacts only to trusted (user or browser) events and talks only to its own service
// worker; it listens to no window messages, so a page cannot drive it.
(() => {
  if (globalThis.__localloomContent) return;
  globalThis.__localloomContent = true;
  const ext = globalThis.browser ?? globalThis.chrome;

  const LABELS = { summarize: "Summarize", rewrite: "Rewrite", counter: "Counter-argument",
                   question: "Question", translate: "Translate" };
  const label = (task) => LABELS[task] || task;

  // In a shadow root, :host !important beats even the page's !important rules on the host.
  const STYLE = `
    :host { all: initial !important; position: absolute !important; display: block !important;
            z-index: 2147483647 !important; top: var(--localloom-top) !important;
            left: var(--localloom-left) !important; }
    * { box-sizing: border-box; font: 13px/1.45 system-ui, sans-serif; color: #1d1b26;
        letter-spacing: normal; text-transform: none; }
    .fab { display: inline-flex; gap: 2px; background: #4b3ca7; border-radius: 16px;
           box-shadow: 0 2px 8px rgba(0,0,0,.25); padding: 2px; }
    .fab button { border: 0; background: transparent; color: #fff; padding: 4px 10px;
                  border-radius: 14px; cursor: pointer; }
    .fab button:hover, .fab button:focus-visible { background: #6a5ad0; outline: 2px solid #fff; }
    .menu { position: absolute; top: 30px; left: 0; background: #fff; border: 1px solid #ccc;
            border-radius: 8px; box-shadow: 0 4px 14px rgba(0,0,0,.2); padding: 4px; }
    .menu button { display: block; width: 100%; text-align: left; border: 0; background: none;
                   padding: 5px 10px; border-radius: 6px; cursor: pointer; color: #1d1b26; }
    .menu button:hover, .menu button:focus-visible { background: #eeeaff; }
    .card { width: 380px; max-width: 92vw; background: #fff; border: 1px solid #cfc9ea;
            border-radius: 12px; box-shadow: 0 6px 24px rgba(0,0,0,.22); overflow: hidden; }
    .head { display: flex; align-items: center; gap: 8px; padding: 8px 12px;
            background: #f3f0ff; border-bottom: 1px solid #e2ddfa; }
    .head strong { font-weight: 600; color: #4b3ca7; }
    .head .status { flex: 1; color: #6b6880; font-size: 12px; }
    .head .close { border: 0; background: none; font-size: 16px; cursor: pointer; }
    .out { padding: 10px 12px; max-height: 320px; overflow: auto; white-space: pre-wrap;
           word-break: break-word; }
    .bar { display: block; width: calc(100% - 24px); margin: 8px 12px 0; height: 8px; }
    .bar[hidden], button[hidden] { display: none; }
    .opts { display: flex; flex-wrap: wrap; gap: 4px 10px; padding: 6px 12px 0; }
    .opts label { color: #6b6880; font-size: 12px; }
    .opts select, .opts input { font-size: 12px; max-width: 9rem; }
    .out ul, .out ol { margin: 0; padding-left: 1.3em; white-space: normal; }
    .out.md { white-space: normal; }
    .out.md p, .out.md h4 { margin: 0 0 6px; }
    .out code { font-family: ui-monospace, monospace; background: #f3f0ff; }
    .note { padding: 0 12px 8px; color: #9a3412; font-size: 12px; white-space: pre-wrap; }
    .actions { display: flex; gap: 6px; padding: 8px 12px; border-top: 1px solid #eee; }
    .actions button { border: 1px solid #cfc9ea; background: #fff; border-radius: 8px;
                      padding: 4px 10px; cursor: pointer; color: #1d1b26; }
    .actions button:hover:not(:disabled), .actions button:focus-visible { background: #eeeaff; }
    .actions button:disabled { opacity: .45; cursor: default; }
  `;

  function el(tag, props = {}, children = []) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key === "text") node.textContent = value; // text only: never markup
      else if (key === "on") for (const [ev, fn] of Object.entries(value)) {
        node.addEventListener(ev, (event) => { if (event.isTrusted) fn(event); });
      } else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  /** One absolutely positioned host with a closed shadow root; page CSS cannot reach in. */
  function makeHost(name) {
    const host = document.createElement(name);
    const root = host.attachShadow({ mode: "closed" });
    root.append(el("style", { text: STYLE }));
    return { host, root };
  }

  /** Put the host below the selection, else above it, else at the viewport's top; never
   * over a password field. Returns false when no such place exists. */
  function place(host, rect, force = false, avoidPasswords = true) {
    const height = host.getBoundingClientRect().height || 32;
    const left = Math.max(4, Math.min(rect.left, document.documentElement.clientWidth - 400));
    const spots = [rect.bottom + 6, rect.top - height - 6, 8];
    for (const top of spots) {
      if (top < 0 || top + height > window.innerHeight) continue;
      const box = { left, right: left + (host.getBoundingClientRect().width || 200),
                    top, bottom: top + height };
      if (avoidPasswords && overPassword(box)) continue;
      host.style.setProperty("--localloom-top", `${window.scrollY + top}px`);
      host.style.setProperty("--localloom-left", `${window.scrollX + left}px`);
      return true;
    }
    if (force) { // the card must show somewhere: the viewport's top-left corner
      host.style.setProperty("--localloom-top", `${window.scrollY + 8}px`);
      host.style.setProperty("--localloom-left", `${window.scrollX + 8}px`);
    }
    return false;
  }

  // ---------------------------------------------------------------- selection

  function selected() {
    const sel = window.getSelection();
    const text = sel ? sel.toString().trim() : "";
    if (!text || !sel.rangeCount) return null;
    const active = document.activeElement;
    if (active instanceof HTMLInputElement && active.type === "password") return null;
    const rect = sel.getRangeAt(0).getBoundingClientRect();
    return { text, rect };
  }

  function overPassword(rect) {
    for (const input of document.querySelectorAll("input[type=password]")) {
      const r = input.getBoundingClientRect();
      if (r.width && !(r.right < rect.left || r.left > rect.right || r.bottom < rect.top ||
                       r.top > rect.bottom)) return true;
    }
    return false;
  }

  let fab = null;
  let lastSelection = null;

  // Where focus was before Tab moved it to the button: Escape or Tab past it goes back there.
  let returnFocus = null;

  function hideFab() {
    const hadFocus = fab && document.activeElement === fab.host;
    fab?.host.remove();
    fab = null;
    if (hadFocus && returnFocus?.isConnected) returnFocus.focus({ preventScroll: true });
    returnFocus = null;
  }

  /** Tab right after a selection moves focus to the button (it sits at the end of the
   * document, so the tab order alone would never reach it); Tab or Shift+Tab past its
   * buttons dismisses it and gives focus back. */
  function onTab(event) {
    if (!fab) return;
    const inside = document.activeElement === fab.host;
    if (!inside) {
      // In a form field Tab keeps its meaning (next field); Alt+Shift+L still runs the task.
      const active = document.activeElement;
      if (event.shiftKey || active?.isContentEditable ||
          active instanceof HTMLInputElement || active instanceof HTMLTextAreaElement ||
          active instanceof HTMLSelectElement) return;
      event.preventDefault();
      returnFocus = document.activeElement;
      fab.main.focus();
      return;
    }
    const buttons = fab.buttons.filter((b) => !b.closest("[hidden]"));
    const at = buttons.indexOf(fab.root.activeElement);
    const next = at + (event.shiftKey ? -1 : 1);
    event.preventDefault();
    if (next < 0 || next >= buttons.length) hideFab();
    else buttons[next].focus();
  }

  async function showFab(selection) {
    lastSelection = selection;
    const { tasks, lastTask } = await ask({ type: "tasks" });
    hideFab();
    const { host, root } = makeHost("localloom-button");
    const menu = el("div", { class: "menu", hidden: "" });
    for (const task of tasks || []) {
      menu.append(el("button", { text: task.label, on: { click: () => start(task.name) } }));
    }
    const main = el("button", { "aria-label": `LocalLoom: ${label(lastTask)} the selection`,
      text: `✦ ${label(lastTask)}`, on: { click: () => start(lastTask) } });
    const more = el("button", { "aria-label": "More LocalLoom tasks", "aria-haspopup": "menu",
      text: "▾", on: { click: () => menu.toggleAttribute("hidden") } });
    root.append(el("div", { class: "fab", role: "toolbar",
                             "aria-label": "LocalLoom (Tab to reach, Escape to dismiss)" },
                   [main, more]), menu);
    document.documentElement.append(host);
    fab = { host, root, main, buttons: [main, more, ...menu.children] };
    if (!place(host, selection.rect)) hideFab();
    function start(task) {
      hideFab();
      ask({ type: "setLastTask", task });
      openCard(task, lastSelection.text, lastSelection.rect);
    }
  }

  let timer = 0;
  document.addEventListener("selectionchange", (event) => {
    if (!event.isTrusted) return;
    clearTimeout(timer);
    timer = setTimeout(() => {
      // Focus on the button (Tab) may collapse the page's selection: the button stays.
      if (fab && document.activeElement === fab.host) return;
      const selection = selected();
      if (selection && !card) showFab(selection);
      else if (!selection) hideFab();
    }, 200);
  });
  document.addEventListener("keydown", (event) => {
    if (!event.isTrusted) return;
    if (event.key === "Tab" && !event.altKey && !event.ctrlKey && !event.metaKey) {
      onTab(event);
      return;
    }
    if (event.key !== "Escape") return;
    hideFab();
    if (card && !card.busy) closeCard();
  }, true);

  // ---------------------------------------------------------------- the card

  let card = null;

  function closeCard() {
    card?.port?.disconnect();
    card?.host.remove();
    card = null;
  }

  function openCard(task, text, rect) {
    closeCard();
    const { host, root } = makeHost("localloom-card");
    const status = el("span", { class: "status", role: "status", text: "Starting…" });
    const out = el("div", { class: "out", "aria-live": "polite" });
    const note = el("div", { class: "note", hidden: "" });
    const opts = el("div", { class: "opts", role: "group", "aria-label": "Options" });
    const bar = el("progress", { class: "bar", max: "1", value: "0", hidden: "" });
    const download = el("button", { class: "download", hidden: "", text: "Download and run",
      on: { click: () => startDownload(card) } });
    const stop = el("button", { text: "Stop", on: { click: () => finish("Stopped.") } });
    const copy = el("button", { text: "Copy", disabled: "", on: { click: copyText } });
    const save = el("button", { text: "Save", disabled: "", on: { click: saveResult } });
    const openApp = el("button", { text: "Open in LocalLoom",
      on: { click: () => ask({ type: "open", what: "app", id: card?.savedId || "" }) } });
    const close = el("button", { class: "close", "aria-label": "Close", text: "×",
      on: { click: closeCard } });
    root.append(el("div", { class: "card", role: "dialog", "aria-label": "LocalLoom result" }, [
      el("div", { class: "head" }, [el("strong", { text: label(task) }), status, close]),
      opts, bar, out, note, el("div", { class: "actions" }, [download, stop, copy, save, openApp])]));
    document.documentElement.append(host);
    // The card answers the user's own click, so it may cover a form; the button may not.
    place(host, rect || { bottom: 40, top: 40, left: 40 }, true, false);
    card = { host, out, status, note, bar, download, stop, copy, save, task, text, answer: "",
             result: null, busy: true, port: null, opts, options: null };
    stop.focus();
    showOptions(card);
    run(card);
  }

  /** Start (or restart) the card's task; `card.options` null: the ones kept last time. */
  function run(current) {
    const port = ext.runtime.connect({ name: "localloom-task" });
    current.port = port;
    port.onMessage.addListener((message) => onEvent(current, message));
    port.onDisconnect.addListener(() => {
      if (card === current && current.port === port && current.busy) {
        finish("LocalLoom stopped answering (the extension was reloaded).");
      }
    });
    port.postMessage({ type: "run", task: current.task, text: current.text,
      options: current.options || undefined, url: location.href, title: document.title });
  }

  /** A control per option of the card's task (from /api/tasks); a change runs it again. */
  async function showOptions(current) {
    const reply = await ask({ type: "tasks" });
    const info = (reply?.tasks || []).find((t) => t.name === current.task);
    if (!info?.options?.length || current !== card) return;
    const kept = reply.taskOptions?.[current.task] || {};
    const values = Object.fromEntries(info.options.map((o) => [o.name, kept[o.name] ?? o.default]));
    for (const option of info.options) {
      const field = option.kind === "choice"
        ? el("select", {}, option.choices.map((c) => el("option", { value: c, text: c })))
        : el("input", { type: option.kind === "count" ? "number" : "text", size: "5",
            ...(option.kind === "count" ? { min: String(option.minimum ?? 1),
              max: String(option.maximum ?? 99) } : {}) });
      field.value = String(values[option.name]);
      field.title = option.description;
      field.dataset.option = option.name;
      field.addEventListener("change", (event) => {
        if (!event.isTrusted || current !== card) return;
        values[option.name] = option.kind === "count" ? Number(field.value) : field.value;
        rerun(current, { ...values });
      });
      current.opts.append(el("label", { text: `${option.name} ` }, [field]));
    }
  }

  function rerun(current, options) {
    current.port?.disconnect();
    current.options = options;
    current.answer = "";
    current.result = null;
    current.out.textContent = "";
    current.out.classList.remove("md");
    current.note.hidden = true;
    current.busy = true;
    current.stop.disabled = false;
    current.copy.disabled = true;
    current.save.disabled = true;
    current.status.textContent = "Starting…";
    run(current);
  }

  // ---------------------------------------------------------------- markdown as DOM

  /** Inline markdown (bold, italic, code) as text nodes and elements: never markup. */
  function inline(text) {
    const parts = [];
    const pattern = /(\*\*[^*]+\*\*|`[^`]+`|\*[^*\s][^*]*\*)/g;
    let last = 0;
    for (const match of text.matchAll(pattern)) {
      if (match.index > last) parts.push(document.createTextNode(text.slice(last, match.index)));
      const m = match[0];
      const tag = m.startsWith("**") ? "strong" : m.startsWith("`") ? "code" : "em";
      const cut = tag === "strong" ? 2 : 1;
      parts.push(el(tag, { text: m.slice(cut, m.length - cut) }));
      last = match.index + m.length;
    }
    if (last < text.length) parts.push(document.createTextNode(text.slice(last)));
    return parts;
  }

  /** Paragraphs, headings and lists of a markdown answer, built from text nodes. */
  function markdownNodes(text) {
    const nodes = [];
    let list = null;
    for (const line of text.split("\n")) {
      const bullet = /^\s*[-*+•]\s+(.*)$/.exec(line);
      const numbered = /^\s*\d{1,3}[.)]\s+(.*)$/.exec(line);
      const heading = /^#{1,6}\s+(.*)$/.exec(line);
      if (bullet || numbered) {
        const kind = bullet ? "ul" : "ol";
        if (!list || list.tagName.toLowerCase() !== kind) nodes.push(list = el(kind));
        list.append(el("li", {}, inline((bullet || numbered)[1])));
        continue;
      }
      list = null;
      if (heading) nodes.push(el("h4", {}, inline(heading[1])));
      else if (line.trim()) nodes.push(el("p", {}, inline(line)));
    }
    return nodes;
  }

  function formatBytes(n) {
    if (!n) return "size unknown";
    return n >= 1e9 ? `${(n / 1e9).toFixed(1)} GB` : `${Math.max(1, Math.round(n / 1e6))} MB`;
  }

  /** The task's model is not downloaded: offer the download, or say how to get it. */
  function offerDownload(current, model) {
    current.busy = false; // waiting for the user: Escape may close the card
    current.status.textContent = "Model not downloaded.";
    const what = `${model.name} (${model.id}, ${formatBytes(model.size)}) is not downloaded yet.`;
    current.note.textContent = model.canPull
      ? `${what} Download it now? The task runs when it is ready.`
      : `${what} This extension was paired without permission to download models. Run ` +
        `\`${model.commands[0]}\`, or pair again with \`${model.commands[1]}\`, then try again.`;
    current.note.hidden = false;
    if (model.canPull) {
      current.download.hidden = false;
      current.download.focus();
    } else {
      current.stop.disabled = true;
    }
  }

  function startDownload(current) {
    if (current !== card || !current.port) return;
    current.busy = true;
    current.download.hidden = true;
    current.note.hidden = true;
    current.bar.hidden = false;
    current.status.textContent = "Downloading…";
    current.stop.focus();
    current.port.postMessage({ type: "pull" });
  }

  function onEvent(current, message) {
    if (current !== card) return;
    if (message.type === "missing") {
      offerDownload(current, message.model);
    } else if (message.type === "pull-progress") {
      current.bar.value = Math.max(0, Math.min(1, message.progress || 0));
      current.status.textContent = `Downloading… ${Math.round(current.bar.value * 100)}%`;
    } else if (message.type === "pulled") {
      current.bar.value = 1;
      current.bar.hidden = true;
      current.status.textContent = "Downloaded. Starting…";
    } else if (message.type === "delta") {
      current.answer += message.text;
      current.out.append(document.createTextNode(message.text));
      current.status.textContent = "Writing…";
    } else if (message.type === "progress") {
      current.status.textContent = `Part ${message.done} of ${message.total}…`;
    } else if (message.type === "done") {
      current.result = message.result;
      current.answer = message.result.text || current.answer;
      const markdown = message.result.options?.format === "markdown";
      current.out.classList.toggle("md", markdown);
      if (markdown) current.out.replaceChildren(...markdownNodes(current.answer));
      else current.out.textContent = current.answer;
      finish("Done.");
    } else if (message.type === "error") {
      finish(message.kind === "interrupted" ? "Interrupted." : "Failed.", message.message);
    }
  }

  function finish(statusText, problem) {
    if (!card) return;
    card.busy = false;
    card.port?.disconnect();
    card.port = null;
    card.status.textContent = statusText;
    card.stop.disabled = true;
    card.download.hidden = true;
    card.bar.hidden = true;
    if (card.answer) card.copy.disabled = false;
    if (card.answer && card.result) card.save.disabled = false;
    if (problem) {
      card.note.textContent = problem;
      card.note.hidden = false;
    }
  }

  async function copyText() {
    try {
      await navigator.clipboard.writeText(card.answer);
      card.status.textContent = "Copied.";
    } catch {
      card.status.textContent = "Copy failed: select the text and copy it.";
    }
  }

  async function saveResult() {
    const current = card;
    current.save.disabled = true;
    const r = current.result;
    const reply = await ask({ type: "save", record: {
      task: current.task, model: r.model, original: current.text, result: current.answer,
      language: r.language || null, source_url: location.href, source_title: document.title,
      prompt_tokens: r.usage?.prompt_tokens || 0,
      completion_tokens: r.usage?.completion_tokens || 0 } });
    if (reply?.ok) {
      current.savedId = reply.id; // "Open in LocalLoom" now shows this result
      current.status.textContent = "Saved.";
    } else {
      current.save.disabled = false;
      current.note.textContent = reply?.message || "Saving failed.";
      current.note.hidden = false;
    }
  }

  function ask(message) {
    return ext.runtime.sendMessage(message).catch((error) =>
      ({ ok: false, message: String(error?.message || error) }));
  }

  // The service worker asks us to run a task (context menu, keyboard shortcut).
  ext.runtime.onMessage.addListener((message, sender) => {
    if (sender.id !== ext.runtime.id || message?.type !== "localloom:run") return;
    const selection = selected();
    const text = message.text || selection?.text || "";
    if (!text) return;
    hideFab();
    openCard(message.task, selection?.text || text, selection?.rect);
  });
})();
