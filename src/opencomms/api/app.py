"""The ASGI application: request ids, header checks, routing, auth, throttling, body limits, error mapping.

Pure ASGI (no framework), so that the same app runs under uvicorn, in tests, or in any ASGI server.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from opencomms.api.errors import OAuthError, error_response
from opencomms.api.http import Receive, Request, Response, Scope, Send, read_body
from opencomms.api.routing import Kind, Router
from opencomms.api.throttle import Throttle
from opencomms.auth.secretguard import SecretGuard
from opencomms.auth.signin import SignIn
from opencomms.auth.tokens import TokenError, TokenService
from opencomms.calling.media import MediaService
from opencomms.calling.meeting_invites import ParticipantInvites
from opencomms.calling.meetings import LiveMeetingService
from opencomms.calling.quotas import CallQuotas
from opencomms.calling.recordings import RecordingStore
from opencomms.calling.service import Caller, CallService
from opencomms.calling.transcription import CallTranscription
from opencomms.directory import Directory
from opencomms.domain.errors import AccessDenied, BadRequest, ServiceUnavailable, Throttled, Unauthenticated
from opencomms.domain.ids import is_guid, new_id
from opencomms.logs import request_context
from opencomms.meetings.service import MeetingService
from opencomms.net.egress import EgressPolicy

log = logging.getLogger("opencomms.api")

_GUID_HEADERS = ("client-request-id", "scenario-id")


@dataclass
class ApiContext:
    """Everything handlers need; built by the composition root (server.py)."""

    directory: Directory
    calls: CallService
    tokens: TokenService
    throttle: Throttle
    public_url: str
    media: MediaService | None = None
    quotas: CallQuotas | None = None
    recordings: RecordingStore | None = None
    max_body_bytes: int = 1 << 20
    clock: Callable[[], float] = time.time
    health: Callable[[], dict[str, Any]] = field(default=lambda: {"status": "ok"})
    secrets: SecretGuard = field(default_factory=SecretGuard)
    egress: EgressPolicy | None = None
    """Judges the callbackUri a bot gives (None: not judged at the API; the dispatcher still checks)."""
    ready: Callable[[], Awaitable[tuple[bool, dict[str, Any]]]] | None = None
    """The readiness checks behind /readyz (None: always ready)."""
    metrics: Any = None
    """The node's metrics for GET /metrics (`config` and `render()`, see api/routes/metrics.py); None: 404."""
    meetings: MeetingService | None = None
    """Online meetings (the resources); None: the meeting routes answer 503."""
    live_meetings: LiveMeetingService | None = None
    """Live meetings: joins with meetingInfo and participant control (None: 503 on those routes)."""
    signin: SignIn | None = None
    """Delegated sign-in; None: only the client-credentials grant."""
    subscriptions: Any = None
    """Change-notification subscriptions (subscriptions.service.SubscriptionService); None: 404."""
    invites: ParticipantInvites | None = None
    """participants/invite (None: 503)."""
    media_streams: Any = None
    """#opencomms media streams (calling.mediastreams.MediaStreams); None: 503 on start/stopMediaStream."""
    transcription: CallTranscription | None = None
    """Live transcription (calling.transcription.CallTranscription); None: startTranscription answers 503."""
    forwarder: Any = None
    """Several nodes: passes a request for a conversation another node owns to that node and checks requests
    forwarded to this one (cluster.forward.Forwarder); None: a single node."""
    meeting_artifacts: Any = None
    """Meeting transcripts and recordings (meetings.artifacts.ArtifactStore); None: those routes answer 503."""


def build_app(ctx: ApiContext) -> GraphApp:
    from opencomms.api.routes import all_routes

    return GraphApp(ctx, Router(all_routes()))


