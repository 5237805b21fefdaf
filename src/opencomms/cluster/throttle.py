"""Request throttling per application counted across the cluster: each node keeps its own token bucket (the
single node's rule, api/throttle.py) and, every `interval` seconds, adds the requests it let through per app to a
Redis counter for the current one-second window (`throttle:<app>:<window>`, expiring by itself). An app whose
cluster-wide count in a window exceeds `throttle.rate` is answered 429 on this node for the next second. Nothing
touches Redis on the request path: the count lags by at most `interval`, and a Redis that does not answer leaves
each node's own bucket in charge.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from opencomms.api.throttle import Throttle
from opencomms.config import ThrottleConfig
from opencomms.ratelimit import retry_after
from opencomms.store.conversations_redis import FAULTS
from opencomms.tasks import honour_cancel

__all__ = ["ClusterThrottle"]

log = logging.getLogger("opencomms.cluster")


class ClusterThrottle(Throttle):
    """A node's throttle that also counts each app's requests across the cluster (see the module notes)."""

    def __init__(self, config: ThrottleConfig, redis: Any, key: Callable[..., str], *, interval: float = 0.25) -> None:
        super().__init__(config)
        self.redis = redis
        self.key = key
        self.interval = interval
        self._counts: dict[str, int] = {}
        self._blocked: dict[str, float] = {}
        """app -> time (the API's clock) until which the cluster's count refuses it."""

    def check(self, key: str, now: float) -> int | None:
        if not self.config.enabled:
            return None
        until = self._blocked.get(key)
        if until is not None:
            if now < until:
                return retry_after(until - now)
            del self._blocked[key]
        wait = super().check(key, now)
        if wait is None:
            self._counts[key] = self._counts.get(key, 0) + 1
        return wait

    async def sync(self, now: float) -> None:
        """Add this node's counts to the cluster's; block the apps over the limit for a second."""
        counts, self._counts = self._counts, {}
        if not counts:
            return
        window = str(int(now))
        pipe = self.redis.pipeline(transaction=False)
        for app in counts:
            name = self.key("throttle", app, window)
            pipe.incrby(name, counts[app])
            pipe.expire(name, 3)
        replies = await pipe.execute()
        for app, total in zip(counts, replies[::2], strict=True):
            if int(total) > self.config.rate:
                self._blocked[app] = now + 1.0

    async def run(self, clock: Callable[[], float] = time.time) -> None:
        while True:
            honour_cancel()
            await asyncio.sleep(self.interval)
            try:
                await self.sync(clock())
            except FAULTS as exc:
                log.debug("cluster throttle counts not shared: %s", exc)
