"""One pipeline at a time to Redis: the commands the loop submits while the previous pipeline is in flight go
together in the next one.

The conversation store sends its commits, loads and outbox bookkeeping through a `Pipeliner`: `submit` queues a raw
command and returns a future; one task sends everything queued as one pipeline (no MULTI: each command is atomic on
its own, the scripts included), hands each future its reply, and starts over with what queued meanwhile. Under load
the batches grow by themselves (like the SQLite writer's), so the node pays one round trip and one connection for
many units, not one task, one connection and one round trip per command (redis-py's asyncio client costs ~60 us of
CPU per command and caps its connection pool). The pipelines go over one connection of the pipeliner's own (made by
the client's pool, so with its address, credentials, database, TLS and timeouts), written and read directly: ~25 us
of CPU per round trip instead of ~80 us through redis-py's Pipeline (pool checkout, retry and event machinery each
time); commands are packed, and replies parsed, by hiredis (Redis's C library). Scripts go by SHA: loaded once,
loaded again after NOSCRIPT (a restarted Redis), and the refused commands resent. Before a batch goes out on a
connection already open, the connection is checked as redis-py's pool checks one it hands out (closed by Redis
meanwhile, e.g. a restart, or holding unread data: opened again, nothing sent yet). A connection fault fails the
batch's futures with StoreUnavailable; the commands may or may not have run (as with any lost reply): callers that
must know reload.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis import exceptions as rx

from opencomms.store.base import StoreUnavailable

log = logging.getLogger("opencomms.store")

MAX_BATCH = 512
"""Commands per pipeline at most."""


def sha1(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()


class Pipeliner:
    """Queues raw commands for `client` and sends them in pipelines, one at a time (see the module notes)."""

    def __init__(
        self,
        client: aioredis.Redis,
        scripts: list[str],
        fault: Callable[[BaseException], StoreUnavailable],
        faults: tuple[type[BaseException], ...],
    ) -> None:
        self._redis = client
        self._scripts = {sha1(s): s for s in scripts}
        self._fault = fault
        self._faults = faults
        self._queue: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._conn: Any = None
        """The pipeliner's own connection (opened at the first batch, again after a fault)."""
        self._closed = False
        self.batches = 0
        """Pipelines sent."""
        self.commands = 0
        """Commands sent (commands / batches: the batching achieved)."""

    def submit(self, *command: Any) -> asyncio.Future[Any]:
        """Queue `command` (e.g. "EVALSHA", sha, 2, key1, key2, arg…); its future gets the raw reply or an error."""
        if self._closed:
            raise StoreUnavailable("the conversation store is closed", reason="unavailable")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((command, fut))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="opencomms-redis-pipeline")
        self._wake.set()
        return fut

    async def load_scripts(self) -> None:
        for script in self._scripts.values():
            await self._redis.script_load(script)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                try:
                    await self._send(batch, retry=True)
                except Exception as exc:  # a bug here must not leave waiters hanging forever
                    log.exception("a Redis pipeline failed")
                    _fail(batch, exc)

    async def _exchange(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Write `commands` in one piece on the pipeliner's connection and read their replies (a command refused
        by Redis gives its error as its reply)."""
        if self._conn is None:
            self._conn = self._redis.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        conn = self._conn
        if conn.is_connected:
            try:
                dirty = await conn.can_read()  # no I/O: EOF, a reset or stray bytes seen by the stream already
            except (rx.ConnectionError, rx.TimeoutError, OSError):
                dirty = True
            if dirty:  # closed under us while idle (Redis restarted): a fresh connection, nothing sent yet
                await conn.disconnect(nowait=True)
        await conn.send_packed_command(pack(commands), check_health=False)
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(await conn.read_response())
            except rx.ResponseError as refused:
                replies.append(refused)
        return replies

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]], *, retry: bool) -> None:
        commands = [command for command, _ in batch]
        try:
            replies = await self._exchange(commands)
        except self._faults as exc:
            await self._drop()
            error = self._fault(exc)
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(StoreUnavailable(error.message, reason=error.reason))
            return
        except BaseException:  # cancelled mid-exchange: the connection's state is unknown
            await self._drop()
            raise
        self.batches += 1
        self.commands += len(batch)
        again: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        for (command, fut), reply in zip(batch, replies, strict=True):
            if retry and isinstance(reply, rx.NoScriptError):
                again.append((command, fut))
            elif fut.done():
                continue
            elif isinstance(reply, Exception):
                fut.set_exception(self._fault(reply) if isinstance(reply, self._faults) else reply)
            else:
                fut.set_result(reply)
        if again:  # Redis lost its scripts (restarted): load them and resend those commands once
            try:
                await self.load_scripts()
            except self._faults as exc:
                _fail(again, self._fault(exc))
                return
            await self._send(again, retry=False)

    async def aclose(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._drop()
        _fail(self._queue, StoreUnavailable("the conversation store is closed", reason="unavailable"))
        self._queue = []


def pack(commands: list[tuple[Any, ...]]) -> bytes:
    """The commands in Redis's protocol (RESP arrays of bulk strings), packed by hiredis (Redis's own C library) as
    redis-py packs them (bytes, str as UTF-8, int, float); TypeError for any other argument (None, bool)."""
    return b"".join([hiredis.pack_command(command) for command in commands])


def _fail(batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]], exc: BaseException) -> None:
    for _, fut in batch:
        if not fut.done():
            fut.set_exception(exc)
