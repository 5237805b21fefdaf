"""The one lean keep-alive HTTP/1.1 client: a per-origin pool of httptools-parsed connections, one request at a time.

Shared by the notification dispatcher's POSTs (`notify.http1.Http1Poster`, bot-to-bot hot path) and node-to-node
forwarding (`cluster.http1.ForwardClient`). A request is written in one piece and its response parsed with
httptools (the parser uvicorn uses): several times cheaper for the event loop than aiohttp. Only http:// origins.
Errors surface as OSError (ConnectionError) or TimeoutError; with an egress policy a refused host raises
`EgressRefused`.

What differs between users is a `Connection` subclass: which response headers it keeps and whether it keeps the
body (it defines `on_header` / `on_body`, `_clear` and `_result`), and the `Pool` arguments (idle seconds, pool
size, egress policy). httptools calls only the callbacks a connection defines, so a subclass without `on_body`
drains the body at no cost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Generic, TypeVar, cast

import httptools
from yarl import URL

from opencomms.net.egress import EgressPolicy

__all__ = ["IDLE_SECONDS", "Connection", "Pool"]

IDLE_SECONDS = 2.0
"""An idle connection older than this is closed rather than reused: servers close idle connections after a few
seconds (uvicorn after 5), and a request racing that close would fail for nothing."""

R = TypeVar("R")


def plain_http(url: str) -> tuple[str, int, str, str]:
    """(host, port, authority, path with query) of a plain http:// URL (no credentials, a port known); host without
    IPv6 brackets; ValueError for anything else."""
    parsed = URL(url)
    host, port = parsed.raw_host, parsed.port
    if not host or port is None or parsed.scheme != "http" or parsed.user is not None:
        raise ValueError("not a plain http URL")
    return host.strip("[]"), port, parsed.raw_authority, parsed.raw_path_qs or "/"


class Connection(asyncio.Protocol, Generic[R]):
    """One keep-alive connection; one request at a time. Subclasses read the response (`on_header`, `on_body`),
    forget it (`_clear`) and give it (`_result`)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.keep_alive = False
        self._waiter: asyncio.Future[R] | None = None
        self._status = 0
        self._headers_done = False
        self._parser = httptools.HttpResponseParser(self)

    # -- what a subclass reads ----------------------------------------------------------------------------
    def _clear(self) -> None:
        """Forget what was read of a response (before a request and after an interim 1xx)."""

    def _result(self) -> R:
        raise NotImplementedError

    # -- asyncio.Protocol ---------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"malformed HTTP response: {exc}"))
            self.close()

    def eof_received(self) -> bool:
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._headers_done and self._status >= 200:  # a body delimited by the end of the connection
            self._complete(keep_alive=False)
        else:
            self._fail(ConnectionError("connection closed before a response"))

    # -- httptools callbacks ------------------------------------------------------------------------------
    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        self._headers_done = True

    def on_message_complete(self) -> None:
        if self._status < 200:  # an interim response (1xx): the final one follows on the same connection
            self._status, self._headers_done = 0, False
            self._clear()
            return
        self._complete(keep_alive=self._parser.should_keep_alive())

    # -- use ----------------------------------------------------------------------------------------------
    async def request(self, data: bytes) -> R:
        if self.transport is None or self.closed:
            raise ConnectionError("connection closed")
        self._waiter = asyncio.get_running_loop().create_future()
        self._status, self._headers_done = 0, False
        self._clear()
        self.transport.write(data)
        return await self._waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _complete(self, *, keep_alive: bool) -> None:
        waiter, self._waiter = self._waiter, None
        self.keep_alive = keep_alive
        if waiter is not None and not waiter.done():
            waiter.set_result(self._result())

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


class Pool(Generic[R]):
    """Pooled keep-alive connections per (host, port) made by `factory`; each exchange bounded by `timeout` s."""

    def __init__(
        self,
        factory: Callable[[], Connection[R]],
        *,
        timeout: float,
        max_idle_per_origin: int,
        idle_seconds: float = IDLE_SECONDS,
        egress: EgressPolicy | None = None,
    ) -> None:
        self._factory = factory
        self._timeout = timeout
        self._max_idle = max_idle_per_origin
        """Idle connections kept per origin; one released beyond that is closed."""
        self._idle_seconds = idle_seconds
        """An idle connection older than this is closed rather than reused."""
        self._egress = egress
        self._idle: dict[tuple[str, int], list[Connection[R]]] = {}
        self._closed = False

    async def exchange(self, host: str, port: int, data: bytes) -> R:
        """Write `data` (a whole request) on a pooled or new connection to host:port; the parsed response."""
        async with asyncio.timeout(self._timeout):
            conn = await self._connection(host, port)
            try:
                result = await conn.request(data)
            except BaseException:
                conn.close()
                raise
        if conn.keep_alive and not conn.closed and not self._closed:
            self._release((host, port), conn)
        else:
            conn.close()
        return result

    async def _connection(self, host: str, port: int) -> Connection[R]:
        idle = self._idle.get((host, port))
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < self._idle_seconds:
                return conn
            conn.close()
        loop = asyncio.get_running_loop()
        if self._egress is None:
            _, protocol = await loop.create_connection(self._factory, host, port)
            return protocol
        addresses = await self._egress.resolve(host, port)  # checked: connect to these, never to the name
        error: OSError | None = None
        for resolved in addresses:
            try:
                _, protocol = await loop.create_connection(
                    self._factory, resolved.address, resolved.port, family=resolved.family
                )
            except OSError as exc:
                error = exc
                continue
            return protocol
        raise error if error is not None else ConnectionError(f"cannot connect to {host}:{port}")

    def _release(self, origin: tuple[str, int], conn: Connection[R]) -> None:
        idle = self._idle.setdefault(origin, [])
        if len(idle) >= self._max_idle:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    def close(self) -> None:
        """Close every idle connection; later requests fail. Idempotent."""
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
