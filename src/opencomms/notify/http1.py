"""A minimal HTTP/1.1 client for the dispatcher's hot path: one POST per notification to an http:// callback URL.

Keep-alive connections per origin (host, port), requests written in one piece, responses parsed with httptools
(the parser uvicorn uses); only the status, Location and Retry-After are read and the body is drained. A POST
through it costs the event loop several times less than through aiohttp, which the dispatcher keeps for https
and anything unusual. Errors surface as OSError (ConnectionError) or TimeoutError, as the dispatcher expects.
With an egress policy, a new connection goes only to an address the policy's resolver returned (resolved off the
loop within its time limit and checked); a refused host raises `EgressRefused`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import cast

import httptools
from yarl import URL

from opencomms.net.egress import EgressPolicy

__all__ = ["Http1Poster", "PostResult"]

PostResult = tuple[int, str | None, str | None]
"""(status, Location, Retry-After) of a final response."""

IDLE_SECONDS = 2.0
"""An idle connection older than this is closed rather than reused: servers close idle connections after a few
seconds (uvicorn after 5), and a request racing that close would fail for nothing."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[PostResult] | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._header_name = b""
        self._location: str | None = None
        self._retry_after: str | None = None
        self._status = 0
        self._headers_done = False
        self.keep_alive = False

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
    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered == b"location":
            self._location = value.decode("latin-1")
        elif lowered == b"retry-after":
            self._retry_after = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        self._headers_done = True

    def on_message_complete(self) -> None:
        if self._status < 200:  # an interim response (1xx): the final one follows on the same connection
            self._headers_done = False
            self._location = self._retry_after = None
            return
        self._complete(keep_alive=self._parser.should_keep_alive())

    # -- use ----------------------------------------------------------------------------------------------
    async def request(self, data: bytes) -> PostResult:
        if self.transport is None or self.closed:
            raise ConnectionError("connection closed")
        self._waiter = asyncio.get_running_loop().create_future()
        self._status, self._headers_done = 0, False
        self._location = self._retry_after = None
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
            waiter.set_result((self._status, self._location, self._retry_after))

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


class Http1Poster:
    """POSTs to http:// URLs over pooled keep-alive connections, each attempt bounded by `timeout` seconds."""

    def __init__(self, *, timeout: float, max_idle_per_origin: int = 256, egress: EgressPolicy | None = None) -> None:
        self._timeout = timeout
        self._egress = egress
        self._max_idle = max_idle_per_origin
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._targets: dict[str, tuple[str, int, bytes]] = {}
        self._closed = False

    @staticmethod
    def handles(url: str) -> bool:
        return url.startswith("http://")

    def _target(self, url: str) -> tuple[str, int, bytes]:
        """(host, port, the request line and Host header) of an http:// URL; ValueError if unusable."""
        cached = self._targets.get(url)
        if cached is not None:
            return cached
        parsed = URL(url)
        host, port = parsed.raw_host, parsed.port
        if not host or port is None or parsed.scheme != "http" or parsed.user is not None:
            raise ValueError("not a plain http URL")
        target = parsed.raw_path_qs or "/"
        authority = parsed.raw_authority
        if any(c in target + authority for c in "\r\n \t"):
            raise ValueError("invalid characters in the URL")
        head = f"POST {target} HTTP/1.1\r\nHost: {authority}\r\n".encode("latin-1")
        if len(self._targets) > 1024:
            self._targets.clear()
        result = self._targets[url] = (host.strip("[]"), port, head)
        return result

    async def post(self, url: str, headers: Mapping[str, str], body: bytes) -> PostResult:
        """One POST; raises ValueError (unusable URL), OSError/ConnectionError or TimeoutError."""
        if self._closed:
            raise ConnectionError("poster closed")
        host, port, head = self._target(url)
        lines = [head]
        for name, value in headers.items():
            lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        lines.append(b"Content-Length: %d\r\n\r\n" % len(body))
        lines.append(body)
        data = b"".join(lines)
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

    async def _connection(self, host: str, port: int) -> _Connection:
        idle = self._idle.get((host, port))
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < IDLE_SECONDS:
                return conn
            conn.close()
        loop = asyncio.get_running_loop()
        if self._egress is None:
            _, protocol = await loop.create_connection(_Connection, host, port)
            return protocol
        addresses = await self._egress.resolve(host, port)  # checked: connect to these, never to the name
        error: OSError | None = None
        for resolved in addresses:
            try:
                _, protocol = await loop.create_connection(
                    _Connection, resolved.address, resolved.port, family=resolved.family
                )
            except OSError as exc:
                error = exc
                continue
            return protocol
        raise error if error is not None else ConnectionError(f"cannot connect to {host}:{port}")

    def _release(self, origin: tuple[str, int], conn: _Connection) -> None:
        idle = self._idle.setdefault(origin, [])
        if len(idle) >= self._max_idle:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    def close(self) -> None:
        """Close every idle connection; later posts fail. Idempotent."""
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
