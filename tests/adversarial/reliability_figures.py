"""Write the figures of the last adversarial run into docs/RELIABILITY.md.

Each section of the document lives between ``<!-- key:start -->`` and ``<!-- key:end -->``
markers and holds one table: threat | defence | test | figures of the last run. A test
passes the figures of its own rows; the other rows keep what the document already says, so
the table always shows the last run of every test. Only the text between the markers of
``key`` is rewritten (other helpers own the rest of the document), and nothing is written
when the figures did not change.

Example::

    SECTION = Section("downloads", "## Broken downloads", "Intro...", (Row("Dropped", ...),))
    SECTION.record({"Dropped": "20 runs, 0 corrupt"})
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

__all__ = ["DOC", "Row", "Section"]

DOC = Path(__file__).resolve().parents[2] / "docs" / "RELIABILITY.md"
_NOT_RUN = "not run yet"
_HEADER = ("| Threat | Defence | Test | Figures of the last run |\n"
           "|---|---|---|---|\n")


@dataclass(frozen=True)
class Row:
    """One threat: what defends against it and which test proves it."""

    threat: str
    defence: str
    test: str


@dataclass(frozen=True)
class Section:
    """A marked section of the document: a heading, a paragraph and the table."""

    key: str
    heading: str
    intro: str
    rows: tuple[Row, ...]
    doc: Path = DOC

    @property
    def _start(self) -> str:
        return f"<!-- {self.key}:start -->"

    @property
    def _end(self) -> str:
        return f"<!-- {self.key}:end -->"

    def record(self, figures: Mapping[str, str]) -> None:
        """Put ``figures`` (threat -> text) into the table and rewrite the section."""
        unknown = set(figures) - {row.threat for row in self.rows}
        assert not unknown, f"no such rows in {self.key}: {sorted(unknown)}"
        lock = Path(tempfile.gettempdir()) / "localloom-reliability-doc.lock"
        with FileLock(str(lock), timeout=60):
            text = self.doc.read_text(encoding="utf-8") if self.doc.exists() else ""
            old = self._current(text)
            merged = {row.threat: figures.get(row.threat, old.get(row.threat, _NOT_RUN))
                      for row in self.rows}
            new_text = self._splice(text, self._render(merged))
            if new_text != text:
                self.doc.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.doc.with_name(f".{self.doc.name}.{os.getpid()}.tmp")
                tmp.write_text(new_text, encoding="utf-8")
                os.replace(tmp, self.doc)

    def _current(self, text: str) -> dict[str, str]:
        """Figures already in the document, by threat."""
        start, end = text.find(self._start), text.find(self._end)
        if start < 0 or end < start:
            return {}
        found = {}
        for line in text[start:end].splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            if len(cells) == 4:
                found[_unescape(cells[0])] = _unescape(cells[3])
        return found

    def _render(self, figures: Mapping[str, str]) -> str:
        lines = [self._start, self.heading, "", self.intro.strip(), "", _HEADER.rstrip("\n")]
        for row in self.rows:
            cells = (row.threat, row.defence, row.test, figures[row.threat])
            lines.append("| " + " | ".join(_escape(c) for c in cells) + " |")
        lines.append(self._end)
        return "\n".join(lines)

    def _splice(self, text: str, section: str) -> str:
        start, end = text.find(self._start), text.find(self._end)
        if start >= 0 and end > start:
            return text[:start] + section + text[end + len(self._end):]
        if not text.strip():
            return "# Reliability\n\n" + section + "\n"
        return text.rstrip("\n") + "\n\n" + section + "\n"


def _escape(cell: str) -> str:
    return " ".join(cell.split()).replace("|", "\\|")


def _unescape(cell: str) -> str:
    return cell.replace("\\|", "|")
