"""The SIP endpoint: transports, the transaction layer, dialogs and one timer, offered to a transaction user.

Owns: wiring bytes from the transports through `parse` into the `TransactionLayer` and carrying out its actions;
the one `loop.call_at` timer re-armed to the layer's earliest deadline; the top Via of what we send (sent-by,
branch, rport) and received/rport on what we receive (RFC 3581); the UAS checks a stack makes before its user
sees a request (stateless answers to malformed requests, 501/405, 505, 420, 481, 500 for out-of-order CSeq);
CANCEL handling (200 + 487); dialog creation and removal; the client side (`request`, provisional callbacks,
CANCEL, ACK for 2xx, forked 2xx); rate-limited error answers so that garbage never grows memory.
Must not: decide call policy (that is the `on_request` handler's job), touch media or SDP, resolve SRV/NAPTR,
or let hostile input raise into the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from opencomms.domain.fsm import IllegalTransition
from opencomms.sip.dialog import TARGET_REFRESH, Dialog, DialogError, DialogState, DialogTable
from opencomms.sip.early import early_answer
from opencomms.sip.headers import HeaderError, NameAddr, Via
from opencomms.sip.message import (
    DEFAULT_LIMITS,
    DIALOG_CREATING,
    KNOWN_METHODS,
    HeaderItems,
    ParseLimits,
    SipParseError,
    SipRequest,
    SipResponse,
    build_cancel,
    build_request,
    error_response,
    make_response,
    new_call_id,
    new_tag,
    parse,
    read_head,
)
from opencomms.sip.transaction import (
    AckReceived,
    AckTimeout,
    Action,
    Deliver,
    Destination,
    NewRequest,
    Send,
    StrayResponse,
    Terminated,
    Timeout,
    TimerConfig,
    TransactionLayer,
    TransportFailed,
    TxKey,
    new_branch,
    response_destination,
    server_key,
)
from opencomms.sip.transport import FramingError, TcpTransport, UdpTransport, listen_same_port
from opencomms.sip.uri import SipUri, Uri, parse_uri

log = logging.getLogger("opencomms.sip")

Addr = tuple[str, int]
RequestHandler = Callable[["ServerTransactionHandle", SipRequest, Addr], None]
ProvisionalHandler = Callable[[SipResponse], None]
AdmitHook = Callable[[SipRequest, Addr], "tuple[int, HeaderItems] | None"]
"""Asked before a new out-of-dialog INVITE starts a transaction: None lets it in; (status, headers) refuses it
with a stateless answer (RFC 3261 §8.2.7; e.g. 503 + Retry-After under overload): no transaction, no
retransmission, no state, so a flood costs one datagram out per datagram in."""
EarlyAdmitHook = Callable[[str], "tuple[int, HeaderItems] | None"]
"""Asked with the source host before a datagram or frame that starts with `INVITE ` is parsed: a refusal is sent
from the raw bytes (`sip.early`) when the INVITE is a new one, without parsing it (a flood's cheapest path)."""

DEFAULT_METHODS = frozenset(
    {"INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO", "UPDATE", "REFER", "NOTIFY", "MESSAGE", "SUBSCRIBE"}
)


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    host: str = "127.0.0.1"
    """Address to bind."""
    udp_port: int | None = 5060
    """UDP port (0: any free port; None: no UDP)."""
    tcp_port: int | None = 5060
    """TCP port (0: any free port; None: no TCP)."""
    advertised_host: str | None = None
    """Host written in Via and Contact (e.g. the public address); default: the bound address."""
    timers: TimerConfig = field(default_factory=TimerConfig)
    limits: ParseLimits = DEFAULT_LIMITS
    trying_delay: float | None = 0.2
    """An INVITE gets 100 Trying after this long if the user has not answered (RFC 3261 §17.2.1)."""
    max_transactions: int = 20_000
    """Beyond this, new requests get a stateless 503."""
    max_tcp_connections: int = 1024
    max_tcp_write_buffer: int = 1 << 20
    tcp_connect_timeout: float = 5.0
    tcp_idle_timeout: float = 300.0
    """Seconds a TCP connection may stay silent (no bytes either way) before it is closed, unless a confirmed
    dialog's peer is that address (0: never)."""
    user_agent: str | None = "opencomms"
    allowed_methods: frozenset[str] = DEFAULT_METHODS
    supported: frozenset[str] = frozenset()
    """Option tags we implement; a request that Requires anything else gets 420 (RFC 3261 §8.2.2.3)."""
    resolve_timeout: float = 2.0
    """Seconds a next hop's host name (Contact, Record-Route, Request-URI, maddr) may take to resolve; beyond,
    `resolve` raises OSError as for an unknown name."""
    error_rate: float = 20.0
    """Stateless error answers per second and source address (beyond: dropped), with `error_burst`."""
    error_burst: float = 40.0


class _RateLimiter:
    """Token buckets per key, in a bounded LRU (memory does not grow with the number of sources)."""

    def __init__(self, rate: float, burst: float, max_keys: int = 4096) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, key: str, now: float) -> bool:
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return allowed


