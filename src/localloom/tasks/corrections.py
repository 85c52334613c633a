"""The corrections of a proofread: what changed between the original and the corrected
text, with positions in the original.

They are computed by diffing the two texts (difflib over words and the spaces between
them), never taken from the model, so they always agree with the corrected text:
applying every correction to the original gives exactly the corrected text.

Example::

    fixes = find_corrections("Teh cat sat on teh mat", "The cat sat on the mat.")
    [(c.start, c.end, c.original, c.correction) for c in fixes]
    # [(0, 3, 'Teh', 'The'), (15, 18, 'teh', 'the'), (22, 22, '', '.')]
    apply_corrections("Teh cat sat on teh mat", fixes)   # "The cat sat on the mat."
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Correction", "apply_corrections", "find_corrections"]

_TOKEN = re.compile(r"\w+|[^\w\s]|\s+")


@dataclass(frozen=True)
class Correction:
    """`original[start:end]` (this text) becomes `correction`; an insertion has
    start == end. Positions are character offsets into the original text."""

    start: int
    end: int
    original: str
    correction: str

    def as_dict(self) -> dict[str, Any]:
        """The correction as JSON (Chrome's Proofreader has startIndex/endIndex)."""
        return asdict(self)


def _tokens(text: str) -> list[str]:
    # Words, punctuation marks and runs of space, so that the pieces join back to `text`.
    return _TOKEN.findall(text)


def find_corrections(original: str, corrected: str) -> list[Correction]:
    """Each change from `original` to `corrected`, in order, without overlaps."""
    a, b = _tokens(original), _tokens(corrected)
    starts = [0]
    for token in a:
        starts.append(starts[-1] + len(token))
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    fixes: list[Correction] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        fixes.append(Correction(start=starts[i1], end=starts[i2],
                                original="".join(a[i1:i2]), correction="".join(b[j1:j2])))
    return _merge_across_spaces(fixes, original)


def _merge_across_spaces(fixes: list[Correction], original: str) -> list[Correction]:
    """Join changes separated only by spaces ("teh  dgo" -> "the dog" is one fix)."""
    merged: list[Correction] = []
    for fix in fixes:
        if merged:
            last = merged[-1]
            between = original[last.end:fix.start]
            if between.isspace() and "\n" not in between:
                merged[-1] = Correction(start=last.start, end=fix.end,
                                        original=original[last.start:fix.end],
                                        correction=last.correction + between + fix.correction)
                continue
        merged.append(fix)
    return merged


def apply_corrections(original: str, fixes: Sequence[Correction]) -> str:
    """`original` with every correction made (the proofread's corrected text)."""
    out, at = [], 0
    for fix in sorted(fixes, key=lambda f: f.start):
        out.append(original[at:fix.start])
        out.append(fix.correction)
        at = fix.end
    out.append(original[at:])
    return "".join(out)
