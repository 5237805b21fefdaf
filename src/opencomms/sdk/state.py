"""RedisCallState: call state shared by the workers of a stateless bot (redis.asyncio).

Several worker processes stand behind one callback URL; any of them may receive any notification. They keep
each call's state in Redis as JSON, change it atomically (`update`: optimistic WATCH/MULTI/EXEC), serialise
the handling of one call's notifications (`lock`), and drop a delivery another worker already took (`seen`).
Every key expires `ttl` seconds after its last write, so ended calls clean themselves up.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import LockError, WatchError

JsonObj = dict[str, Any]
Updater = Callable[[JsonObj | None], "JsonObj | Awaitable[JsonObj | None] | None"]


class CallStateError(Exception):
    """An update kept conflicting with other workers, or a lock could not be taken in time."""


class RedisCallState:
    """Per-call JSON documents, per-call locks and delivery dedupe in one Redis (or a compatible server)."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "opencomms",
        ttl: int = 3600,
        client: aioredis.Redis | None = None,
        max_update_attempts: int = 50,
    ) -> None:
        self.prefix = prefix
        self.ttl = ttl
        self.max_update_attempts = max_update_attempts
        self._redis = client if client is not None else aioredis.Redis.from_url(url)
        self._own = client is None

    def _key(self, kind: str, ident: str) -> str:
        return f"{self.prefix}:{kind}:{ident}"

    async def close(self) -> None:
        if self._own:
            await self._redis.aclose()

    async def __aenter__(self) -> RedisCallState:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    # -- documents ---------------------------------------------------------------------------------------
    async def get(self, call_id: str) -> JsonObj | None:
        raw = await self._redis.get(self._key("call", call_id))
        return None if raw is None else _load(raw)

    async def set(self, call_id: str, state: JsonObj) -> None:
        await self._redis.set(self._key("call", call_id), json.dumps(state), ex=self.ttl)

    async def delete(self, call_id: str) -> None:
        await self._redis.delete(self._key("call", call_id))

    async def update(self, call_id: str, fn: Updater) -> JsonObj | None:
        """Apply `fn(old) -> new` atomically (retried if another worker wrote in between); None deletes.

        `fn` may be a coroutine function; it may run more than once, so it must not have side effects.
        """
        key = self._key("call", call_id)
        for _ in range(self.max_update_attempts):
            async with self._redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    result = fn(None if raw is None else _load(raw))
                    new = await result if inspect.isawaitable(result) else result
                    pipe.multi()  # type: ignore[no-untyped-call]
                    if new is None:
                        pipe.delete(key)
                    else:
                        pipe.set(key, json.dumps(new), ex=self.ttl)
                    await pipe.execute()
                    return new
                except WatchError:
                    continue
        raise CallStateError(f"state of call {call_id} kept changing; gave up after {self.max_update_attempts} tries")

    # -- coordination ------------------------------------------------------------------------------------
    @asynccontextmanager
    async def lock(self, call_id: str, *, timeout: float = 30.0, wait: float = 10.0) -> AsyncIterator[None]:
        """Hold the call's lock (across workers). `timeout` bounds how long a crashed holder keeps it."""
        lock = self._redis.lock(self._key("lock", call_id), timeout=timeout, blocking_timeout=wait)
        if not await lock.acquire():
            raise CallStateError(f"could not lock call {call_id} within {wait} s")
        try:
            yield
        finally:
            try:
                await lock.release()
            except LockError:
                pass  # expired meanwhile (the holder took longer than `timeout`)

    async def seen(self, delivery_id: str) -> bool:
        """True if some worker already claimed this delivery id; otherwise claims it (as done) and returns False."""
        if not delivery_id:
            return False
        claimed = await self._redis.set(self._key("delivery", delivery_id), b"1", nx=True, ex=self.ttl)
        return not claimed

    async def claim(self, delivery_id: str, *, hold: float = 10.0) -> str:
        """Claim a delivery for handling: "new" (ours now, for `hold` seconds), "pending" (another worker is
        handling it, or died doing so: ask the sender to retry later) or "done" (already handled: a duplicate).

        Call `done` after handling it, `forget` if handling failed.
        """
        key = self._key("delivery", delivery_id)
        hold_ms = max(1, int(hold * 1000))
        for _ in range(2):
            if await self._redis.set(key, b"pending", nx=True, px=hold_ms):
                return "new"
            value = await self._redis.get(key)
            if value is not None:
                return "done" if value == b"done" else "pending"
        return "pending"

    async def done(self, delivery_id: str) -> None:
        """Mark a claimed delivery handled (remembered for `ttl`)."""
        await self._redis.set(self._key("delivery", delivery_id), b"done", ex=self.ttl)

    async def forget(self, delivery_id: str) -> None:
        """Release a claimed delivery id (its handling failed; the node will deliver it again)."""
        await self._redis.delete(self._key("delivery", delivery_id))


def _load(raw: bytes | str) -> JsonObj | None:
    value = json.loads(raw)
    return value if isinstance(value, dict) else None
