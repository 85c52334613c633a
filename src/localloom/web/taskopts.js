// Task options in the one-shot view: a button for every task `GET /api/tasks` lists (the
// user's from tasks.toml too) and, for the task picked under "Options for", a control per
// option built from its metadata: a select for a `choice`, a number field for a `count`,
// a text field for a `language`. The choices are kept per task for this tab and sent with
// the task (`options`).
//
//   const options = setupTaskOptions();
//   await options.ready;
//   body.options = options.valuesFor("summarize");   // {type: "tldr", length: "short", ...}

import { $, api } from "./core.js";

function labelOf(task) {
  return task.name.charAt(0).toUpperCase() + task.name.slice(1);
}

function control(task, option, chosen) {
  const id = `opt-${task.name}-${option.name}`;
  const value = chosen[option.name] ?? option.default;
  let input;
  if (option.kind === "choice") {
    input = document.createElement("select");
    for (const choice of option.choices || []) {
      const item = document.createElement("option");
      item.value = choice;
      item.textContent = choice;
      input.append(item);
    }
  } else {
    input = document.createElement("input");
    input.type = option.kind === "count" ? "number" : "text";
    if (option.kind === "count") {
      input.min = String(option.minimum ?? 1);
      if (option.maximum != null) input.max = String(option.maximum);
    } else {
      input.size = 5;
    }
  }
  input.id = id;
  input.value = String(value);
  input.dataset.option = option.name;
  input.title = option.description;
  input.addEventListener("change", () => {
    chosen[option.name] = option.kind === "count" ? Number(input.value) : input.value;
  });
  const label = document.createElement("label");
  label.className = "muted";
  label.htmlFor = id;
  label.textContent = `${option.name} `;
  label.append(input);
  return label;
}

/** Build the task buttons and option controls; returns {ready, valuesFor(task), show(task)}. */
export function setupTaskOptions() {
  const tasks = new Map(); // name -> TaskInfo
  const chosen = new Map(); // name -> {option: value}
  const picker = $("task-options-for");
  const box = $("task-option-controls");

  function show(name) {
    const task = tasks.get(name);
    if (!task || !task.options.length) return;
    picker.value = name;
    if (!chosen.has(name)) chosen.set(name, {});
    box.replaceChildren(...task.options.map((o) => control(task, o, chosen.get(name))));
  }

  function valuesFor(name) {
    const task = tasks.get(name);
    if (!task || !task.options.length) return undefined;
    const mine = chosen.get(name) || {};
    return Object.fromEntries(task.options.map((o) => [o.name, mine[o.name] ?? o.default]));
  }

  async function load() {
    const listed = (await (await api("/api/tasks")).json()).tasks;
    const buttons = $("task-buttons");
    const shown = new Set([...buttons.querySelectorAll(".task-btn")].map((b) => b.dataset.task));
    const before = $("task-to").closest("label");
    for (const task of listed) {
      tasks.set(task.name, task);
      if (shown.has(task.name)) continue;
      const button = document.createElement("button");
      button.type = "button";
      button.className = "task-btn";
      button.dataset.task = task.name;
      button.textContent = labelOf(task);
      button.title = task.description;
      buttons.insertBefore(button, before);
    }
    picker.replaceChildren();
    for (const task of listed.filter((t) => t.options.length)) {
      const item = document.createElement("option");
      item.value = task.name;
      item.textContent = labelOf(task);
      picker.append(item);
    }
    $("task-options").hidden = !picker.options.length;
    if (picker.options.length) show(picker.options[0].value);
  }

  picker.addEventListener("change", () => show(picker.value));
  return { ready: load(), valuesFor, show };
}
