"""The HTTP/1.1 client of node-to-node forwarding: one request to another node's internal http:// URL, its status,
the few headers a forwarded answer keeps and its body.

Keep-alive connections per origin, each request written in one piece, responses parsed with httptools (as
notify/http1.py does for the dispatcher's POSTs): a forwarded request costs the event loop several times less than
through aiohttp. Only for the cluster's internal URLs, which come from Redis, never from a request. Errors surface
as OSError (ConnectionError) or TimeoutError.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import cast

import httptools
from yarl import URL

__all__ = ["ForwardClient", "Reply"]

IDLE_SECONDS = 2.0
"""An idle connection older than this is closed rather than reused (uvicorn closes idle ones after 5 s)."""
MAX_BODY = 64 << 20
"""Largest answer accepted from another node (a recording download is the largest)."""

Reply = tuple[int, list[tuple[bytes, bytes]], bytes]
"""(status, kept headers (lower-case names), body) of a final response."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self, keep: frozenset[bytes]) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.keep_alive = False
        self._keep = keep
        self._waiter: asyncio.Future[Reply] | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._reset()

    def _reset(self) -> None:
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._size = 0
        self._header_name = b""
        self._headers_done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"malformed HTTP response: {exc}"))
            self.close()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._headers_done and self._status >= 200:
            self._complete(keep_alive=False)
        else:
            self._fail(ConnectionError("connection closed before a response"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered in self._keep:
            self._headers.append((lowered, value))

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_BODY:
            self._fail(ConnectionError("answer too large"))
            self.close()
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._status < 200:  # an interim response: the final one follows
            self._reset()
            return
        self._complete(keep_alive=self._parser.should_keep_alive())

    async def request(self, data: bytes) -> Reply:
        if self.transport is None or self.closed:
            raise ConnectionError("connection closed")
        self._waiter = asyncio.get_running_loop().create_future()
        self._reset()
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
            waiter.set_result((self._status, self._headers, b"".join(self._body)))

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


class ForwardClient:
    """Requests to http:// URLs over pooled keep-alive connections, each bounded by `timeout` seconds."""

    def __init__(self, *, timeout: float, keep: frozenset[bytes], max_idle_per_origin: int = 64) -> None:
        self._timeout = timeout
        self._keep = keep
        self._max_idle = max_idle_per_origin
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._origins: dict[str, tuple[str, int, str]] = {}
        self._closed = False

    def _origin(self, base: str) -> tuple[str, int, str]:
        cached = self._origins.get(base)
        if cached is not None:
            return cached
        parsed = URL(base)
        host, port = parsed.raw_host, parsed.port
        if not host or port is None or parsed.scheme != "http" or parsed.user is not None:
            raise ValueError("not a plain http URL")
        if len(self._origins) > 256:
            self._origins.clear()
        result = self._origins[base] = (host.strip("[]"), port, parsed.raw_authority)
        return result

    async def request(self, method: str, base: str, target: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """`method` `target` (path and query) at the node whose URL is `base`; ValueError for an unusable URL."""
        if self._closed:
            raise ConnectionError("client closed")
        host, port, authority = self._origin(base)
        if any(c in target for c in "\r\n \t"):
            raise ValueError("invalid characters in the request target")
        lines = [f"{method} {target} HTTP/1.1\r\nHost: {authority}\r\n".encode("latin-1")]
        for name, value in headers.items():
            if "\r" in value or "\n" in value:
                raise ValueError(f"invalid characters in header {name}")
            lines.append(f"{name}: {value}\r\n".encode())
        lines.append(b"Content-Length: %d\r\n\r\n" % len(body))
        lines.append(body)
        async with asyncio.timeout(self._timeout):
            conn = await self._connection(host, port)
            try:
                reply = await conn.request(b"".join(lines))
            except BaseException:
                conn.close()
                raise
        if conn.keep_alive and not conn.closed and not self._closed:
            self._release((host, port), conn)
        else:
            conn.close()
        return reply

    async def _connection(self, host: str, port: int) -> _Connection:
        idle = self._idle.get((host, port))
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < IDLE_SECONDS:
                return conn
            conn.close()
        keep = self._keep
        _, protocol = await asyncio.get_running_loop().create_connection(lambda: _Connection(keep), host, port)
        return protocol

    def _release(self, origin: tuple[str, int], conn: _Connection) -> None:
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
