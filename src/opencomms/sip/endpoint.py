"""The SIP endpoint: the thin asyncio skin that wires transports, the transaction layer, dialogs and one timer for
a transaction user.

Owns: bytes from the transports through `parse` into the `TransactionLayer` and carrying out its actions; the one
`loop.call_at` timer re-armed to the layer's earliest deadline; the top Via of what we send (sent-by, branch,
rport); carrying out the verdicts of `screening` (UAS checks, received/rport, admission refusals, response
checks); CANCEL handling (200 + 487); dialog creation and removal; the client side (`request`, provisional
callbacks, CANCEL, ACK for 2xx, forked 2xx); rate-limited error answers so that garbage never grows memory.
Must not: decide call policy (that is the `on_request` handler's job), hold protocol rules that can be decided
without I/O (they belong in the sans-I/O modules), touch media or SDP, or let hostile input raise into the event
loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from opencomms.domain.fsm import IllegalTransition
from opencomms.ratelimit import KeyedTokenBucket
from opencomms.sip.builders import build_cancel, build_request, error_response, make_response, new_call_id, new_tag
from opencomms.sip.destination import Destination, response_destination
from opencomms.sip.dialog import Dialog, DialogState, DialogTable
from opencomms.sip.early import early_answer
from opencomms.sip.endpoint_config import (
    Addr,
    AdmitHook,
    EarlyAdmitHook,
    EndpointConfig,
    ProvisionalHandler,
    RequestHandler,
)
from opencomms.sip.handles import ClientTransactionHandle, ServerTransactionHandle
from opencomms.sip.headers import NameAddr, Via, parse_name_addr
from opencomms.sip.message import DIALOG_CREATING, HeaderItems, SipRequest, SipResponse
from opencomms.sip.parser import SipParseError, parse, read_head
from opencomms.sip.resolver import resolve
from opencomms.sip.screening import (
    Admitted,
    accepts_response,
    default_answer,
    fix_via,
    forked_2xx,
    host_for_uri,
    is_keepalive,
    needs_admission,
    refusal,
    screen_request,
    wants_contact,
)
from opencomms.sip.transactions import (
    AckReceived,
    AckTimeout,
    Action,
    Deliver,
    NewRequest,
    Send,
    StrayResponse,
    Terminated,
    Timeout,
    TransactionLayer,
    TransportFailed,
    TxKey,
    new_branch,
)
from opencomms.sip.transport import FramingError, TcpTransport, UdpTransport, listen_same_port
from opencomms.sip.ua_dialogs import (
    after_in_dialog_response,
    after_uas_response,
    early_dialog,
    final_dialog,
    fork_dialog,
)
from opencomms.sip.uri import SipUri, Uri, parse_uri
from opencomms.sip.websocket import WS_TRANSPORTS, WsTransport

__all__ = ["SipEndpoint"]

log = logging.getLogger("opencomms.sip")

MessageObserver = Callable[[bool, str, int], None]
"""(sent, method, status) of one SIP message; status 0 for a request. See `SipEndpoint.on_message`."""


def _safe_call(callback: Callable[..., object], *args: object) -> None:
    try:
        callback(*args)
    except Exception:
        log.exception("SIP transaction-user callback failed")


class SipEndpoint:
    """One SIP user agent core on UDP and/or TCP. Sans-I/O layers inside; asyncio only at the edges."""

    def __init__(self, config: EndpointConfig | None = None, *, on_request: RequestHandler | None = None) -> None:
        self.config = config or EndpointConfig()
        self.on_request = on_request
        self.admit: AdmitHook | None = None
        """Admission control for new INVITEs (see AdmitHook); None admits everything."""
        self.admit_early: EarlyAdmitHook | None = None
        """Early refusal of new INVITEs by source, before parsing (see EarlyAdmitHook)."""
        self.on_message: MessageObserver | None = None
        """Observer of each message parsed in and each request or response sent first time (not retransmissions):
        (sent, method, status; 0 for a request). The node's metrics count them; None: nobody."""
        self.on_sip: Callable[[bool, SipRequest | SipResponse], None] | None = None
        """Observer of the same messages as `on_message`, whole (the console's call timelines); None: nobody."""
        self.dialogs = DialogTable()
        self.layer = TransactionLayer(
            self.config.timers,
            trying_delay=self.config.trying_delay,
            max_transactions=self.config.max_transactions,
        )
        self.stats: dict[str, int] = {
            "received": 0,
            "parse_errors": 0,
            "error_responses": 0,
            "rate_limited": 0,
            "handler_errors": 0,
            "refused": 0,
            "refused_early": 0,
        }
        self.udp: UdpTransport | None = None
        self.tcp: TcpTransport | None = None
        self.ws: WsTransport | None = None
        """SIP over WebSocket (RFC 7118): connections an HTTP edge accepted and attached (`enable_websocket`)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at: float | None = None
        self._client: dict[TxKey, ClientTransactionHandle] = {}
        self._server: dict[TxKey, ServerTransactionHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._limiter = KeyedTokenBucket(self.config.error_rate, self.config.error_burst, max_keys=4096)
        self._closed = False

    # -- lifecycle

    async def start(self) -> None:
        """Bind the transports; with both ports 0, UDP and TCP share one free port number (`listen_same_port`)."""
        self._loop = asyncio.get_running_loop()
        cfg = self.config
        if cfg.udp_port is not None:
            self.udp = UdpTransport(self._on_bytes)
        if cfg.tcp_port is not None:
            self.tcp = TcpTransport(
                self._on_bytes,
                self._on_frame_error,
                self._on_transport_failure,
                cfg.limits,
                max_connections=cfg.max_tcp_connections,
                max_write_buffer=cfg.max_tcp_write_buffer,
                connect_timeout=cfg.tcp_connect_timeout,
                idle_timeout=cfg.tcp_idle_timeout or None,
                in_use=self._connection_in_use,
            )
        if self.udp is not None and self.tcp is not None and cfg.udp_port == 0 and cfg.tcp_port == 0:
            await listen_same_port(self.udp, self.tcp, cfg.host)
            return
        if self.udp is not None and cfg.udp_port is not None:
            await self.udp.listen(cfg.host, cfg.udp_port)
        if self.tcp is not None and cfg.tcp_port is not None:
            await self.tcp.listen(cfg.host, cfg.tcp_port)

    def enable_websocket(self, *, max_connections: int = 1024) -> WsTransport:
        """The WebSocket transport (created once): its connections are attached by the edge that serves them."""
        if self.ws is None:
            self.ws = WsTransport(self._on_bytes, max_connections=max_connections)
        return self.ws

    async def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in list(self._tasks):
            task.cancel()
        for handle in self._client.values():
            if not handle._future.done():
                handle._future.cancel()
        if self.udp is not None:
            self.udp.close()
        if self.tcp is not None:
            await self.tcp.close()

    async def __aenter__(self) -> SipEndpoint:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("SipEndpoint.start() has not run")
        return self._loop

    def _now(self) -> float:
        return self.loop.time()

    def _connection_in_use(self, addr: Addr) -> bool:
        """Whether a TCP connection from `addr` carries a confirmed dialog (kept however long it is silent)."""
        return any(d.peer == addr and d.state is DialogState.CONFIRMED for d in self.dialogs)

    # -- addresses

    def listening(self) -> dict[str, bool]:
        """Whether each configured transport's listener is open (for /readyz)."""
        return {t.kind: t.listening for t in (self.udp, self.tcp, self.ws) if t is not None}

    def local_port(self, transport: str = "udp") -> int:
        t = self.udp if transport == "udp" else self.ws if transport in WS_TRANSPORTS else self.tcp
        if t is None:
            raise ValueError(f"no {transport} transport")
        return t.local_addr[1]

    @property
    def advertised_host(self) -> str:
        return self.config.advertised_host or self.config.host

    def destination(self, transport: str = "udp") -> Destination:
        """How a peer on this host reaches this endpoint (handy for tests and local wiring)."""
        return Destination(transport, self.advertised_host, self.local_port(transport))

    def contact_uri(self, transport: str = "udp", user: str | None = None) -> SipUri:
        params = (("transport", transport),) if transport != "udp" else ()
        return SipUri(host_for_uri(self.advertised_host), user, None, self.local_port(transport), params)

    # -- building requests

    def new_request(
        self,
        method: str,
        uri: Uri | str,
        *,
        from_: NameAddr | str,
        to: NameAddr | str | None = None,
        transport: str = "udp",
        call_id: str | None = None,
        cseq: int = 1,
        contact_user: str | None = None,
        headers: HeaderItems = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> SipRequest:
        """An out-of-dialog request with a fresh Call-ID and From tag; our Contact for dialog-creating methods."""
        target = parse_uri(uri) if isinstance(uri, str) else uri
        sender = parse_name_addr(from_) if isinstance(from_, str) else from_
        if sender.tag is None:
            sender = sender.with_tag(new_tag())
        recipient = NameAddr(target) if to is None else parse_name_addr(to) if isinstance(to, str) else to
        contact = None
        if method in DIALOG_CREATING or method == "REGISTER":
            contact = NameAddr(self.contact_uri(transport, contact_user))
        return build_request(
            method,
            target,
            from_=sender,
            to=recipient,
            call_id=call_id or new_call_id(),
            cseq=cseq,
            contact=contact,
            headers=headers,
            body=body,
            content_type=content_type,
        )

    def _prepare(self, request: SipRequest, dest: Destination) -> None:
        """Our top Via (the only one: we are a UA) with a new branch and rport; defaults for the rest."""
        via = Via(
            dest.transport.upper(),
            host_for_uri(self.advertised_host),
            self.local_port(dest.transport),
            (("branch", new_branch()), ("rport", None)),
        )
        request.headers.remove("Via")
        request.headers.add_first("Via", str(via))
        request.headers.set_default("Max-Forwards", "70")
        if self.config.user_agent:
            request.headers.set_default("User-Agent", self.config.user_agent)
        if self.on_message is not None:
            self.on_message(True, request.method, 0)
        if self.on_sip is not None:
            self.on_sip(True, request)

    # -- client side

    def send_request(
        self, request: SipRequest, dest: Destination | Addr, *, on_provisional: ProvisionalHandler | None = None
    ) -> ClientTransactionHandle:
        """Start a client transaction (any method but ACK). The top Via is filled in here. A bare (host, port)
        destination means UDP."""
        if not isinstance(dest, Destination):
            dest = Destination("udp", dest[0], dest[1])
        if request.method == "ACK":
            raise ValueError("ACK is not a transaction: use ack() (2xx) — non-2xx ACKs are sent by the transaction")
        self._prepare(request, dest)
        txn, actions = self.layer.send_request(request, dest, self._now())
        handle = ClientTransactionHandle(self, request, dest, txn.key, on_provisional)
        self._client[txn.key] = handle
        self._run(actions)
        return handle

    async def request(
        self, request: SipRequest, dest: Destination | Addr, *, on_provisional: ProvisionalHandler | None = None
    ) -> SipResponse:
        """Send and wait for the final response (timeout -> local 408, unreachable -> local 503)."""
        return await self.send_request(request, dest, on_provisional=on_provisional)

    async def ack(
        self,
        dialog: Dialog,
        *,
        cseq: int | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        headers: HeaderItems = (),
        dest: Destination | None = None,
    ) -> SipRequest:
        """ACK a 2xx to our (re-)INVITE in `dialog` (stateless; re-sent if that 2xx is retransmitted)."""
        ack = dialog.create_ack(cseq, body=body, content_type=content_type, headers=headers)
        target = dest or await self._next_hop(dialog)
        self._prepare(ack, target)
        self._run(self.layer.send_ack(ack, target, self._now()))
        return ack

    async def send_in_dialog(
        self,
        dialog: Dialog,
        request: SipRequest,
        *,
        on_provisional: ProvisionalHandler | None = None,
        dest: Destination | None = None,
    ) -> ClientTransactionHandle:
        """Send a request built by `dialog` (bye(), reinvite(), refer(), notify(), info(), options(), ...).
        The dialog follows the answer: target refresh on 2xx, removal after BYE or a 408/481."""
        target = dest or await self._next_hop(dialog)
        handle = self.send_request(request, target, on_provisional=on_provisional)
        handle.in_dialog = dialog
        return handle

    async def request_in_dialog(
        self,
        dialog: Dialog,
        request: SipRequest,
        *,
        on_provisional: ProvisionalHandler | None = None,
        dest: Destination | None = None,
    ) -> SipResponse:
        handle = await self.send_in_dialog(dialog, request, on_provisional=on_provisional, dest=dest)
        return await handle

    async def bye(self, dialog: Dialog) -> SipResponse:
        """End a confirmed dialog (BYE) and forget it."""
        return await self.request_in_dialog(dialog, dialog.bye())

    async def _next_hop(self, dialog: Dialog) -> Destination:
        """Where an in-dialog request goes: over a WebSocket dialog's connection (its Contact names a `.invalid`
        host, RFC 7118 §5.2), else the resolved remote target or route."""
        if dialog.transport in WS_TRANSPORTS and dialog.peer is not None:
            return Destination(dialog.transport, *dialog.peer)
        return await self.resolve(dialog.next_hop(), dialog.transport or "udp")

    async def resolve(self, uri: Uri, default_transport: str = "udp") -> Destination:
        """Next-hop address of a SIP URI: maddr or host, port (default 5060/5061), `transport` parameter.
        Host names are resolved with getaddrinfo (A/AAAA only; no RFC 3263 NAPTR/SRV), within `resolve_timeout`."""
        return await resolve(uri, default_transport, loop=self.loop, timeout=self.config.resolve_timeout)

    def _send_cancel(self, handle: ClientTransactionHandle) -> None:
        if handle._cancel_sent or handle.done():
            return
        handle._cancel_sent = True
        cancel = build_cancel(handle.request)
        if self.on_message is not None:
            self.on_message(True, "CANCEL", 0)
        now = self._now()
        _, actions = self.layer.send_request(cancel, handle.destination, now)
        self.layer.arm_timeout(handle.key, now + self.config.timers.b)
        self._run(actions)

    # -- input from transports

    def _on_bytes(self, data: bytes, source: Destination) -> None:
        try:
            self.stats["received"] += 1
            if is_keepalive(data):
                return
            if self.admit_early is not None and data.startswith(b"INVITE ") and self._refused_early(data, source):
                return
            try:
                message = parse(data, self.config.limits, stream=source.transport == "tcp")
            except SipParseError as err:
                self._answer_parse_error(err, source)
                return
            if self.on_message is not None:
                self._observe_in(message)
            if self.on_sip is not None:
                self.on_sip(False, message)
            if isinstance(message, SipRequest):
                fix_via(message, source)
                if self.admit is not None and message.method == "INVITE" and self._refused(message, source):
                    return
            elif not accepts_response(message):
                return
            self._run(self.layer.receive(message, source, self._now()))
        except Exception:
            self.stats["handler_errors"] += 1
            log.exception("SIP message handling failed")
        finally:
            self._rearm()

    def _observe_in(self, message: SipRequest | SipResponse) -> None:
        assert self.on_message is not None
        if isinstance(message, SipRequest):
            self.on_message(False, message.method, 0)
        else:
            try:
                method = message.cseq.method
            except Exception:  # a response without a usable CSeq: the transaction layer drops it anyway
                method = ""
            self.on_message(False, method, message.status)

    def _refused(self, request: SipRequest, source: Destination) -> bool:
        """Whether the `admit` hook refused this new INVITE (then answered here, statelessly)."""
        if self.admit is None or not needs_admission(request, self.layer):
            return False
        verdict = self.admit(request, source.addr)
        if verdict is None:
            return False
        status, headers = verdict
        response = refusal(request, status, headers, new_tag(), self.config.user_agent)
        self.stats["refused"] += 1
        self._send(response.serialize(), response_destination(request, source))
        return True

    def _refused_early(self, data: bytes, source: Destination) -> bool:
        """Whether `admit_early` refused this INVITE's source and it was answered from its raw bytes."""
        assert self.admit_early is not None
        verdict = self.admit_early(source.host)
        answer = None if verdict is None else early_answer(data, source, verdict, self.layer, self.config.user_agent)
        if answer is None:
            return False
        self.stats["refused"] += 1
        self.stats["refused_early"] += 1
        self._send(*answer)
        return True

    def _on_frame_error(self, error: FramingError, source: Destination) -> None:
        try:
            if not error.head:
                self.stats["parse_errors"] += 1
                return
            line, headers = read_head(error.head, self.config.limits)
            self._answer_parse_error(SipParseError(error.status, error.reason, line, headers), source)
        except Exception:
            log.exception("SIP framing error handling failed")

    def _answer_parse_error(self, err: SipParseError, source: Destination) -> None:
        self.stats["parse_errors"] += 1
        response = error_response(err, new_tag())
        if response is None:
            return
        if not self._limiter.allow(source.host, self._now()):
            self.stats["rate_limited"] += 1
            return
        self.stats["error_responses"] += 1
        self._send(response.serialize(), source)

    def _on_transport_failure(self, dest: Destination) -> None:
        try:
            self._run(self.layer.transport_error(dest, self._now()))
        except Exception:
            log.exception("SIP transport failure handling failed")
        finally:
            self._rearm()

    # -- output

    def _send(self, data: bytes, dest: Destination) -> None:
        if dest.transport == "udp" and self.udp is not None:
            self.udp.send(data, dest.addr)
        elif dest.transport == "tcp" and self.tcp is not None:
            self.tcp.send(data, dest.addr)
        elif dest.transport in WS_TRANSPORTS and self.ws is not None and self.ws.send(data, dest.addr):
            pass
        else:
            self.loop.call_soon(self._on_transport_failure, dest)

    def _run(self, actions: list[Action]) -> None:
        for action in actions:
            try:
                self._dispatch(action)
            except Exception:
                self.stats["handler_errors"] += 1
                log.exception("SIP action %s failed", type(action).__name__)
        self._rearm()

    def _dispatch(self, action: Action) -> None:
        if isinstance(action, Send):
            self._send(action.data, action.dest)
        elif isinstance(action, NewRequest):
            self._new_request(action)
        elif isinstance(action, Deliver):
            client = self._client.get(action.key)
            if client is not None:
                self._client_response(client, action.response)
        elif isinstance(action, Timeout):
            client = self._client.get(action.key)
            if client is not None:
                client.timed_out = True
                self._client_final(client, make_response(client.request, 408))
        elif isinstance(action, TransportFailed):
            client = self._client.get(action.key)
            if client is not None:
                client.transport_failed = True
                self._client_final(client, make_response(client.request, 503))
        elif isinstance(action, Terminated):
            self._client.pop(action.key, None)
            server = self._server.get(action.key)
            if server is not None and not server.awaiting_ack:
                del self._server[action.key]
        elif isinstance(action, AckReceived):
            self._ack_received(action)
        elif isinstance(action, AckTimeout):
            self._ack_timeout(action.key)
        elif isinstance(action, StrayResponse):
            log.debug("SIP stray response %s %s", action.response.status, action.response.cseq)

    # -- timer

    def _rearm(self) -> None:
        if self._closed or self._loop is None:
            return
        deadline = self.layer.next_deadline()
        if deadline == self._armed_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._armed_at = deadline
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        scheduled = self._armed_at
        self._timer = None
        self._armed_at = None
        try:
            now = max(self._now(), scheduled or 0.0)
            self._run(self.layer.on_timer(now))
        except Exception:
            log.exception("SIP timer handling failed")
        finally:
            self._rearm()

    # -- server side

    def _new_request(self, action: NewRequest) -> None:
        request = action.request
        handle = ServerTransactionHandle(self, action.key, request, action.source)
        self._server[action.key] = handle
        method = request.method
        if method == "CANCEL":
            self._cancel_received(handle)
            return
        cfg = self.config
        verdict = screen_request(request, self.dialogs, allowed_methods=cfg.allowed_methods, supported=cfg.supported)
        if not isinstance(verdict, Admitted):
            handle.respond(verdict.status, verdict.reason, headers=verdict.headers)
            return
        handle.dialog = verdict.dialog
        if self.on_request is None:
            answer = default_answer(method, handle.dialog, cfg.allowed_methods)
            handle.respond(answer.status, headers=answer.headers)
            return
        try:
            self.on_request(handle, request, action.source.addr)
        except Exception:
            self.stats["handler_errors"] += 1
            log.exception("SIP on_request handler failed")
            if not handle.responded:
                handle.respond(500)

    def _cancel_received(self, handle: ServerTransactionHandle) -> None:
        ist = self.layer.invite_for_cancel(handle.request)
        invite = self._server.get(ist.key) if ist is not None else None
        if ist is None or invite is None:
            handle.respond(481)
            return
        handle._to_tag = invite.to_tag
        handle.respond(200)
        if invite.final_response is None:
            invite.cancelled = True
            invite.respond(487)
            if invite.on_cancel is not None:
                _safe_call(invite.on_cancel)

    def _respond(
        self,
        handle: ServerTransactionHandle,
        status: int,
        reason: str | None,
        headers: HeaderItems,
        body: bytes,
        content_type: str | None,
        contact: NameAddr | None,
    ) -> SipResponse | None:
        if handle.final_response is not None:
            return None
        txn = self.layer.server_transaction(handle.key)
        if txn is None or not txn.can_respond(status):
            return None
        request = handle.request
        response = make_response(
            request, status, reason, to_tag=handle.to_tag, headers=headers, body=body, content_type=content_type
        )
        if self.config.user_agent:
            response.headers.set_default("Server", self.config.user_agent)
        if wants_contact(request.method, status) and "Contact" not in response.headers:
            uri = contact or NameAddr(self.contact_uri(handle.source.transport))
            response.headers.add("Contact", str(uri))
        try:
            actions = self.layer.respond(handle.key, response, self._now())
        except (KeyError, IllegalTransition):
            return None
        if status >= 200:
            handle.final_response = response
        if self.on_message is not None:
            self.on_message(True, request.method, status)
        if self.on_sip is not None:
            self.on_sip(True, response)
        self._uas_dialog(handle, response)
        if request.method == "INVITE" and response.is_success:
            handle.awaiting_ack = True
        self._run(actions)
        return response

    def _uas_dialog(self, handle: ServerTransactionHandle, response: SipResponse) -> None:
        handle.dialog, handle._created_dialog = after_uas_response(
            self.dialogs, handle.request, response, handle.dialog, handle._created_dialog, handle.source
        )

    def _ack_received(self, action: AckReceived) -> None:
        handle = self._server.get(action.key) if action.key is not None else None
        if handle is None:
            return
        handle.awaiting_ack = False
        self._forget_server(handle)
        if handle.on_ack is not None:
            _safe_call(handle.on_ack, action.request)

    def _ack_timeout(self, key: TxKey) -> None:
        handle = self._server.get(key)
        if handle is None:
            return
        handle.awaiting_ack = False
        self._forget_server(handle)
        if handle.on_ack_timeout is not None:
            _safe_call(handle.on_ack_timeout)
        elif handle.dialog is not None and handle.dialog in self.dialogs:
            self._spawn(self.bye(handle.dialog))

    def _forget_server(self, handle: ServerTransactionHandle) -> None:
        if self.layer.server_transaction(handle.key) is None:
            self._server.pop(handle.key, None)

    # -- client responses

    def _client_response(self, handle: ClientTransactionHandle, response: SipResponse) -> None:
        is_invite = handle.request.method == "INVITE"
        if response.is_provisional:
            if handle.done():
                return
            handle.provisional = response
            if is_invite and response.status > 100:
                early_dialog(self.dialogs, handle._early, handle.request, response, handle.destination)
            if handle._cancel_requested:
                self._send_cancel(handle)
            if handle.on_provisional is not None:
                _safe_call(handle.on_provisional, response)
            return
        if handle.done():
            if forked_2xx(handle.request, handle.response, response) and not self.layer.acked(response):
                self._spawn(self._reject_fork(handle.request, response, handle.destination))
            return
        self._client_final(handle, response)

    def _client_final(self, handle: ClientTransactionHandle, response: SipResponse) -> None:
        if handle.done():
            return
        handle.response = response
        if handle.request.method == "INVITE" and handle.in_dialog is None:
            handle.dialog = final_dialog(self.dialogs, handle._early, handle.request, response, handle.destination)
        if handle.in_dialog is not None:
            after_in_dialog_response(self.dialogs, handle.in_dialog, handle.request, response)
        handle._future.set_result(response)

    async def _reject_fork(self, invite: SipRequest, response: SipResponse, dest: Destination) -> None:
        """A second 2xx from another fork: acknowledge it and end that dialog (we keep the first answer)."""
        dialog = fork_dialog(invite, response, dest)
        if dialog is None:
            return
        await self.ack(dialog)
        await self.request_in_dialog(dialog, dialog.bye())

    def _spawn(self, coro: Awaitable[Any]) -> None:
        async def runner() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("SIP background task failed")

        task = self.loop.create_task(runner())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
