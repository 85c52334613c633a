"""Progress reporting in WebLLM's ``initProgressCallback`` shape, throttled."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["ProgressCallback", "Reporter"]


ProgressCallback = Callable[[float, int, int, str], None]
"""``(fraction, bytes_done, bytes_total, text)``; fraction is in [0, 1].

Example::

    def show(fraction: float, done: int, total: int, text: str) -> None:
        print(f"{fraction:5.1%} {text}")

    store.pull(entry, progress=show)
"""


class Reporter:
    """Forwards reports to a callback at most every ``interval`` seconds.

    Phase changes (a new ``text``) and the final report always go through, so a caller sees
    "Downloading", "Verifying" and the 100% report even when they come in quick succession.
    """

    def __init__(self, callback: ProgressCallback | None, interval: float = 0.1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._callback = callback
        self._interval = interval
        self._clock = clock
        self._last_time = float("-inf")
        self._last_text = ""

    def __call__(self, bytes_done: int, bytes_total: int, text: str, *,
                 force: bool = False) -> None:
        """Report ``bytes_done`` of ``bytes_total`` unless the last report was too recent."""
        if self._callback is None:
            return
        now = self._clock()
        finished = bytes_total > 0 and bytes_done >= bytes_total
        if (not force and not finished and text == self._last_text
                and now - self._last_time < self._interval):
            return
        self._last_time = now
        self._last_text = text
        fraction = min(1.0, bytes_done / bytes_total) if bytes_total > 0 else 0.0
        self._callback(fraction, bytes_done, bytes_total, text)
