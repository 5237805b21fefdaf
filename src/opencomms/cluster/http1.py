"""The HTTP/1.1 client of node-to-node forwarding: one request to another node's internal http:// URL, its status,
the few headers a forwarded answer keeps and its body.

Keep-alive connections per origin, each request written in one piece, responses parsed with httptools (the pool
and protocol are `net.http1client`, shared with the dispatcher's POSTs): a forwarded request costs the event loop
several times less than through aiohttp. Only for the cluster's internal URLs, which come from Redis, never from a
request. Errors surface as OSError (ConnectionError) or TimeoutError.
"""

from __future__ import annotations

from collections.abc import Coroutine, Mapping
from functools import partial
from typing import Any

from opencomms.net.http1client import IDLE_SECONDS, Connection, Pool, plain_http

__all__ = ["IDLE_SECONDS", "MAX_BODY", "ForwardClient", "Reply"]

MAX_BODY = 64 << 20
"""Largest answer accepted from another node (a recording download is the largest)."""

Reply = tuple[int, list[tuple[bytes, bytes]], bytes]
"""(status, kept headers (lower-case names), body) of a final response."""


class _ForwardConnection(Connection[Reply]):
    """Keeps the headers named in `keep` and the body, up to `MAX_BODY`."""

    def __init__(self, keep: frozenset[bytes]) -> None:
        self._keep = keep
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._size = 0
        super().__init__()

    def _clear(self) -> None:
        self._headers = []
        self._body = []
        self._size = 0

    def _result(self) -> Reply:
        return (self._status, self._headers, b"".join(self._body))

    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered in self._keep:
            self._headers.append((lowered, value))

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_BODY:
            self._fail(ConnectionError("answer too large"))
            self.close()
            return
        self._body.append(body)


class ForwardClient(Pool[Reply]):
    """Requests to http:// URLs over pooled keep-alive connections, each bounded by `timeout` seconds."""

    def __init__(self, *, timeout: float, keep: frozenset[bytes], max_idle_per_origin: int = 64) -> None:
        super().__init__(partial(_ForwardConnection, keep), timeout=timeout, max_idle_per_origin=max_idle_per_origin)
        self._origins: dict[str, tuple[str, int, str]] = {}

    def _origin(self, base: str) -> tuple[str, int, str]:
        cached = self._origins.get(base)
        if cached is not None:
            return cached
        host, port, authority, _path = plain_http(base)
        if len(self._origins) > 256:
            self._origins.clear()
        result = self._origins[base] = (host, port, authority)
        return result

    def request(
        self, method: str, base: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> Coroutine[Any, Any, Reply]:
        """`method` `target` (path and query) at the node whose URL is `base` (to await); ValueError for an
        unusable URL."""
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
        return self.exchange(host, port, b"".join(lines))
