"""A log filter that caps repeated lines, so a peer sending junk cannot flood the log."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

# pynetdicom logs one error per unknown PDU header: 6 bytes of junk make a line.
DEFAULT_BURST = 20
DEFAULT_WINDOW_S = 10.0


class RepeatLimiter(logging.Filter):
    """Lets at most `burst` records of one logger and message template through per window.

    The first record let through after some were dropped carries `suppressed=N`, so the
    log still says how much was left out.
    """

    def __init__(
        self,
        *,
        burst: int = DEFAULT_BURST,
        window_s: float = DEFAULT_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._burst = burst
        self._window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        # (logger, template) -> [window start, records let through, records dropped]
        self._seen: dict[tuple[str, str], list[float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """Returns False for a record over its burst in the current window."""
        key = (record.name, str(record.msg))
        now = self._clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is None or now - seen[0] >= self._window_s:
                dropped = int(seen[2]) if seen is not None else 0
                self._seen[key] = [now, 1, 0]
                if len(self._seen) > 10_000:  # templates are few; a bound all the same
                    self._seen = {key: self._seen[key]}
                if dropped:
                    record.suppressed = dropped
                return True
            if seen[1] < self._burst:
                seen[1] += 1
                return True
            seen[2] += 1
            return False


def limit_repeats(logger: logging.Logger | None = None) -> None:
    """Adds a RepeatLimiter to every handler of logger (the root logger by default)."""
    for handler in (logger or logging.getLogger()).handlers:
        handler.addFilter(RepeatLimiter())
