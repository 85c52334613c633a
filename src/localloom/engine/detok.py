"""Per-sequence text: detokenize, cut at stop strings, emit deltas (with logprob texts).

A :class:`SeqText` turns one choice's sampled tokens into :class:`Delta` events. It holds
back what could still change: the bytes of a character split across tokens, and a tail
that could be the start of a stop string (:func:`hold_back`, the one such helper of the
project; the task runner's answer text uses it too). With logprobs, each delta carries the
tokens whose text it completes, so a choice's token texts join to exactly its content.

Example::

    texts = TokenTexts(model)
    out = SeqText(texts, route, outbox.post, index=0, stops=("\\n\\n",))
    stopped = out.feed(token)   # posts a Delta when text is safe to show
    out.close()                 # the held-back rest
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Sequence

from localloom.engine.events import Delta, Event, TokenLogprobData
from localloom.engine.outbox import Route
from localloom.engine.runtime import LlamaModel

__all__ = ["SeqText", "TokenTexts", "hold_back"]


def hold_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest tail of ``text`` that could start a stop string.

    Example::

        hold_back("the end<", ["<|end|>"])  # 1: "<" may begin the stop string
    """
    hold = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), hold, -1):
            if text.endswith(stop[:k]):
                hold = k
                break
    return hold


class TokenTexts:
    """The text of each token whose bytes are whole UTF-8, learned once per model."""

    def __init__(self, model: LlamaModel) -> None:
        self.piece = model.piece
        # None: the token's bytes are not whole UTF-8 and need a sequence's decoder.
        self.cache: dict[int, str | None] = {}

    def learn(self, token: int) -> str | None:
        """Look ``token`` up once and remember its text (None: not whole UTF-8)."""
        try:
            text: str | None = self.piece(token).decode("utf-8")
        except UnicodeDecodeError:
            text = None
        self.cache[token] = text
        return text


class SeqText:
    """The text of one choice: what it holds, what it has sent, its pending logprobs."""

    __slots__ = ("_cache", "_piece", "_post", "_route", "_texts", "decoder", "index",
                 "lp_ends", "lps", "lstrip", "sent", "stops", "text")

    def __init__(self, texts: TokenTexts, route: Route,
                 post: Callable[[tuple[Route, Event]], None], *, index: int,
                 stops: tuple[str, ...] = (), lstrip: bool = False,
                 logprobs: bool = False) -> None:
        self._texts = texts
        self._cache = texts.cache
        self._piece = texts.piece
        self._route = route
        self._post = post
        self.index = index
        self.stops = stops
        self.lstrip = lstrip
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text = ""
        self.sent = 0
        self.lps: list[TokenLogprobData] | None = [] if logprobs else None
        # Where each pending token's text ends in ``text``; -1: the newest, still growing.
        self.lp_ends: list[int] = []

    @property
    def pending_bytes(self) -> bytes:
        """Bytes of a character begun but not finished (a grammar must complete it)."""
        pending: bytes = self.decoder.getstate()[0]
        return pending

    def add_logprob(self, data: TokenLogprobData) -> None:
        """Record the newest token's logprob; its text is known once the next one comes."""
        assert self.lps is not None
        if self.lp_ends and self.lp_ends[-1] < 0:
            self.lp_ends[-1] = len(self.text)
        self.lps.append(data)
        self.lp_ends.append(-1)

    def feed(self, token: int) -> bool:
        """Add a sampled token's text and send what is safe; True when a stop string
        ended the text (the stop string and all after it are dropped)."""
        text = self._cache.get(token, "")
        if text == "" and token not in self._cache:
            text = self._texts.learn(token)
        if text is None or self.decoder.buffer:
            text = self.decoder.decode(self._piece(token))
        if not text:
            return False
        if self.lstrip and not self.text:
            text = text.lstrip()
            if not text:
                return False
        self.text += text
        stops = self.stops
        if not stops:
            self._emit(len(self.text))
            return False
        cut = -1
        for stop in stops:
            p = self.text.find(stop, self.sent)
            if p != -1 and (cut == -1 or p < cut):
                cut = p
        if cut != -1:
            self.text = self.text[:cut]
            self.decoder.reset()  # bytes after the stop string are not output
            return True
        self._emit(len(self.text) - hold_back(self.text, stops))
        return False

    def close(self) -> None:
        """The choice ended: send everything held back (a split character as U+FFFD)."""
        self.text += self.decoder.decode(b"", final=True)
        self._emit(len(self.text), force=True)

    def _emit(self, upto: int, force: bool = False) -> None:
        lps = None
        if self.lps is not None:
            upto, lps = self._token_texts(len(self.text) if force else upto)
            if upto <= self.sent and not lps:
                return
        elif upto <= self.sent:
            return
        piece = self.text[self.sent:upto]
        self.sent = max(self.sent, upto)
        self._post((self._route, Delta(self.index, piece, lps)))

    def _token_texts(self, upto: int) -> tuple[int, tuple[TokenLogprobData, ...]]:
        """The pending tokens whose text ends by ``upto``, each with its text; the text is
        sent up to the last of them, so a delta's tokens join to exactly its text."""
        assert self.lps is not None
        size = len(self.text)  # a stop string may have cut the text short of recorded ends
        # The newest token waits while the decoder holds its trailing bytes: at the end they
        # become its text ("\ufffd").
        newest = size + 1 if self.decoder.buffer else size
        ends = [newest if end < 0 else min(end, size) for end in self.lp_ends]
        count = 0
        while count < len(ends) and ends[count] <= upto:
            count += 1
        if count < len(ends):
            upto = ends[count - 1] if count else self.sent
        start, out = self.sent, []
        for data, end in zip(self.lps[:count], ends[:count], strict=True):
            out.append(data._replace(text=self.text[start:end]))
            start = end
        del self.lps[:count], self.lp_ends[:count]
        return upto, tuple(out)
