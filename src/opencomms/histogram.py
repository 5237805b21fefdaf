"""A fixed-bucket histogram of plain ints, cheap enough to feed from the media engine's tick loop.

Owns bucket bounds, per-bucket counts and the running sum. Must not import a metrics library or take locks: one
thread observes, any thread may read a snapshot (figures may be one observation apart). The metrics collector
(opencomms.metrics) turns a snapshot into a Prometheus histogram at scrape time, so the observing thread never
calls into prometheus-client.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

__all__ = ["TICK_BOUNDS", "FixedHistogram"]

TICK_BOUNDS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1)
"""Seconds: media engine tick durations (commands + tick); the budget of a tick is 0.020."""


class FixedHistogram:
    """Counts of observations per bucket (`value <= bound`, Prometheus' `le`), the last bucket being +Inf."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        if not bounds or list(bounds) != sorted(set(bounds)):
            raise ValueError("histogram bounds must be distinct and ascending")
        self.bounds = tuple(float(b) for b in bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> tuple[list[tuple[str, int]], float]:
        """([(le, cumulative count)...] ending with ("+Inf", total), sum), for a Prometheus histogram family."""
        counts, total = list(self.counts), self.sum  # copy first: the observing thread may move on meanwhile
        out: list[tuple[str, int]] = []
        running = 0
        for bound, n in zip((*(repr(b) for b in self.bounds), "+Inf"), counts, strict=True):
            running += n
            out.append((bound, running))
        return out, total
