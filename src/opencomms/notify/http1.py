"""A minimal HTTP/1.1 client for the dispatcher's hot path: one POST per notification to an http:// callback URL.

Keep-alive connections per origin (host, port), requests written in one piece, responses parsed with httptools
(pool and protocol: `net.http1client`, shared with cluster forwarding); only the status, Location and Retry-After
are read and the body is drained. A POST through it costs the event loop several times less than through aiohttp,
which the dispatcher keeps for https and anything unusual. Errors surface as OSError (ConnectionError) or
TimeoutError, as the dispatcher expects. With an egress policy, a new connection goes only to an address the
policy's resolver returned (resolved off the loop within its time limit and checked); a refused host raises
`EgressRefused`.
"""

from __future__ import annotations

from collections.abc import Coroutine, Mapping
from typing import Any

from opencomms.net.egress import EgressPolicy
from opencomms.net.http1client import IDLE_SECONDS, Connection, Pool, plain_http

__all__ = ["IDLE_SECONDS", "Http1Poster", "PostResult"]

PostResult = tuple[int, str | None, str | None]
"""(status, Location, Retry-After) of a final response."""


class _PostConnection(Connection[PostResult]):
    """Keeps Location and Retry-After; the body is drained (no `on_body`)."""

    def __init__(self) -> None:
        self._location: str | None = None
        self._retry_after: str | None = None
        super().__init__()

    def _clear(self) -> None:
        self._location = self._retry_after = None

    def _result(self) -> PostResult:
        return (self._status, self._location, self._retry_after)

    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered == b"location":
            self._location = value.decode("latin-1")
        elif lowered == b"retry-after":
            self._retry_after = value.decode("latin-1")


class Http1Poster(Pool[PostResult]):
    """POSTs to http:// URLs over pooled keep-alive connections, each attempt bounded by `timeout` seconds."""

    def __init__(self, *, timeout: float, max_idle_per_origin: int = 256, egress: EgressPolicy | None = None) -> None:
        super().__init__(_PostConnection, timeout=timeout, max_idle_per_origin=max_idle_per_origin, egress=egress)
        self._targets: dict[str, tuple[str, int, bytes]] = {}

    @staticmethod
    def handles(url: str) -> bool:
        return url.startswith("http://")

    def _target(self, url: str) -> tuple[str, int, bytes]:
        """(host, port, the request line and Host header) of an http:// URL; ValueError if unusable."""
        cached = self._targets.get(url)
        if cached is not None:
            return cached
        host, port, authority, target = plain_http(url)
        if any(c in target + authority for c in "\r\n \t"):
            raise ValueError("invalid characters in the URL")
        head = f"POST {target} HTTP/1.1\r\nHost: {authority}\r\n".encode("latin-1")
        if len(self._targets) > 1024:
            self._targets.clear()
        result = self._targets[url] = (host, port, head)
        return result

    def post(self, url: str, headers: Mapping[str, str], body: bytes) -> Coroutine[Any, Any, PostResult]:
        """One POST (to await); raises ValueError (unusable URL), OSError/ConnectionError or TimeoutError.

        A plain function returning the pool's coroutine: no second coroutine per notification."""
        if self._closed:
            raise ConnectionError("poster closed")
        host, port, head = self._target(url)
        lines = [head]
        for name, value in headers.items():
            lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        lines.append(b"Content-Length: %d\r\n\r\n" % len(body))
        lines.append(body)
        return self.exchange(host, port, b"".join(lines))
