"""The nodes of a cluster, as Redis knows them: each live node keeps `node:<id>` (its internal URL, SIP address
and start time) fresh with a TTL of three leases, so a dead node drops out by itself; the cluster secret that signs
node-to-node requests is created once (SET NX) under `cluster:secret` and read by every node.

Only nodes write here, and only their own entry: the URL a request is forwarded to always comes from Redis,
never from the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import Any

import orjson
import redis.asyncio as aioredis

from opencomms.store.conversations_redis import FAULTS
from opencomms.store.redis_common import RedisTarget
from opencomms.tasks import honour_cancel

__all__ = ["NodeRegistry"]

log = logging.getLogger("opencomms.cluster")


class NodeRegistry:
    """This node's presence in the cluster and the lookups of the others'."""

    def __init__(self, target: RedisTarget, url: str, sip: str = "") -> None:
        self.target = target
        self.node = target.node
        self.url = url
        self.sip = sip
        self._redis = aioredis.Redis.from_url(target.url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._task: asyncio.Task[None] | None = None
        self._secret: bytes = b""
        self._urls: dict[str, tuple[str, float]] = {}
        self.redis_ok = False
        """Whether the last heartbeat reached Redis (for /healthz)."""
        self.started = time.time()

    @property
    def redis(self) -> aioredis.Redis:
        """The registry's Redis client (the cluster throttle shares it)."""
        return self._redis

    @property
    def ttl_ms(self) -> int:
        return max(1000, 3 * self.target.lease_ms)

    async def start(self) -> None:
        with contextlib.suppress(*FAULTS):
            await self._beat()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="opencomms-cluster-presence")

    async def _beat(self) -> None:
        entry = orjson.dumps({"url": self.url, "sip": self.sip, "started": self.started})
        await self._redis.set(self.target.key("node", self.node), entry, px=self.ttl_ms)
        if not self._secret:
            key = self.target.key("cluster", "secret")
            await self._redis.set(key, secrets.token_hex(32), nx=True)
            got = await self._redis.get(key)
            self._secret = got if isinstance(got, bytes) else str(got).encode()
        self.redis_ok = True

    async def _loop(self) -> None:
        while True:
            honour_cancel()
            await asyncio.sleep(self.target.lease / 3)
            try:
                await self._beat()
            except FAULTS as exc:
                if self.redis_ok:
                    log.warning("cluster presence not renewed: %s", exc)
                self.redis_ok = False

    async def secret(self) -> bytes:
        """The cluster's signing secret (read from Redis once)."""
        if not self._secret:
            await self._beat()
        return self._secret

    async def url_of(self, node: str) -> str | None:
        """The internal URL of live node `node` (None: not alive, or not known). Cached for a third of a lease."""
        now = time.monotonic()
        cached = self._urls.get(node)
        if cached is not None and cached[1] > now:
            return cached[0]
        raw = await self._redis.get(self.target.key("node", node))
        if raw is None:
            self._urls.pop(node, None)
            return None
        url = str(orjson.loads(raw)["url"])
        self._urls[node] = (url, now + self.target.lease / 3)
        return url

    async def nodes(self) -> dict[str, dict[str, Any]]:
        """Every live node's entry, by node id."""
        prefix = self.target.key("node", "")
        keys = [k async for k in self._redis.scan_iter(match=prefix + "*", count=256)]
        values = await self._redis.mget(keys) if keys else []
        out: dict[str, dict[str, Any]] = {}
        for key, value in zip(keys, values, strict=True):
            if value is not None:
                name = key.decode() if isinstance(key, bytes) else str(key)
                out[name[len(prefix) :]] = orjson.loads(value)
        return out

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(*FAULTS):
            await self._redis.delete(self.target.key("node", self.node))
        await self._redis.aclose()
