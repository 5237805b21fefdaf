"""WebRtcEdge: browsers reach the node as SIP legs, over SIP-over-WebSocket with their media through rtpengine.

The edge serves `/sip/ws` (subprotocol `sip`, RFC 7118) on its own port with aiohttp's WebSocket server (the
node's uvicorn runs without a WebSocket implementation): the handshake is refused (401/403) unless it carries a
per-join ticket (`?ticket=`) or a signed-in user's delegated access token (`?access_token=`), and unless the page's
Origin is the node's or an allowed one; an accepted connection is attached to the SIP endpoint's `WsTransport`
with its `WebGrant`. From then on the SIP gateway treats the browser like a phone, with three differences it asks
this edge about (`is_browser`): an INVITE may only reach what the grant allows (403), its SDP offer goes through
rtpengine (`offer`: ICE, DTLS-SRTP and Opus in, plain RTP/AVP with G.722 or PCMU out) and the node's answer back
(`answer`), and the caller identity is the grant's (`caller`; `joiner` for a meeting's lobby: a signed-in user of
the meeting's tenant is a user, anyone else a guest; no digest needed). rtpengine not answering fails the INVITE
with 503 within `rtpengine_timeout` seconds and shows in /healthz and /readyz (`check`).

Owns: the aiohttp server and its connections (a bounded send queue each), the rtpengine client (and a spawned
rtpengine), the tickets, the liveness probe of rtpengine. Must not: decide call policy or touch RTP sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl
import time
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from opencomms.auth.tokens import TokenError, TokenService
from opencomms.config import WebRtcConfig
from opencomms.directory import Directory
from opencomms.domain.meeting_rules import JoinerKind
from opencomms.domain.meetings import MeetingInfo
from opencomms.gateway.opus_fmtp import IN_NODE, BrowserOpus, with_opus_fmtp
from opencomms.gateway.opus_tuning import OpusTuning
from opencomms.gateway.rtpengine import (
    PLAIN_TO_WEBRTC,
    WEBRTC_TO_PLAIN_OPUS,
    WEBRTC_TO_PLAIN_RELAY,
    NgRejected,
    NgUnavailable,
    RtpEngineClient,
    webrtc_to_plain,
)
from opencomms.gateway.rtpengine_daemon import RtpEngineDaemon, RtpEngineSettings
from opencomms.gateway.webjoin import TicketBook, WebGrant, WebJoinTickets, normalize_target
from opencomms.sched import fifo_permitted
from opencomms.sip.endpoint import SipEndpoint
from opencomms.sip.handles import ServerTransactionHandle
from opencomms.sip.message import SipRequest
from opencomms.sip.websocket import WS_TRANSPORTS, WsConnection
from opencomms.tasks import TaskSet

log = logging.getLogger("opencomms.webrtc")

__all__ = ["WebRtcEdge", "credential_key"]

SEND_QUEUE = 256
"""Messages queued toward one browser; a browser that does not read beyond that is disconnected."""
PROBE_INTERVAL = 5.0
"""Seconds between rtpengine liveness pings."""


def credential_key(credential: str) -> str:
    """How the edge remembers a ticket or token a WebSocket was opened with (a digest: never the secret)."""
    return hashlib.sha256(credential.encode("utf-8", "replace")).hexdigest()


def _warning(text: str) -> tuple[str, str]:
    safe = text.replace('"', "'").replace("\r", " ").replace("\n", " ")[:200]
    return ("Warning", f'399 opencomms "{safe}"')


class WebRtcEdge:
    def __init__(
        self,
        config: WebRtcConfig,
        endpoint: SipEndpoint,
        tokens: TokenService,
        directory: Directory,
        *,
        public_url: str,
        tls: tuple[str, str] | None = None,
        clock: Any = time.time,
        tickets: TicketBook | None = None,
    ) -> None:
        self.config = config
        self.endpoint = endpoint
        self.tokens = tokens
        self.directory = directory
        self.public_url = public_url.rstrip("/")
        self.tls = tls
        self.clock = clock
        host, _, port = config.rtpengine.rpartition(":")
        self.rtpengine = RtpEngineClient((host, int(port)), timeout=config.rtpengine_timeout)
        self.daemon: RtpEngineDaemon | None = None
        self.tickets: TicketBook = tickets or WebJoinTickets(config.ticket_ttl)
        """Per-join tickets: this node's memory, or Redis in a cluster (any node redeems what another issued)."""
        self.transport = endpoint.enable_websocket(max_connections=config.max_connections)
        self.rtpengine_ok: bool | None = None
        self.refused = 0
        self.on_closed: Any = None
        """Called with (transport, peer) when a browser's WebSocket closes (the gateway ends its calls)."""
        self.routes: list[tuple[str, Any]] = []
        """More GET handlers on the edge's port (the meeting page's event feed, web/feed.py), set before start."""
        self.by_credential: dict[str, WsConnection] = {}
        """Open SIP WebSockets by the digest of the ticket or token that opened them (`credential_key`): the
        meeting page's feed proves it is the same page with the same credential."""
        self._runner: web.AppRunner | None = None
        self.sockets: set[web.WebSocketResponse] = set()
        self._tasks = TaskSet("webrtc")
        self._probe: asyncio.Task[None] | None = None
        self.opus_tuning = OpusTuning(
            complexity=config.opus_complexity,
            max_bandwidth=config.opus_max_bandwidth,
            mono=config.opus_mono,
            bitrate=config.opus_bitrate,
        )
        self.browser_opus = BrowserOpus(max_rate=config.browser_opus_max_rate, dtx=config.browser_opus_dtx)

    # -- lifecycle -----------------------------------------------------------------------------------------------
    def _relay_fifo(self) -> int:
        """SCHED_FIFO priority for the spawned rtpengine: only while it relays (no codec work) and when permitted."""
        cfg = self.config
        relays = not cfg.opus or cfg.opus_in_node
        priority = cfg.rtpengine_realtime_priority
        return priority if relays and priority > 0 and fifo_permitted(priority) else 0

    async def start(self) -> None:
        cfg = self.config
        if cfg.rtpengine_spawn:
            host, port = self.rtpengine.address
            self.daemon = RtpEngineDaemon(
                RtpEngineSettings(
                    interface=self.endpoint.config.host,
                    ng_host=host,
                    ng_port=port,
                    port_min=cfg.rtpengine_port_min,
                    port_max=cfg.rtpengine_port_max,
                    num_threads=cfg.rtpengine_threads,
                    latency_slice_ms=cfg.rtpengine_latency_slice_ms,
                    realtime_priority=self._relay_fifo(),
                    opus=self.opus_tuning if cfg.opus else None,
                )
            )
            try:
                await self.daemon.start()
            except RuntimeError as exc:  # the node still serves phones; browsers get 503 and /readyz says why
                log.error("rtpengine not started: %s", exc)
                self.daemon = None
        app = web.Application()
        app.router.add_get("/sip/ws", self._websocket)
        for path, handler in self.routes:
            app.router.add_get(path, handler)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        context = None
        if self.tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self.tls)
        site = web.TCPSite(self._runner, cfg.ws_host, cfg.ws_port, ssl_context=context)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        bound = sockets[0].getsockname() if sockets else (cfg.ws_host, cfg.ws_port)
        self.transport.local_addr = (str(bound[0]), int(bound[1]))
        self.transport.open = True
        self.rtpengine_ok = await self.rtpengine.ping()
        self._probe = asyncio.get_running_loop().create_task(self._probe_loop())
        log.info("webrtc edge listening", extra={"port": self.port})

    async def close(self) -> None:
        self.transport.open = False
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        for ws in list(self.sockets):  # browsers hear "going away" now, not after the shutdown timeout
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(code=WSCloseCode.GOING_AWAY, message=b"node stopping"), 1.0)
        await self._tasks.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.rtpengine.close()
        close_tickets = getattr(self.tickets, "close", None)
        if close_tickets is not None:
            close_tickets()
        if self.daemon is not None:
            await self.daemon.stop()
            self.daemon = None

    @property
    def port(self) -> int:
        return self.transport.local_addr[1]

    @property
    def scheme(self) -> str:
        return "wss" if self.tls is not None else "ws"

    @property
    def ws_url(self) -> str:
        if self.config.ws_public_url:
            return self.config.ws_public_url
        host = self.config.ws_host
        if self.tls is not None and host in ("127.0.0.1", "0.0.0.0"):
            host = "localhost"
        return f"{self.scheme}://{host}:{self.port}/sip/ws"

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(PROBE_INTERVAL)
            ok = await self.rtpengine.ping()
            if ok != self.rtpengine_ok:
                (log.info if ok else log.error)("rtpengine %s", "answering" if ok else "not answering")
            self.rtpengine_ok = ok

    def health(self) -> dict[str, Any]:
        return {
            "ws_port": self.port,
            "connections": self.transport.connection_count,
            "refused": self.refused,
            "rtpengine": "ok" if self.rtpengine_ok else "unreachable",
            "rtpengine_failures": self.rtpengine.failures,
        }

    def check(self) -> tuple[bool, str]:
        """Readiness: rtpengine answers pings."""
        if self.rtpengine_ok:
            return True, f"rtpengine answering at {self.config.rtpengine}"
        return False, f"rtpengine not answering at {self.config.rtpengine}"

    # -- the WebSocket ---------------------------------------------------------------------------------------------
    def _origin_ok(self, origin: str | None) -> bool:
        if origin is None:  # not a browser page (a test client, a native app): the credential decides alone
            return True
        allowed = {self.public_url, *self.config.allowed_origins}
        return origin.rstrip("/") in allowed

    def _grant(self, request: web.Request) -> WebGrant | None:
        ticket = request.query.get("ticket")
        if ticket:
            return self.tickets.redeem(ticket, self.clock())
        token = request.query.get("access_token")
        if not token:
            return None
        try:
            claims = self.tokens.validate_access_token(token, self.clock())
        except TokenError:
            return None
        if claims.user_id is None:  # an application's token never goes into a browser
            return None
        user = self.directory.get_user(claims.user_id)
        if user is None or user.tenant_id != claims.tenant_id:
            return None
        name = str(getattr(user, "display_name", "") or claims.user_id)
        return WebGrant(claims.tenant_id, name, None, claims.user_id, claims.app_id)

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if not self._origin_ok(request.headers.get("Origin")):
            self.refused += 1
            return web.Response(status=403, text="origin not allowed\n")
        ws = web.WebSocketResponse(protocols=("sip",), max_msg_size=self.config.max_message, heartbeat=30.0)
        ready = ws.can_prepare(request)
        if not ready.ok or ready.protocol != "sip":  # before the ticket is spent
            self.refused += 1
            return web.Response(status=400, text="a WebSocket with subprotocol 'sip' is required\n")
        grant = self._grant(request)
        if grant is None:
            self.refused += 1
            return web.Response(status=401, text="a valid ticket or access token is required\n")
        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        if not isinstance(peer, tuple):
            return web.Response(status=400, text="no peer address\n")
        queue: asyncio.Queue[str] = asyncio.Queue(SEND_QUEUE)

        def send_text(text: str) -> bool:
            try:
                queue.put_nowait(text)
            except asyncio.QueueFull:
                log.warning("browser %s is not reading its WebSocket; closing", peer)
                self._tasks.spawn(ws.close())
                return False
            return True

        conn = WsConnection((str(peer[0]), int(peer[1])), self.scheme, send_text, grant)
        if not self.transport.attach(conn):
            self.refused += 1
            return web.Response(status=503, text="too many WebSocket connections\n")
        credential = credential_key(request.query.get("ticket") or request.query.get("access_token") or "")
        self.by_credential[credential] = conn
        try:
            await ws.prepare(request)
            self.sockets.add(ws)
            writer = asyncio.get_running_loop().create_task(self._write(ws, queue))
            try:
                async for msg in ws:
                    if msg.type is WSMsgType.TEXT:
                        self.transport.received(conn, msg.data.encode())
                    elif msg.type is WSMsgType.BINARY:
                        self.transport.received(conn, msg.data)
                    else:
                        break
            finally:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await writer
        finally:
            self.sockets.discard(ws)
            self.transport.detach(conn)
            if self.by_credential.get(credential) is conn:
                del self.by_credential[credential]
            if self.on_closed is not None:
                try:
                    self.on_closed(conn.transport, conn.peer)
                except Exception:
                    log.exception("WebSocket close handler failed")
        return ws

    @staticmethod
    async def _write(ws: web.WebSocketResponse, queue: asyncio.Queue[str]) -> None:
        while True:
            text = await queue.get()
            try:
                await ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return

    # -- what the SIP gateway asks -------------------------------------------------------------------------------
    @staticmethod
    def is_browser(handle: ServerTransactionHandle) -> bool:
        return handle.source.transport in WS_TRANSPORTS

    def grant_of(self, handle: ServerTransactionHandle) -> WebGrant | None:
        conn = self.transport.connection(handle.source.addr)
        return None if conn is None else conn.grant

    async def offer(self, handle: ServerTransactionHandle, req: SipRequest) -> bytes | None:
        """The browser's offer as plain RTP for the node, or None once the INVITE is answered with why not
        (403 outside the grant, 488 an SDP rtpengine cannot handle, 503 rtpengine not answering)."""
        grant = self.grant_of(handle)
        if grant is None or not grant.allows(str(req.uri)) or not self._same_tenant(grant, str(req.uri)):
            handle.respond(403, "Forbidden", headers=[_warning("this connection may not call that address")])
            return None
        if not req.body:
            return req.body
        try:
            cfg = self.config
            if not cfg.opus:
                flags = WEBRTC_TO_PLAIN_RELAY
            elif cfg.opus_in_node:
                flags = WEBRTC_TO_PLAIN_OPUS
            else:
                flags = webrtc_to_plain(cfg.node_codecs, self.opus_tuning.codec_spec())
            return await self.rtpengine.offer(req.call_id, req.from_.tag or "", req.body, flags)
        except NgUnavailable:
            self.rtpengine_ok = False
            handle.respond(503, "Service Unavailable", headers=[_warning("media relay (rtpengine) unavailable")])
        except NgRejected as exc:
            handle.respond(488, "Not Acceptable Here", headers=[_warning(f"media relay refused the offer: {exc}")])
        return None

    def _same_tenant(self, grant: WebGrant, target: str) -> bool:
        """A signed-in user calls the bots of their own tenant (meetings decide for themselves: the lobby)."""
        if grant.target is not None:
            return True
        inst = self.directory.find_instance_by_address(normalize_target(target))
        app = None if inst is None else self.directory.get_app(inst.app_id)
        return app is None or app.tenant_id == grant.tenant_id

    async def answer(self, handle: ServerTransactionHandle, req: SipRequest, sdp: bytes) -> bytes | None:
        """The node's answer as the browser needs it (ICE, DTLS-SRTP, its codec, and what its Opus should be:
        `browser_opus`), or None once answered."""
        try:
            answer = await self.rtpengine.answer(req.call_id, req.from_.tag or "", handle.to_tag, sdp, PLAIN_TO_WEBRTC)
            params = self.browser_opus.params()
            if self.config.opus_in_node:  # the node decodes it: 40 kbit/s at most, mono, in-band FEC
                params |= IN_NODE
            return with_opus_fmtp(answer, params) if self.config.opus else answer
        except NgUnavailable:
            self.rtpengine_ok = False
            handle.respond(503, "Service Unavailable", headers=[_warning("media relay (rtpengine) unavailable")])
        except NgRejected as exc:
            handle.respond(488, "Not Acceptable Here", headers=[_warning(f"media relay refused the answer: {exc}")])
        return None

    def forget(self, call_id: str) -> None:
        """Free rtpengine's side of a call (in the background; a dead rtpengine frees it by its own timeout)."""
        self._tasks.spawn(self.rtpengine.delete(call_id))

    def caller(self, handle: ServerTransactionHandle) -> dict[str, Any] | None:
        """The identitySet a bot sees for a browser: the signed-in user, or a guest with the ticket's name."""
        grant = self.grant_of(handle)
        if grant is None:
            return None
        kind = "user" if grant.user_id is not None else "guest"
        ident: dict[str, Any] = {"@odata.type": "#microsoft.graph.identity", "displayName": grant.display_name}
        ident["id"] = grant.user_id or f"guest:{handle.source.host}:{handle.source.port}"
        return {"@odata.type": "#microsoft.graph.identitySet", kind: ident}

    def joiner(
        self, handle: ServerTransactionHandle, meeting: MeetingInfo
    ) -> tuple[dict[str, Any], JoinerKind, str] | None:
        """Who a browser joining `meeting` by its SIP address is, for the lobby: a signed-in user of the meeting's
        tenant is a user, anyone else a guest under the grant's name (None: answered 403, no grant)."""
        grant = self.grant_of(handle)
        identity = self.caller(handle)
        if grant is None or identity is None:
            handle.respond(403, "Forbidden")
            return None
        if grant.user_id is not None and grant.tenant_id == meeting.tenant_id:
            return identity, JoinerKind.USER, grant.user_id
        ident = identity.get("user") or identity.get("guest")
        return {"@odata.type": "#microsoft.graph.identitySet", "guest": ident}, JoinerKind.GUEST, ""
