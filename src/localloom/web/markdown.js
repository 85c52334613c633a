// Markdown of model answers as DOM nodes, never as HTML: model text only ever lands in text
// nodes, so `<img src=x onerror=...>` in an answer shows as those characters. Covers what
// chat answers use: paragraphs, headings, lists, quotes, fenced code, inline code,
// bold/italic and links (http and https only, opened with rel=noopener).
//
//   import { renderMarkdown } from "./markdown.js";
//   node.replaceChildren(renderMarkdown("**Hi** `x`"));

const FENCE = /^\s*(```|~~~)\s*([\w+.#-]*)\s*$/;
const HEADING = /^(#{1,6})\s+(.*?)\s*#*\s*$/;
const BULLET = /^\s{0,3}[-*+]\s+(.*)$/;
const NUMBERED = /^\s{0,3}(\d{1,9})[.)]\s+(.*)$/;
const QUOTE = /^\s{0,3}>\s?(.*)$/;

function el(tag, ...children) {
  const node = document.createElement(tag);
  node.append(...children);
  return node;
}

// The parts of a link that may become one: absolute http(s) URLs, nothing else.
function safeUrl(text) {
  try {
    const url = new URL(text);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch (_) {
    return null;
  }
}

// Inline patterns, tried at each position; the earliest match wins, ties go to the first.
const INLINE = [
  { re: /`([^`\n]+)`/, make: (m) => el("code", m[1]) },
  { re: /\[([^\]\n]+)\]\(([^()\s]+)\)/, make: (m) => link(m[1], m[2], m[0]) },
  { re: /<(https?:\/\/[^>\s]+)>/, make: (m) => link(m[1], m[1], m[0]) },
  { re: /\*\*(?=\S)([^\n]*?\S)\*\*/, make: (m) => el("strong", ...inline(m[1])) },
  { re: /__(?=\S)([^\n]*?\S)__(?!\w)/, make: (m) => el("strong", ...inline(m[1])) },
  { re: /\*(?=[^\s*])([^*\n]*?[^\s*])\*/, make: (m) => el("em", ...inline(m[1])) },
  { re: /(?<![\w_])_(?=[^\s_])([^_\n]*?[^\s_])_(?![\w_])/, make: (m) => el("em", ...inline(m[1])) },
];

function link(label, target, raw) {
  const href = safeUrl(target);
  if (!href) return document.createTextNode(raw);  // javascript:, data:, relative: text
  const a = el("a", ...inline(label));
  a.href = href;
  a.rel = "noopener noreferrer";
  a.target = "_blank";
  return a;
}

/** Inline markdown of one block's text as a list of nodes. */
export function inline(text) {
  const out = [];
  let rest = text;
  while (rest) {
    let best = null;
    for (const rule of INLINE) {
      const m = rule.re.exec(rest);
      if (m && (!best || m.index < best.m.index)) best = { m, rule };
    }
    if (!best) break;
    if (best.m.index) out.push(document.createTextNode(rest.slice(0, best.m.index)));
    out.push(best.rule.make(best.m));
    rest = rest.slice(best.m.index + best.m[0].length);
  }
  if (rest) out.push(document.createTextNode(rest));
  return out;
}

// Consecutive list items of one kind; a more-indented line continues the last item.
function listBlock(lines, i, ordered) {
  const pattern = ordered ? NUMBERED : BULLET;
  const list = document.createElement(ordered ? "ol" : "ul");
  const first = pattern.exec(lines[i]);
  if (ordered && first[1] !== "1") list.start = parseInt(first[1], 10);
  let item = null;
  for (; i < lines.length; i += 1) {
    const m = pattern.exec(lines[i]);
    if (m) {
      item = [ordered ? m[2] : m[1]];
      list.append(el("li"));
    } else if (item && /^\s{2,}\S/.test(lines[i])) {
      item.push(lines[i].trim());
    } else {
      break;
    }
    list.lastChild.replaceChildren(...inline(item.join("\n")));
  }
  return [list, i];
}

function codeBlock(lines, i) {
  const fence = FENCE.exec(lines[i]);
  const body = [];
  for (i += 1; i < lines.length && !lines[i].trim().startsWith(fence[1]); i += 1) {
    body.push(lines[i]);
  }
  const code = el("code", body.join("\n"));
  if (fence[2]) code.dataset.lang = fence[2];
  return [el("pre", code), i + 1];  // an unclosed fence (still streaming) runs to the end
}

function startsBlock(line) {
  return FENCE.test(line) || HEADING.test(line) || BULLET.test(line) || NUMBERED.test(line)
    || QUOTE.test(line);
}

/** The whole answer as a fragment of block elements (p, h3–h6, ul, ol, pre, blockquote). */
export function renderMarkdown(text) {
  const lines = String(text).replace(/\r\n?/g, "\n").split("\n");
  const fragment = document.createDocumentFragment();
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    let m;
    if (!line.trim()) {
      i += 1;
    } else if (FENCE.test(line)) {
      const [node, next] = codeBlock(lines, i);
      fragment.append(node);
      i = next;
    } else if ((m = HEADING.exec(line))) {
      fragment.append(el(`h${Math.min(6, m[1].length + 2)}`, ...inline(m[2])));
      i += 1;
    } else if (BULLET.test(line) || NUMBERED.test(line)) {
      const [node, next] = listBlock(lines, i, !BULLET.test(line));
      fragment.append(node);
      i = next;
    } else if (QUOTE.test(line)) {
      const quoted = [];
      for (; i < lines.length && (m = QUOTE.exec(lines[i])); i += 1) quoted.push(m[1]);
      fragment.append(el("blockquote", renderMarkdown(quoted.join("\n"))));
    } else {
      const para = [];
      for (; i < lines.length && lines[i].trim() && (!para.length || !startsBlock(lines[i]));
        i += 1) para.push(lines[i]);
      fragment.append(el("p", ...inline(para.join("\n"))));
    }
  }
  return fragment;
}
