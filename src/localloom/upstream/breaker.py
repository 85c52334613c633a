"""A circuit breaker per upstream: stop sending to a server that keeps failing.

States and transitions (the only ones allowed)::

    CLOSED --(threshold failures in a row)--> OPEN
    OPEN --(cooldown passed; one trial allowed)--> HALF_OPEN
    HALF_OPEN --(trial succeeds)--> CLOSED
    HALF_OPEN --(trial fails)--> OPEN (cooldown restarts)

Health checks report like requests do, so a dead server's breaker opens without traffic
and a recovered one closes without a user's request being the trial.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable

__all__ = ["BreakerState", "CircuitBreaker"]


class BreakerState(enum.Enum):
    """Whether requests may go to the upstream."""

    CLOSED = "closed"  # healthy: requests flow
    OPEN = "open"  # failing: no requests until the cooldown passes
    HALF_OPEN = "half_open"  # one trial request is out; its outcome decides


class CircuitBreaker:
    """Thread-safe breaker with an explicit :class:`BreakerState`."""

    def __init__(self, *, threshold: int = 3, cooldown: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self.opened_total = 0  # for the metrics

    @property
    def state(self) -> BreakerState:
        """The state now (an OPEN breaker past its cooldown reads HALF_OPEN-ready as OPEN
        until a request or a health check takes the trial)."""
        return self._state

    def allow(self) -> bool:
        """May a request go now? Past the cooldown an OPEN breaker lets one trial through."""
        with self._lock:
            if self._state is BreakerState.CLOSED:
                return True
            if (self._state is BreakerState.OPEN
                    and self._clock() - self._opened_at >= self.cooldown):
                self._state = BreakerState.HALF_OPEN
                return True
            return False

    def retry_after(self) -> float:
        """Seconds until an OPEN breaker allows a trial."""
        with self._lock:
            if self._state is not BreakerState.OPEN:
                return 0.0
            return max(0.0, self.cooldown - (self._clock() - self._opened_at))

    def success(self) -> None:
        """A request or health check succeeded."""
        with self._lock:
            self._failures = 0
            self._state = BreakerState.CLOSED

    def failure(self) -> None:
        """A request or health check failed (connection, timeout, 5xx)."""
        with self._lock:
            self._failures += 1
            if self._state is BreakerState.HALF_OPEN or (
                    self._state is BreakerState.CLOSED and self._failures >= self.threshold):
                self._state = BreakerState.OPEN
                self._opened_at = self._clock()
                self.opened_total += 1
