"""Request and response values for the ASGI app, and the body reader with its size limit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from opencomms.calling.service import Caller
from opencomms.domain.errors import BadRequest, PayloadTooLarge

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Scope = dict[str, Any]

MAX_JSON_DEPTH = 64
"""Deepest nesting accepted in a request body. Graph bodies nest about six levels; open types echo unknown
members back in responses and notifications, whose encoder refuses more than 254 levels."""


@dataclass(slots=True)
class Request:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    query: str
    body: bytes
    request_id: str
    client_request_id: str | None
    version: str = "v1.0"
    caller: Caller | None = None
    source: str = ""
    """The client's IP address as the connection shows it (a proxy's, behind one)."""

    def json(self) -> Any:
        """The body as JSON; None when empty. Malformed JSON is a 400, never a 500."""
        if not self.body.strip():
            return None
        ctype = self.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if ctype not in ("application/json", "text/json", "") and not ctype.endswith("+json"):
            raise BadRequest(f"Content-Type {ctype!r} is not supported: send application/json.")
        try:
            value = orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"The body is not valid JSON ({exc.args[0].split(':')[0]}).") from None
        body = self.body  # each level opens a bracket: a body with few brackets cannot nest too deep (no walk)
        if body.count(b"{") + body.count(b"[") > MAX_JSON_DEPTH and _too_deep(value, MAX_JSON_DEPTH):
            raise BadRequest(f"The body nests objects and arrays more than {MAX_JSON_DEPTH} levels deep.")
        return value

    @property
    def who(self) -> Caller:
        assert self.caller is not None, "route declared auth but no caller was set"
        return self.caller


@dataclass(slots=True)
class Response:
    status: int
    body: Any = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    raw: bytes | None = None
    content_type: bytes = b"application/json"

    def encode(self) -> bytes:
        if self.raw is not None:
            return self.raw
        if self.body is None:
            return b""
        return orjson.dumps(self.body)


async def read_body(receive: Receive, limit: int) -> bytes:
    """Read the whole request body, refusing more than `limit` bytes with 413."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _too_deep(value: Any, limit: int) -> bool:
    """True if `value` has containers nested more than `limit` levels deep (iterative: no recursion limit)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