def _same_host(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a.lower() == b.lower()


def _host_for_uri(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _safe_call(callback: Callable[..., object], *args: object) -> None:
    try:
        callback(*args)
    except Exception:
        log.exception("SIP transaction-user callback failed")


class ServerTransactionHandle:
    """What the transaction user gets for an incoming request: answer it with `respond`."""

    def __init__(self, endpoint: SipEndpoint, key: TxKey, request: SipRequest, source: Destination) -> None:
        self._endpoint = endpoint
        self.key = key
        self.request = request
        self.source = source
        self.dialog: Dialog | None = None
        """The dialog the request belongs to (in-dialog requests) or created (INVITE after a 101-299)."""
        self.final_response: SipResponse | None = None
        self.cancelled = False
        self.on_cancel: Callable[[], None] | None = None
        """Called when a CANCEL arrives for this INVITE (the endpoint has already answered 487)."""
        self.on_ack: Callable[[SipRequest], None] | None = None
        """Called with the ACK for our 2xx (it may carry the SDP answer)."""
        self.on_ack_timeout: Callable[[], None] | None = None
        """Called when our 2xx was never acknowledged; if unset the endpoint sends BYE itself."""
        self.awaiting_ack = False
        self._created_dialog = False
        existing = request.headers.get("To")
        tag: str | None = None
        with contextlib.suppress(HeaderError):
            tag = request.to.tag if existing else None
        self._to_tag = tag or new_tag()

    @property
    def to_tag(self) -> str:
        """Our tag for the To header of every response of this transaction (except 100)."""
        return self._to_tag

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def responded(self) -> bool:
        return self.final_response is not None

    def respond(
        self,
        status: int,
        reason: str | None = None,
        *,
        headers: HeaderItems = (),
        body: bytes = b"",
        content_type: str | None = None,
        contact: NameAddr | None = None,
    ) -> SipResponse | None:
        """Send a response. Returns it, or None when the transaction can no longer take it (a final response
        was already sent, e.g. 487 after a CANCEL). 101-299 to INVITE/SUBSCRIBE/REFER and 2xx to target refreshes
        get our Contact unless `contact` or a Contact header is given; an INVITE's 101-299 creates the dialog."""
        return self._endpoint._respond(self, status, reason, headers, body, content_type, contact)


class ClientTransactionHandle:
    """A request in flight: `await handle` (or `wait()`) for the final response; `cancel()` for an INVITE.
    Timeouts resolve as a local 408 (`timed_out`), unreachable peers as a local 503 (`transport_failed`)."""

    def __init__(
        self,
        endpoint: SipEndpoint,
        request: SipRequest,
        dest: Destination,
        key: TxKey,
        on_provisional: ProvisionalHandler | None,
    ) -> None:
        self._endpoint = endpoint
        self.request = request
        self.destination = dest
        self.key = key
        self.on_provisional = on_provisional
        self.provisional: SipResponse | None = None
        self.response: SipResponse | None = None
        self.dialog: Dialog | None = None
        """For an INVITE: the dialog of the answer (early on a 1xx with To tag, confirmed on the 2xx)."""
        self.in_dialog: Dialog | None = None
        """For a request sent with `send_in_dialog`: that dialog."""
        self.timed_out = False
        self.transport_failed = False
        self._early: dict[str, Dialog] = {}
        self._cancel_requested = False
        self._cancel_sent = False
        self._future: asyncio.Future[SipResponse] = asyncio.get_running_loop().create_future()

    def done(self) -> bool:
        return self._future.done()

    async def wait(self) -> SipResponse:
        return await asyncio.shield(self._future)

    def __await__(self) -> Generator[Any, None, SipResponse]:
        return self.wait().__await__()

    def cancel(self) -> None:
        """CANCEL a pending INVITE (RFC 3261 §9.1): sent once a provisional response has arrived."""
        if self.request.method != "INVITE" or self._future.done() or self._cancel_requested:
            return
        self._cancel_requested = True
        if self.provisional is not None:
            self._endpoint._send_cancel(self)


class SipEndpoint:
    """One SIP user agent core on UDP and/or TCP. Sans-I/O layers inside; asyncio only at the edges."""

    def __init__(self, config: EndpointConfig | None = None, *, on_request: RequestHandler | None = None) -> None:
        self.config = config or EndpointConfig()
        self.on_request = on_request
        self.admit: AdmitHook | None = None
        """Admission control for new INVITEs (see AdmitHook); None admits everything."""
        self.admit_early: EarlyAdmitHook | None = None
        """Early refusal of new INVITEs by source, before parsing (see EarlyAdmitHook)."""
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
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at: float | None = None
        self._client: dict[TxKey, ClientTransactionHandle] = {}
        self._server: dict[TxKey, ServerTransactionHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._limiter = _RateLimiter(self.config.error_rate, self.config.error_burst)
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

    def local_port(self, transport: str = "udp") -> int:
        t = self.udp if transport == "udp" else self.tcp
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
        return SipUri(_host_for_uri(self.advertised_host), user, None, self.local_port(transport), params)

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
        from opencomms.sip.headers import parse_name_addr

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
            _host_for_uri(self.advertised_host),
            self.local_port(dest.transport),
            (("branch", new_branch()), ("rport", None)),
        )
        request.headers.remove("Via")
        request.headers.add_first("Via", str(via))
        request.headers.set_default("Max-Forwards", "70")
        if self.config.user_agent:
            request.headers.set_default("User-Agent", self.config.user_agent)

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
        target = dest or await self.resolve(dialog.next_hop(), dialog.transport or "udp")
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
        target = dest or await self.resolve(dialog.next_hop(), dialog.transport or "udp")
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

    async def resolve(self, uri: Uri, default_transport: str = "udp") -> Destination:
        """Next-hop address of a SIP URI: maddr or host, port (default 5060/5061), `transport` parameter.
        Host names are resolved with getaddrinfo (A/AAAA only; no RFC 3263 NAPTR/SRV)."""
        if not isinstance(uri, SipUri):
            raise ValueError(f"cannot route to {uri}")
        transport = uri.transport or ("tcp" if uri.secure else default_transport)
        host = uri.param("maddr") or uri.host_unbracketed
        port = uri.port or (5061 if uri.secure else 5060)
        try:
            return Destination(transport, str(ipaddress.ip_address(host)), port)
        except ValueError:
            pass
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        try:
            async with asyncio.timeout(self.config.resolve_timeout):
                infos = await self.loop.getaddrinfo(host, port, type=kind)
        except TimeoutError:
            raise OSError(f"resolving {host} timed out") from None
        except UnicodeError:  # a host the IDNA codec refuses
            raise OSError(f"cannot resolve {host!r}") from None
        if not infos:
            raise OSError(f"cannot resolve {host}")
        return Destination(transport, str(infos[0][4][0]), port)

    def _send_cancel(self, handle: ClientTransactionHandle) -> None:
        if handle._cancel_sent or handle.done():
            return
        handle._cancel_sent = True
        cancel = build_cancel(handle.request)
        now = self._now()
        _, actions = self.layer.send_request(cancel, handle.destination, now)
        self.layer.arm_timeout(handle.key, now + self.config.timers.b)
        self._run(actions)

    # -- input from transports

    def _on_bytes(self, data: bytes, source: Destination) -> None:
        try:
            self.stats["received"] += 1
            if not data.strip(b"\r\n"):
                return  # keep-alive
            if self.admit_early is not None and data.startswith(b"INVITE ") and self._refused_early(data, source):
                return
            try:
                message = parse(data, self.config.limits, stream=source.reliable)
            except SipParseError as err:
                self._answer_parse_error(err, source)
                return
            if isinstance(message, SipRequest):
                self._fix_via(message, source)
                if self.admit is not None and message.method == "INVITE" and self._refused(message, source):
                    return
            elif message.headers.count("Via") != 1:
                return  # RFC 3261 §8.1.3.3: not for us
            self._run(self.layer.receive(message, source, self._now()))
        except Exception:
            self.stats["handler_errors"] += 1
            log.exception("SIP message handling failed")
        finally:
            self._rearm()

    def _refused(self, request: SipRequest, source: Destination) -> bool:
        """Whether the `admit` hook refused this new INVITE (then answered here, statelessly)."""
        if self.admit is None or request.to.tag is not None:
            return False
        if self.layer.server_transaction(server_key(request)) is not None:
            return False  # a retransmission of an INVITE let in before
        verdict = self.admit(request, source.addr)
        if verdict is None:
            return False
        status, headers = verdict
        response = make_response(request, status, to_tag=new_tag(), headers=headers)
        if self.config.user_agent:
            response.headers.set_default("Server", self.config.user_agent)
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

    def _fix_via(self, request: SipRequest, source: Destination) -> None:
        """RFC 3261 §18.2.1 received, RFC 3581 rport."""
        via = request.top_via
        fixed = via
        if via.wants_rport or not _same_host(via.host_unbracketed, source.host):
            fixed = fixed.with_param("received", source.host)
        if via.wants_rport:
            fixed = fixed.with_param("rport", str(source.port))
        if fixed is not via:
            request.set_top_via(fixed)

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
        if method not in self.config.allowed_methods:
            allow = ", ".join(sorted(self.config.allowed_methods))
            status = 405 if method in KNOWN_METHODS else 501
            handle.respond(status, headers=[("Allow", allow)])
            return
        unsupported = [tag for tag in request.require if tag not in self.config.supported]
        if unsupported:
            handle.respond(420, headers=[("Unsupported", ", ".join(unsupported))])
            return
        if request.to.tag is not None:
            dialog = self.dialogs.for_request(request)
            if dialog is None:
                handle.respond(481)
                return
            rejection = dialog.receive_request(request)
            if rejection is not None:
                handle.respond(rejection)
                return
            handle.dialog = dialog
        elif method == "INVITE" and not request.contacts:
            handle.respond(400, "Missing Contact")
            return
        if self.on_request is None:
            self._default_answer(handle)
            return
        try:
            self.on_request(handle, request, action.source.addr)
        except Exception:
            self.stats["handler_errors"] += 1
            log.exception("SIP on_request handler failed")
            if not handle.responded:
                handle.respond(500)

    def _default_answer(self, handle: ServerTransactionHandle) -> None:
        if handle.method == "OPTIONS":
            handle.respond(200, headers=[("Allow", ", ".join(sorted(self.config.allowed_methods)))])
        elif handle.method == "BYE" and handle.dialog is not None:
            handle.respond(200)
        else:
            handle.respond(480)

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
        wants_contact = (request.method in DIALOG_CREATING and 100 < status < 300) or (
            request.method in TARGET_REFRESH and 200 <= status < 300
        )
        if wants_contact and "Contact" not in response.headers:
            uri = contact or NameAddr(self.contact_uri(handle.source.transport))
            response.headers.add("Contact", str(uri))
        try:
            actions = self.layer.respond(handle.key, response, self._now())
        except (KeyError, IllegalTransition):
            return None
        if status >= 200:
            handle.final_response = response
        self._uas_dialog(handle, response)
        if request.method == "INVITE" and response.is_success:
            handle.awaiting_ack = True
        self._run(actions)
        return response

    def _uas_dialog(self, handle: ServerTransactionHandle, response: SipResponse) -> None:
        request = handle.request
        dialog = handle.dialog
        status = response.status
        if request.method == "INVITE" and dialog is None and 100 < status < 300:
            try:
                dialog = self.dialogs.add(Dialog.from_uas(request, response))
            except (DialogError, HeaderError) as exc:
                log.debug("SIP no dialog from %s: %s", status, exc)
                return
            dialog.transport = handle.source.transport
            dialog.peer = handle.source.addr
            handle.dialog = dialog
            handle._created_dialog = True
        if dialog is None:
            return
        if handle._created_dialog:
            if response.is_success:
                dialog.state = DialogState.CONFIRMED
            elif status >= 300:
                dialog.terminate()
                self.dialogs.remove(dialog)
        if request.method == "BYE" and status >= 200:
            dialog.terminate()
            self.dialogs.remove(dialog)

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
                self._early_dialog(handle, response)
            if handle._cancel_requested:
                self._send_cancel(handle)
            if handle.on_provisional is not None:
                _safe_call(handle.on_provisional, response)
            return
        if handle.done():
            first = handle.response
            forked = is_invite and response.is_success and first is not None and response.to.tag != first.to.tag
            if forked and not self.layer.acked(response):
                self._spawn(self._reject_fork(handle.request, response, handle.destination))
            return
        self._client_final(handle, response)

    def _early_dialog(self, handle: ClientTransactionHandle, response: SipResponse) -> None:
        tag = response.to.tag
        if tag is None or tag in handle._early:
            return
        try:
            dialog = Dialog.from_uac(handle.request, response)
        except (DialogError, HeaderError):
            return
        dialog.transport = handle.destination.transport
        dialog.peer = handle.destination.addr
        handle._early[tag] = self.dialogs.add(dialog)

    def _client_final(self, handle: ClientTransactionHandle, response: SipResponse) -> None:
        if handle.done():
            return
        handle.response = response
        if handle.request.method == "INVITE" and handle.in_dialog is None:
            tag = response.to.tag if response.is_success else None
            for early_tag, early in handle._early.items():
                if early_tag != tag:
                    early.terminate()
                    self.dialogs.remove(early)
            if response.is_success and tag is not None:
                dialog = handle._early.get(tag)
                try:
                    if dialog is None:
                        dialog = Dialog.from_uac(handle.request, response)
                        dialog.transport = handle.destination.transport
                        dialog.peer = handle.destination.addr
                        dialog = self.dialogs.add(dialog)
                    else:
                        dialog.confirm(response)
                    handle.dialog = dialog
                except (DialogError, HeaderError) as exc:
                    log.debug("SIP 2xx without usable dialog: %s", exc)
        dialog = handle.in_dialog
        if dialog is not None:
            dialog.on_response(handle.request, response)
            if response.status in (408, 481) or dialog.state is DialogState.TERMINATED:
                dialog.terminate()
                self.dialogs.remove(dialog)
        handle._future.set_result(response)

    async def _reject_fork(self, invite: SipRequest, response: SipResponse, dest: Destination) -> None:
        """A second 2xx from another fork: acknowledge it and end that dialog (we keep the first answer)."""
        try:
            dialog = Dialog.from_uac(invite, response)
        except (DialogError, HeaderError):
            return
        dialog.transport = dest.transport
        dialog.peer = dest.addr
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
