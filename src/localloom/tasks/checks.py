"""Holding an answer to its options: one line, at most N bullets or sentences or words, no
markdown in plain text.

Prompts ask for the shape and max_tokens/stop strings bound it, but a small model does not
always listen, so :class:`OutputShaper` checks the answer as it streams: it releases whole
lines only, reshaped (list markers made uniform, markdown stripped from plain text), and
says it is :attr:`~OutputShaper.full` once a limit is reached, so the runner stops the
generation there. What it releases never has to be taken back, and never breaks a rule.
:func:`violations` states the rules as plain checks (the tests use it on fixed texts).

Example::

    rules = OutputRules(max_items=3, list_style="bullets", text_format="plain-text")
    enforce("* **One**\\n* Two\\n* Three\\n* Four", rules)   # "• One\\n• Two\\n• Three"
"""

from __future__ import annotations

import re

from localloom.tasks.options import OutputRules

__all__ = ["OutputShaper", "enforce", "has_markdown", "strip_markdown", "violations"]

# Marker tokens some small models write as text between sentences (Gemma 3 270M writes
# "<start_of_image>"): they are no part of an answer and hide its sentence ends.
_STRAY_TOKEN = re.compile(r"<(?:start|end)_of_[a-z]+>|<unused\d+>")
_LINE_BREAKS = re.compile("[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_MARKER = re.compile(r"^\s*(?:[-*+•·]|\d{1,2}[.)])\s+")
_SENTENCE_END = re.compile(r"[.!?…](?:[\"'”’)\]]*)(?=\s|$)")
_MARKDOWN_SIGNS = (
    re.compile(r"^\s{0,3}#{1,6}\s"),  # heading
    re.compile(r"^\s*[-*+]\s"),  # bullet
    re.compile(r"^\s{0,3}>"),  # quote
    re.compile(r"\*\*|__|`|~~"),  # bold, code, strike-through
    re.compile(r"\]\("),  # link
    re.compile(r"(?<![\w*])\*(?!\s)[^*\n]+(?<!\s)\*(?![\w*])"),  # *italic*
    re.compile(r"^\s*(?:[-*_]\s*){3,}$"),  # horizontal rule
    re.compile(r"^\s*\|.*\|\s*$"),  # table row
)


def strip_markdown(line: str) -> str:
    """One line without markdown: bullets become "• ", emphasis, code, links and headings
    become their text."""
    for _ in range(3):  # removing one mark can leave another (**_x_**): until none is left
        stripped = _strip_once(line)
        if stripped == line:
            break
        line = stripped
    return line


def _strip_once(line: str) -> str:
    if re.match(r"^\s*(?:[-*_]\s*){3,}$", line) or re.match(r"^\s*\|?[\s:|-]+\|[\s:|-]*$",
                                                             line):
        return ""  # a horizontal rule or a table's separator row
    line = re.sub(r"^\s{0,3}#{1,6}\s+", "", line)
    line = re.sub(r"^\s{0,3}>\s?", "", line)
    line = re.sub(r"^(\s*)[-*+]\s+", r"\1• ", line)
    line = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", line)
    line = re.sub(r"(\*\*|__)(.+?)\1", r"\2", line)
    line = re.sub(r"(?<![\w*])\*(?!\s)([^*]+?)(?<!\s)\*(?![\w*])", r"\1", line)
    line = re.sub(r"(?<![\w_])_(?!\s)([^_]+?)(?<!\s)_(?![\w_])", r"\1", line)
    line = re.sub(r"~~(.+?)~~", r"\1", line)
    line = re.sub(r"`+([^`]*)`+", r"\1", line)
    # What is left of unpaired marks would still read as markdown.
    line = line.replace("**", "").replace("`", "").replace("~~", "").replace("](", "] (")
    line = re.sub(r"_{2,}", "_", line)
    if re.match(r"^\s*\|.*\|\s*$", line):  # a table row: its cells, comma-separated
        line = ", ".join(c.strip() for c in line.strip().strip("|").split("|") if c.strip())
    return line


def has_markdown(text: str) -> bool:
    """Whether any line of `text` uses markdown syntax."""
    return any(sign.search(line) for line in text.splitlines() for sign in _MARKDOWN_SIGNS)


def _sentences(text: str) -> list[str]:
    """`text` split after each sentence end (the pieces join back to `text`)."""
    pieces, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        pieces.append(text[start:match.end()])
        start = match.end()
    if text[start:].strip():
        pieces.append(text[start:])
    return pieces


def _cut_words(text: str, limit: int) -> str:
    """At most `limit` words: whole sentences if one fits, else the first words."""
    if len(text.split()) <= limit:
        return text
    kept = ""
    for sentence in _sentences(text):
        if len((kept + sentence).split()) > limit:
            break
        kept += sentence
    return kept.rstrip() if kept.strip() else " ".join(text.split()[:limit])


