"""A node in the current event loop (`running_node`), a recording bot webhook server and a small Graph client.

The bot validates every callback's JWT against the node's published JWKS, like a real bot must.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
from aiohttp import web

from opencomms.config import EgressConfig, NodeConfig, SipConfig
from opencomms.domain.ids import new_id
from opencomms.server import Node


@asynccontextmanager
async def running_node(config: NodeConfig | None = None, **kwargs: Any) -> AsyncIterator[Node]:
    """Start a node listening on loopback (port 0 by default) and stop it on exit."""
    cfg = config or NodeConfig(
        host="127.0.0.1",
        port=0,
        store_url="memory://",
        sip=SipConfig(port=0),
        egress=EgressConfig(allow=("127.0.0.1", "::1")),  # bots on this host
    )
    node = Node(cfg, **kwargs)
    async with node:
        started = asyncio.Event()
        serving = asyncio.create_task(node.serve(lambda _: started.set()))
        waiter = asyncio.create_task(started.wait())
        await asyncio.wait({serving, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if serving.done():
            waiter.cancel()
            serving.result()
        try:
            yield node
        finally:
            node.stop()
            await serving


@dataclass(frozen=True, slots=True)
class Notification:
    """One commsNotification as a bot received it."""

    change_type: str
    resource_url: str
    resource_data: Any
    delivery_id: str
    received_at: float
    claims: dict[str, Any]

    @property
    def call_id(self) -> str:
        return self.resource_url.split("/")[3]

    @property
    def state(self) -> str | None:
        data = self.resource_data
        return data.get("state") if isinstance(data, dict) else None


Responder = Callable[[dict[str, Any]], "int | tuple[int, dict[str, str]]"]


@dataclass
class RecordingBot:
    """A bot's webhook: a real HTTP server that validates callbacks and records notifications."""

    app_id: str
    jwks_url: str
    issuer: str = "https://api.botframework.com"
    responder: Responder | None = None
    notifications: list[Notification] = field(default_factory=list)
    rejected: int = 0
    url: str = ""
    port: int = 0
    _runner: web.AppRunner | None = None
    _keys: dict[str, Any] = field(default_factory=dict)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _session: aiohttp.ClientSession | None = None

    async def start(self, path: str = "/api/calls", port: int = 0) -> RecordingBot:
        """Listen on loopback (`port` 0 picks a free one; give the old port to restart the same webhook)."""
        app = web.Application()
        app.router.add_post(path, self._handle)
        app.router.add_post(path + "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}{path}"
        self.port = port
        self._session = aiohttp.ClientSession()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> RecordingBot:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _key(self, kid: str) -> Any:
        if kid not in self._keys:
            assert self._session is not None
            async with self._session.get(self.jwks_url) as resp:
                doc = await resp.json()
            for jwk in doc["keys"]:
                self._keys[jwk["kid"]] = jwt.PyJWK(jwk).key
        return self._keys.get(kid)

    async def _handle(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        try:
            token = auth.removeprefix("Bearer ")
            key = await self._key(jwt.get_unverified_header(token)["kid"])
            claims = jwt.decode(token, key, algorithms=["RS256"], audience=self.app_id, issuer=self.issuer)
            if "tid" not in claims:
                raise jwt.InvalidTokenError("no tid")
        except (jwt.InvalidTokenError, KeyError):
            self.rejected += 1
            return web.Response(status=401)
        body = await request.json()
        status: int | tuple[int, dict[str, str]] = 202
        if self.responder is not None:
            status = self.responder(body)
        headers: dict[str, str] = {}
        if isinstance(status, tuple):
            status, headers = status
        if 200 <= status < 300:
            now = time.monotonic()
            for item in body["value"]:
                self.notifications.append(
                    Notification(
                        change_type=item["changeType"],
                        resource_url=item["resourceUrl"],
                        resource_data=item.get("resourceData"),
                        delivery_id=request.headers.get("opencomms-delivery-id", ""),
                        received_at=now,
                        claims=claims,
                    )
                )
            async with self._changed:
                self._changed.notify_all()
        return web.Response(status=status, headers=headers)

    async def wait_for(
        self, predicate: Callable[[Notification], bool], *, timeout: float = 5.0, count: int = 1
    ) -> list[Notification]:
        """Wait until `count` received notifications match `predicate`; returns them."""

        def matches() -> list[Notification]:
            return [n for n in self.notifications if predicate(n)]

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(matches()) >= count), timeout)
        return matches()

    async def wait_state(self, call_id: str, state: str, *, timeout: float = 5.0) -> Notification:
        found = await self.wait_for(lambda n: n.resource_url.endswith(call_id) and n.state == state, timeout=timeout)
        return found[0]

    async def incoming(self, *, timeout: float = 5.0, index: int = 0) -> Notification:
        found = await self.wait_for(lambda n: n.change_type == "created", timeout=timeout, count=index + 1)
        return found[index]

    def for_call(self, call_id: str) -> list[Notification]:
        return [n for n in self.notifications if n.call_id == call_id]


class GraphClient:
    """Minimal Graph client for tests and tools: client-credentials token, JSON requests."""

    def __init__(self, base_url: str, tenant: str, client_id: str, secret: str, *, ssl: Any = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.tenant = tenant
        self.client_id = client_id
        self.secret = secret
        self.token: str | None = None
        self._ssl = ssl
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> GraphClient:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ssl=self._ssl))
        await self.authenticate()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def authenticate(self) -> None:
        assert self._session is not None
        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.secret,
            "scope": f"{self.base_url}/.default",
        }
        async with self._session.post(f"{self.base_url}/{self.tenant}/oauth2/v2.0/token", data=form) as resp:
            body = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"token request failed: {resp.status} {body}")
            self.token = body["access_token"]

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        assert self._session is not None
        hdrs = {"Authorization": f"Bearer {self.token}", "client-request-id": new_id(), **(headers or {})}
        url = path if path.startswith("http") else f"{self.base_url}/v1.0{path}"
        kwargs: dict[str, Any] = {"headers": hdrs}
        if raw is not None:
            kwargs["data"] = raw
            hdrs.setdefault("Content-Type", "application/json")
        elif body is not None:
            kwargs["json"] = body
        async with self._session.request(method, url, **kwargs) as resp:
            data = await resp.read()
            parsed = None
            if data:
                try:
                    parsed = await resp.json(content_type=None)
                except ValueError:
                    parsed = data.decode(errors="replace")
            return resp.status, parsed, dict(resp.headers)

    # -- conveniences --------------------------------------------------------------------------------------
    async def create_call(self, callback_uri: str, targets: list[dict[str, Any]], **extra: Any) -> tuple[int, Any]:
        body = {
            "@odata.type": "#microsoft.graph.call",
            "callbackUri": callback_uri,
            "targets": targets,
            "requestedModalities": ["audio"],
            "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
            **extra,
        }
        status, data, _ = await self.request("POST", "/communications/calls", body)
        return status, data

    async def answer(self, call_id: str, callback_uri: str | None = None) -> int:
        body: dict[str, Any] = {
            "acceptedModalities": ["audio"],
            "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
        }
        if callback_uri:
            body["callbackUri"] = callback_uri
        status, _, _ = await self.request("POST", f"/communications/calls/{call_id}/answer", body)
        return status

    async def hang_up(self, call_id: str) -> int:
        status, _, _ = await self.request("DELETE", f"/communications/calls/{call_id}")
        return status


def app_target(app_id: str) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.invitationParticipantInfo",
        "identity": {"@odata.type": "#microsoft.graph.identitySet", "application": {"id": app_id}},
    }