class GraphApp:
    def __init__(self, ctx: ApiContext, router: Router) -> None:
        self.ctx = ctx
        self.router = router
        self.on_request: Callable[[str, str, int, float], None] | None = None
        """Observer of every answered request: (method, route template or "" if none matched, status, seconds)."""
        self.on_exchange: Callable[[str, str, Response, float], None] | None = None
        """Observer of every answered request: (method, path, response, seconds taken); the console's timelines."""
        self.mounts: dict[str, Callable[[Scope, Receive, Send], Awaitable[None]]] = {}
        """ASGI apps served for a path prefix ('/console') in place of the Graph pipeline."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if self.mounts and (mounted := self._mounted(scope["path"])) is not None:
            await mounted(scope, receive, send)
            return
        request_id = new_id()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        crid = headers.get("client-request-id")
        echo = crid if crid and is_guid(crid) else None  # never echo a non-GUID (possibly personal) value
        method = scope["method"]
        path = scope["path"]
        started = time.perf_counter()
        try:
            with request_context(request_id):
                response = await self._handle(scope, receive, headers, request_id, crid)
            payload = response.encode()
        except OAuthError as exc:
            extra = [] if exc.retry_after is None else [(b"retry-after", str(exc.retry_after).encode())]
            response = Response(exc.status, exc.body(request_id, echo), extra)
            payload = response.encode()
        except BaseException as exc:
            if not isinstance(exc, Exception):
                raise
            status, body, extra = error_response(exc, request_id, echo)
            response = Response(status, body, extra)
            payload = response.encode()
        if response.status >= 500 or log.isEnabledFor(logging.DEBUG):
            log.info("%s %s -> %d", method, _safe_path(path), response.status, extra={"request_id": request_id})
        await self._send(send, response, payload, request_id, echo)
        if (observe := self.on_request) is not None:
            observe(method, scope.get("opencomms.route", ""), response.status, time.perf_counter() - started)
        if (exchange := self.on_exchange) is not None:
            exchange(method, path, response, time.perf_counter() - started)

    def _mounted(self, path: str) -> Callable[[Scope, Receive, Send], Awaitable[None]] | None:
        for prefix, app in self.mounts.items():
            if path == prefix or path.startswith(prefix + "/"):
                return app
        return None

    async def _handle(
        self, scope: Scope, receive: Receive, headers: dict[str, str], request_id: str, crid: str | None
    ) -> Response:
        for name in _GUID_HEADERS:
            value = headers.get(name)
            if value is not None and not is_guid(value):
                raise BadRequest(f"The '{name}' header must be a GUID; nothing personal may go into it.")
        route, params, version = self.router.match(scope["method"], scope["path"])
        scope["opencomms.route"] = route.template
        caller = None
        fwd = self.ctx.forwarder
        forwarded = fwd is not None and fwd.is_forwarded(headers)  # authenticated by the node that forwarded it
        if route.kind is Kind.GRAPH and not forwarded:
            caller = self._authenticate(headers)
            if caller.user_id is not None and not route.delegated:
                raise AccessDenied("This API accepts application tokens only, not a signed-in user's token.")
            wait = self.ctx.throttle.check(caller.app_id, self.ctx.clock())
            if wait is not None:
                raise Throttled("Too many requests from this application; retry later.", wait)
        body = await read_body(receive, self.ctx.max_body_bytes)
        request = Request(
            method=scope["method"],
            path=scope["path"],
            params=params,
            headers=headers,
            query=scope.get("query_string", b"").decode("latin-1"),
            body=body,
            request_id=request_id,
            client_request_id=crid,
            version=version or "v1.0",
            caller=caller,
            source=client[0] if (client := scope.get("client")) else "",
        )
        if forwarded:
            request.caller = await fwd.verify(request)
        try:
            result = route.handler(self.ctx, request)
            if inspect.isawaitable(result):
                result = await result
        except ServiceUnavailable as exc:  # another node owns the conversation: ask it
            owner = getattr(exc, "owner_node", "")
            if not owner or fwd is None or (answer := await fwd.forward(request, owner)) is None:
                raise
            return answer  # type: ignore[no-any-return]
        return result

    def _authenticate(self, headers: dict[str, str]) -> Caller:
        auth = headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("Access token is empty: send 'Authorization: Bearer <token>'.")
        try:
            claims = self.ctx.tokens.validate_access_token(token.strip(), self.ctx.clock())
        except TokenError as exc:
            raise Unauthenticated(f"Access token validation failure: {exc}") from None
        app = self.ctx.directory.get_app(claims.app_id)
        if app is None or app.tenant_id != claims.tenant_id:
            raise Unauthenticated("The application of this token no longer exists.")
        if claims.user_id is not None:
            user = self.ctx.directory.get_user(claims.user_id)
            if user is None or user.tenant_id != claims.tenant_id:
                raise Unauthenticated("The signed-in user of this token no longer exists.")
            return Caller(claims.tenant_id, claims.app_id, frozenset(), claims.user_id, claims.scopes)
        return Caller(tenant_id=claims.tenant_id, app_id=claims.app_id, roles=claims.roles)

    @staticmethod
    async def _send(send: Send, response: Response, payload: bytes, request_id: str, crid: str | None) -> None:
        headers = [
            (b"request-id", request_id.encode()),
            (b"content-length", str(len(payload)).encode()),
            (b"cache-control", b"no-store"),
            *response.headers,
        ]
        if payload:
            headers.append((b"content-type", response.content_type))
        if crid:
            headers.append((b"client-request-id", crid.encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _safe_path(path: str) -> str:
    return path[:200]


__all__ = ["ApiContext", "GraphApp", "build_app"]
