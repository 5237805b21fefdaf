"""FaultLog: failures on the media thread counted by kind and logged at a bounded rate.

Owns the per-kind counters and the rule that one kind is logged at most once per interval (the first time with
its traceback, then a line with the count so far): a hostile peer that makes one command or one stream fail
every tick must not flood the log or spend the tick formatting tracebacks. Must not decide what a failure means.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["FaultLog"]

_OTHER = "other"


class FaultLog:
    """Counts of failures by kind (`counts`, `total`); `record(kind, exc)` logs a kind's first failure with its
    traceback and later ones at most once per `interval` seconds with the count. At most `max_kinds` kinds are
    told apart (the rest count as "other"), so the table stays bounded whatever the input."""

    def __init__(
        self,
        logger: logging.Logger,
        message: str,
        *,
        interval: float = 60.0,
        max_kinds: int = 64,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.message = message
        self.interval = interval
        self.max_kinds = max_kinds
        self.clock = clock
        self.counts: dict[str, int] = {}
        self.total = 0
        self.logged = 0
        """Log lines written (the rest were only counted)."""
        self._last: dict[str, float] = {}

    def record(self, kind: str, exc: BaseException | None = None, **extra: object) -> None:
        if kind not in self.counts and len(self.counts) >= self.max_kinds:
            kind = _OTHER
        n = self.counts[kind] = self.counts.get(kind, 0) + 1
        self.total += 1
        now = self.clock()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            return
        self._last[kind] = now
        self.logged += 1
        self.logger.error(
            "%s (%s, %d so far)",
            self.message,
            kind,
            n,
            exc_info=exc if n == 1 and exc is not None else None,
            extra=extra or None,
        )