class OutputShaper:
    """An answer reshaped to `rules`, line by line as it streams (see the module doc)."""

    def __init__(self, rules: OutputRules) -> None:
        self.rules = rules
        self._passthrough = not rules.shapes
        self._pending = ""
        self._lines: list[str] = []
        self._released = ""
        self._items = 0
        self._sentences = 0
        self._words = 0
        self.full = False

    @property
    def text(self) -> str:
        """The answer so far (complete lines only, until :meth:`finish`)."""
        return self._released.strip()

    def feed(self, text: str) -> str:
        """Add released answer text; returns what is now final and shaped."""
        if self.full or not text:
            return ""
        if self._passthrough:
            self._released += text
            return text
        # Every line break is "\n" here, as str.splitlines() would count it.
        text = _LINE_BREAKS.sub("\n", text.replace("\r\n", "\n"))
        self._pending = _STRAY_TOKEN.sub(" ", self._pending + text)
        out = []
        while "\n" in self._pending and not self.full:
            line, self._pending = self._pending.split("\n", 1)
            out.append(self._line(line))
        if not self.full and self._enough(self._pending):
            # The line already holds all the sentences or words allowed: end it here
            # rather than wait for its line break.
            line, self._pending = self._pending, ""
            out.append(self._line(line))
            self.full = True
        return "".join(out)

    def finish(self) -> str:
        """The last, unfinished line, once the answer has ended."""
        if self.full or self._passthrough or not self._pending.strip():
            return ""
        line, self._pending = self._pending, ""
        return self._line(line)

    def _enough(self, pending: str) -> bool:
        """Whether an unfinished line already reaches a sentence or word limit."""
        rules = self.rules
        if rules.max_sentences is not None:
            ended = sum(1 for m in _SENTENCE_END.finditer(pending) if m.end() < len(pending))
            if ended >= rules.max_sentences - self._sentences:
                return True
        if rules.max_words is not None:
            # More words than allowed: the last allowed one is complete.
            return len(pending.split()) > rules.max_words - self._words
        return False

    def _line(self, raw: str) -> str:
        line = self._shape(raw.rstrip() if self._released else raw.strip())
        if line is None:
            return ""
        if not line.strip():  # paragraph breaks stay (one), except inside lists
            if self._lines and self._lines[-1] and self.rules.list_style is None:
                self._lines.append("")
            return ""
        line = self._limit(line)
        if not line.strip():
            self.full = True
            return ""
        blank = bool(self._lines) and self._lines[-1] == ""
        sep = ("\n\n" if blank else "\n") if self._released else ""
        self._lines.append(line)
        self._released += sep + line
        if self.rules.max_lines is not None and self._count_lines() >= self.rules.max_lines:
            self.full = True
        return sep + line

    def _shape(self, line: str) -> str | None:
        rules = self.rules
        if rules.list_style is not None:
            # An item is a line of text: no heading or quote marks, whatever the format.
            item = re.sub(r"^(?:#{1,6}\s+|>\s?)", "", _MARKER.sub("", line).strip()).strip()
            if rules.text_format == "plain-text":
                item = strip_markdown(item).strip()
            if not item:
                return None
            if rules.max_items is not None and self._items >= rules.max_items:
                self.full = True
                return None
            self._items += 1
            if rules.list_style == "lines":
                return item
            return ("• " if rules.text_format == "plain-text" else "- ") + item
        if rules.text_format == "plain-text":
            return strip_markdown(line)
        return line

    def _limit(self, line: str) -> str:
        rules = self.rules
        if rules.max_sentences is not None:
            pieces = _sentences(line)
            room = rules.max_sentences - self._sentences
            if len(pieces) >= room:
                line = "".join(pieces[:max(room, 0)]).rstrip()
                self.full = True
            self._sentences += min(len(pieces), max(room, 0))
        if rules.max_words is not None:
            room = rules.max_words - self._words
            if len(line.split()) >= room:
                line = _cut_words(line, max(room, 0))
                self.full = True
            self._words += len(line.split())
        if rules.max_items is not None and self._items >= rules.max_items:
            self.full = True
        return line

    def _count_lines(self) -> int:
        return sum(1 for line in self._lines if line)


def enforce(text: str, rules: OutputRules) -> str:
    """`text` as the shaper releases it (the whole answer at once)."""
    shaper = OutputShaper(rules)
    shaper.feed(text)
    shaper.finish()
    return shaper.text


def violations(text: str, rules: OutputRules) -> list[str]:
    """Each rule `text` breaks, in words (none: it holds to every rule)."""
    problems = []
    lines = [line for line in text.splitlines() if line.strip()]
    if rules.max_lines is not None and len(lines) > rules.max_lines:
        problems.append(f"{len(lines)} lines, more than {rules.max_lines}")
    if rules.max_items is not None and len(lines) > rules.max_items:
        problems.append(f"{len(lines)} items, more than {rules.max_items}")
    if rules.list_style == "bullets":
        marker = "• " if rules.text_format == "plain-text" else "- "
        if any(not line.startswith(marker) for line in lines):
            problems.append(f"a line that is not a '{marker.strip()}' bullet")
    if rules.max_sentences is not None:
        count = sum(len(_sentences(line)) for line in lines)
        if count > rules.max_sentences:
            problems.append(f"{count} sentences, more than {rules.max_sentences}")
    if rules.max_words is not None and len(text.split()) > rules.max_words:
        problems.append(f"{len(text.split())} words, more than {rules.max_words}")
    if rules.text_format == "plain-text" and has_markdown(text):
        problems.append("markdown in plain text")
    return problems
