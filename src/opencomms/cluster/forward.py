"""Node-to-node forwarding: a REST request for a conversation another live node owns goes to that node.

The owner's internal URL comes from Redis (cluster.registry), never from the request. The forwarded request keeps
the caller's method, path, query and body; the forwarding node has authenticated and throttled the caller already,
and passes who it is (tenant, app, roles, user, scopes) in a header, with the forwarding node's id, a timestamp, and
an HMAC-SHA256 over all of them, the method, the path, the query and the body's hash with the cluster secret. A node
receiving a request with these headers checks the signature (a forged or stale one is refused 401), takes the
caller from it, and never forwards it again: one hop at most, so an owner changing mid-flight yields
503 + Retry-After, not a loop.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from typing import TYPE_CHECKING

import aiohttp
import orjson

from opencomms.api.http import Request, Response
from opencomms.calling.service import Caller
from opencomms.cluster.http1 import ForwardClient
from opencomms.domain.errors import Unauthenticated
from opencomms.store.base import StoreUnavailable
from opencomms.store.conversations_redis import FAULTS

if TYPE_CHECKING:
    from opencomms.cluster.registry import NodeRegistry

__all__ = ["BY", "SIGNATURE", "TIME", "Forwarder", "signature"]

log = logging.getLogger("opencomms.cluster")

BY = "x-opencomms-forwarded-by"
TIME = "x-opencomms-forwarded-at"
SIGNATURE = "x-opencomms-forward-signature"
CALLER = "x-opencomms-forwarded-caller"
MAX_SKEW = 30.0
"""Seconds a forwarded request's timestamp may differ from this node's clock."""
_PASSED = ("content-type", "client-request-id", "scenario-id", "accept")
_RETURNED = (b"location", b"retry-after", b"content-type")
_LEAN = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE"})
"""Methods forwarded through the lean HTTP/1.1 client (cluster.http1); others (HEAD) go through aiohttp."""


def signature(secret: bytes, by: str, at: str, caller: str, method: str, path: str, query: str, body: bytes) -> str:
    text = "\n".join((by, at, caller, method, path, query, hashlib.sha256(body).hexdigest()))
    return hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()


class Forwarder:
    """Forwards requests to conversation owners and checks requests forwarded to this node."""

    def __init__(self, registry: NodeRegistry, *, timeout: float = 5.0) -> None:
        self.registry = registry
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._lean = ForwardClient(timeout=timeout, keep=frozenset(_RETURNED))
        self.forwarded = 0
        """Requests this node passed to their owner."""
        self.received = 0
        """Requests other nodes passed to this one."""

    @staticmethod
    def is_forwarded(headers: dict[str, str]) -> bool:
        return BY in headers

    async def verify(self, request: Request) -> Caller | None:
        """The caller of a request another node forwarded, once its signature is found valid and fresh (else
        401); None: the forwarding node had no caller (a public route)."""
        headers = request.headers
        by, at, sig = headers.get(BY, ""), headers.get(TIME, ""), headers.get(SIGNATURE, "")
        who = headers.get(CALLER, "")
        try:
            fresh = abs(time.time() - float(at)) <= MAX_SKEW
        except ValueError:
            fresh = False
        try:
            secret = await self.registry.secret()
        except FAULTS as exc:
            raise StoreUnavailable(f"the cluster secret cannot be read: {exc}") from None
        want = signature(secret, by, at, who, request.method, request.path, request.query, request.body)
        if not (fresh and hmac.compare_digest(want, sig)):
            raise Unauthenticated("This node-to-node request is not signed by a node of this cluster.")
        self.received += 1
        return _caller(who)

    async def forward(self, request: Request, owner: str) -> Response | None:
        """The owner's answer to `request` (None: not forwardable: already forwarded once, owner unknown or
        unreachable; the caller answers 503 + Retry-After then)."""
        if BY in request.headers or owner == self.registry.node:
            return None
        try:
            url = await self.registry.url_of(owner)
            secret = await self.registry.secret()
        except FAULTS as exc:  # Redis is down: the caller answers 503 + Retry-After
            log.warning("cannot forward to node %s: %s", owner, exc)
            return None
        if url is None:
            return None
        at = repr(time.time())
        me = self.registry.node
        headers = {k: v for k, v in request.headers.items() if k in _PASSED}
        who = "" if request.caller is None else _who(request.caller)
        sig = signature(secret, me, at, who, request.method, request.path, request.query, request.body)
        headers.update({BY: me, TIME: at, SIGNATURE: sig, CALLER: who})
        path = request.path + (f"?{request.query}" if request.query else "")
        try:
            if request.method in _LEAN and url.startswith("http://"):
                status, kept, payload = await self._lean.request(request.method, url, path, headers, request.body)
            else:
                status, kept, payload = await self._aiohttp(request.method, url.rstrip("/") + path, headers, request)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            log.warning("forwarding to node %s failed: %s", owner, exc)
            return None
        self.forwarded += 1
        ctype = next((v for k, v in kept if k == b"content-type"), b"application/json")
        kept = [(k, v) for k, v in kept if k != b"content-type"]
        return Response(status, None, kept, raw=payload, content_type=ctype)

    async def _aiohttp(
        self, method: str, target: str, headers: dict[str, str], request: Request
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """The general path (https internal URLs, unusual methods)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        async with self._session.request(
            method, target, data=request.body or None, headers=headers, allow_redirects=False
        ) as resp:
            payload = await resp.read()
            kept = [(k.lower().encode(), v.encode()) for k, v in resp.headers.items()]
            return resp.status, [(k, v) for k, v in kept if k in _RETURNED], payload

    async def aclose(self) -> None:
        self._lean.close()
        if self._session is not None:
            await self._session.close()
            self._session = None


def _who(caller: Caller) -> str:
    return orjson.dumps(
        {
            "t": caller.tenant_id,
            "a": caller.app_id,
            "r": sorted(caller.roles),
            "u": caller.user_id,
            "s": sorted(caller.scopes),
        }
    ).decode()


def _caller(who: str) -> Caller | None:
    if not who:
        return None
    try:
        d = orjson.loads(who)
        return Caller(d["t"], d["a"], frozenset(d["r"]), d["u"], frozenset(d["s"]))
    except (ValueError, KeyError, TypeError):
        raise Unauthenticated("This node-to-node request names no valid caller.") from None
