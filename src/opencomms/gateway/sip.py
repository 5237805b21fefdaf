"""SipGateway: phones on SIP become external call legs, bots hear and speak to them through the media engine.

Owns the node's SipEndpoint, the RTP sessions and the mapping between SIP dialogs and external legs. Inbound:
an INVITE to a number or SIP URI of an application instance rings its bot (`CallService.accept_inbound`); the
phone hears 180 until the bot answers, then 200 with our SDP answer; BYE, CANCEL and media timeouts end the
leg. Outbound: a bot's call to a phone number goes out through the configured trunk (digest credentials, 3xx
followed), a call to a user to the Contact of a softphone that registered for them; both are one `Route` played
by `OutboundInvite` and answered alike (a 200 crossing our CANCEL is ACKed and BYEd, the peer's Allow kept for
REFER transfers, the same failure mapping and call records).
RFC 4733 digits from a phone enter the media engine as key events in the tick they arrive (the RTP bank's
`push_key`), so bots hear of them as they hear in-band DTMF; the other way, DTMF sent by other legs reaches a phone
that negotiated telephone-event as RFC 4733 events, not in-band (the RTP bank and the engine's out-of-band legs).
It is the `Gateway` of `LegKind.SIP` (calling/subscribers.py); it decides nothing about calls itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opencomms.calling.model import Call, JsonObj
from opencomms.calling.records import record_leg
from opencomms.calling.service import CallService
from opencomms.config import SipConfig
from opencomms.directory import Directory
from opencomms.domain import results
from opencomms.domain.ids import new_id
from opencomms.domain.results import ResultInfo
from opencomms.domain.rules import ConversationKind
from opencomms.gateway.admission import Admission, AdmissionConfig
from opencomms.gateway.mapping import caller_identity, failure_for_status, normalize_number, status_for_failure
from opencomms.gateway.media_address import MediaAddresses
from opencomms.gateway.outbound import OutboundInvite, Route, trunk_route
from opencomms.gateway.refer import ReferTransfer, allowed_methods
from opencomms.gateway.register import REGISTRAR_METHODS, Registrations
from opencomms.gateway.softphone import registered_route, user_id_of
from opencomms.gateway.transfer import REFER_FORBIDDEN, can_refer, on_notify, start_refer
from opencomms.rtp import (
    JitterConfig,
    LocalSdp,
    NegotiatedAudio,
    NegotiationError,
    PortAllocator,
    RtpBank,
    RtpSession,
    SdpError,
    StreamBank,
    codecs_named,
)
from opencomms.rtp.address import AddressError
from opencomms.rtp.offer_answer import OPUS
from opencomms.rtp.sdp import SessionDescription
from opencomms.rtp.session import RtpConfig
from opencomms.rtp.stats import CallQuality
from opencomms.sip.destination import Destination
from opencomms.sip.digest_client import DigestClient
from opencomms.sip.endpoint import SipEndpoint
from opencomms.sip.endpoint_config import EndpointConfig
from opencomms.sip.handles import ClientTransactionHandle, ServerTransactionHandle
from opencomms.sip.message import SipRequest, SipResponse
from opencomms.sip.transactions import TimerConfig
from opencomms.sip.uri import SipUri, TelUri
from opencomms.store.base import StoreUnavailable
from opencomms.tasks import TaskSet

log = logging.getLogger("opencomms.sip")

SDP = "application/sdp"
RETRY_AFTER = "5"


@dataclass(eq=False)
class SipCall:
    """One SIP call attached to one external leg."""

    key: str
    rtp: RtpSession
    sdp: LocalSdp
    leg_id: str | None = None
    invite: ServerTransactionHandle | None = None
    outgoing: ClientTransactionHandle | None = None
    answer: bytes = b""
    media: NegotiatedAudio | None = None
    dialog_call_id: str | None = None
    answered: bool = False
    closed: bool = False
    dialing: OutboundInvite | None = None
    """The outgoing INVITE attempt (digest retries, redirects) until its final response."""
    allow: frozenset[str] = frozenset()
    """Methods the peer said it accepts (its Allow header): REFER decides how a transfer is done."""
    refer: ReferTransfer | None = None
    """Our REFER in this dialog (a transfer the peer carries out), if any."""
    transfer_target: JsonObj | None = None
    source: str | None = None
    """Address an inbound call came from: it counts against that source's share (admission) until it ends."""
    driver: Any = None
    """Who speaks for the call while the core has no leg for it yet (the dial-in attendant, gateway/dialin.py):
    the peer's BYE, CANCEL or media loss goes to `driver.gone(sc, reason)` instead of the core."""
    started: bool = False
    """200 OK sent and RTP started before the core had its leg (dial-in): `connected` has nothing left to do."""
    relayed: bool = False
    """A browser's call whose media rtpengine relays (gateway/webrtc.py): its rtpengine side is freed at the end."""


class SipGateway:
    def __init__(
        self,
        config: SipConfig,
        calls: CallService,
        directory: Directory,
        engine: Any,
        *,
        capacity: int = 1024,
    ) -> None:
        self.config = config
        self.calls = calls
        self.directory = directory
        self.engine = engine
        """The EngineThread (`call`, `call_result`)."""
        self.host = config.public_host or config.host
        self.codecs = codecs_named(config.codecs)
        remote = getattr(engine, "rtp_bank", None)  # the media process's bank (`[media] process`)
        self.bank: StreamBank = (
            remote if remote is not None else RtpBank(engine, capacity=max(16, min(capacity, config.max_calls)))
        )
        self.ports = PortAllocator(config.rtp_port_min, config.rtp_port_max)
        self.endpoint = SipEndpoint(
            EndpointConfig(
                host=config.host,
                udp_port=config.port,
                tcp_port=config.port,
                advertised_host=config.public_host or None,
                allowed_methods=REGISTRAR_METHODS,
                max_tcp_connections=config.tcp_max_connections,
                tcp_idle_timeout=config.tcp_idle_timeout,
                timers=TimerConfig(t1=config.timer_t1, t2=config.timer_t2, t4=config.timer_t4),
            ),
            on_request=self._on_request,
        )
        self.rtp_config = RtpConfig(
            jitter=JitterConfig(
                min_delay_ms=config.jitter_min_delay_ms,
                max_delay_ms=config.jitter_max_delay_ms,
                capacity=config.jitter_capacity,
                idle_after_frames=config.jitter_idle_after_frames,
                jump_ms=config.jitter_jump_ms,
                shrink_window_frames=config.jitter_shrink_window_frames,
            ),
            media_timeout=config.media_timeout,
        )
        self.addresses = MediaAddresses(
            self.host,
            resolve_names=config.media_host_names,
            timeout=config.media_resolve_timeout,
            max_lookups=config.media_resolve_max,
        )
        """Checks (and resolves) every media address a peer's SDP gives before an RTP session sees it."""
        self.admission = Admission(
            AdmissionConfig(
                config.max_calls,
                config.call_rate_per_source,
                config.call_burst_per_source,
                source_share=config.call_source_share,
                ringing_share=config.call_ringing_share,
                reserved_share=config.call_reserved_share,
                quiet_source_calls=config.call_quiet_source_calls,
            )
        )
        self.endpoint.admit = self._admit
        self.endpoint.admit_early = self._admit_early
        self.on_quality: Callable[[CallQuality], None] | None = None
        """Observer of each finished leg's RTP figures (the node's metrics); None: nobody."""
        self._by_key: dict[str, SipCall] = {}
        self._by_dialog: dict[str, SipCall] = {}
        self._tasks = TaskSet("sip")
        self._dialling: set[str] = set()
        self._digest = DigestClient()
        self.registrations = Registrations(config, directory.store)
        self.dialin: Any = None
        """The dial-in driver (gateway/dialin.py `DialIn`), when the node has a dial-in number or meetings."""
        self.webrtc: Any = None
        """The WebRTC edge (gateway/webrtc.py `WebRtcEdge`) for INVITEs from browsers; None: no browsers."""

    # -- lifecycle ---------------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.endpoint.start()
        # Legs whose signalling a previous process held cannot be recovered: the calling core ends them when it
        # loads their conversation (`holds` says which legs this process serves).
        log.info("sip gateway listening", extra={"port": self.port})

    def _local_sdp(self, port: int, *, relayed: bool = False) -> LocalSdp:
        """Our side of a new call's SDP, with the configured codecs and answer rule; a browser's offer (made by
        rtpengine from `webrtc.node_codecs`, the node's own choice) is answered in its order."""
        prefer_ours = self.config.prefer_our_codec_order and not relayed
        codecs = self.codecs
        if relayed and self.webrtc is not None and self.webrtc.config.opus_in_node:
            codecs = (OPUS, *codecs)  # rtpengine relays the browser's Opus: the bank codes it (rtp/opus_rows.py)
        return LocalSdp(self.host, port, codecs, prefer_ours=prefer_ours)

    def holds(self, leg_id: str) -> bool:
        """True when this process serves leg `leg_id`'s signalling (dialling it, or a dialog of ours)."""
        return leg_id in self._dialling or any(sc.leg_id == leg_id for sc in self._by_key.values())

    async def close(self) -> None:
        try:
            for sc in list(self._by_key.values()):
                await self.teardown(sc)
            await self._tasks.close()
        finally:
            self.addresses.close()
            await self.endpoint.close()

    @property
    def port(self) -> int:
        return self.endpoint.local_port("udp")

    @property
    def active(self) -> int:
        return len(self._by_key)

    def health(self) -> dict[str, Any]:
        """For /healthz: SIP port and calls, RTP ports in use, RTP streams (and those dropped after an error),
        media addresses refused."""
        bank = self.bank.stats()
        return {
            "port": self.port,
            "calls": self.active,
            "rtp_ports_in_use": self.ports.in_use,
            "rtp_port_pairs": self.ports.capacity,
            "rtp_streams": bank["streams"],
            "rtp_stream_faults": bank["stream_faults"],
            "rtp_stream_fault_kinds": bank["stream_fault_kinds"],
            "media_addresses": self.addresses.stats(),
        }

    def quality(self, leg_id: str) -> CallQuality | None:
        """RTP figures so far of the external leg `leg_id` (None if it has no SIP call here)."""
        sc = self._by_key.get(leg_id)
        return None if sc is None else sc.rtp.quality()

    def media(self, leg_id: str) -> NegotiatedAudio | None:
        """The negotiation in force for the external leg `leg_id` (direction: hold or not)."""
        sc = self._by_key.get(leg_id)
        return None if sc is None else sc.media

    def reachable(self, tenant_id: str, identity: JsonObj) -> bool:
        """Phone numbers are reachable when a trunk is configured, users when a softphone of theirs registered."""
        if "user" in identity and "phone" not in identity:
            return bool(self.registrations.reachable(tenant_id, str(identity["user"].get("id") or "")))
        return "phone" in identity and bool(self.config.trunk_uri)

    # -- incoming requests -------------------------------------------------------------------------------
    def _on_request(self, handle: ServerTransactionHandle, req: SipRequest, source: tuple[str, int]) -> None:
        try:
            self._dispatch(handle, req)
        except StoreUnavailable as exc:  # REGISTER, BYE, NOTIFY... while the store cannot write: try again later
            log.warning("SIP %s refused: %s", req.method, exc.message)
            if not handle.responded:
                handle.respond(503, "Service Unavailable", headers=[("Retry-After", RETRY_AFTER)])

    def _dispatch(self, handle: ServerTransactionHandle, req: SipRequest) -> None:
        method = req.method
        if method == "INVITE" and handle.dialog is None:
            self.spawn(self._incoming_guarded(handle, req))
        elif method == "INVITE":
            self._reinvite(handle, req)
        elif method == "BYE":
            handle.respond(200)
            sc = self._by_dialog.get(req.call_id)
            if sc is not None and sc.leg_id is not None:
                self.remote_gone(sc, results.PSTN_HUNG_UP)
        elif method == "REGISTER":
            self.registrations.handle(handle, req)
        elif method == "NOTIFY":
            on_notify(self, handle, req)
        elif method == "REFER":
            handle.respond(403, "Forbidden", headers=[REFER_FORBIDDEN])
        elif method == "OPTIONS":
            handle.respond(200, headers=[("Accept", SDP)])
        elif method == "ACK":
            pass
        else:
            handle.respond(501, "Not Implemented")

    def _admit(self, req: SipRequest, source: tuple[str, int]) -> tuple[int, list[tuple[str, str]]] | None:
        """Admission of a new INVITE, before any transaction: a refusal is a stateless 503 with Retry-After."""
        refusal = self.admission.admit(source[0], len(self._by_key), asyncio.get_running_loop().time())
        return None if refusal is None else (refusal.status, refusal.headers)

    def _admit_early(self, source: str) -> tuple[int, list[tuple[str, str]]] | None:
        """A refusal known from the source alone (its share or rate is used up), before the INVITE is parsed."""
        refusal = self.admission.would_refuse(source, len(self._by_key), asyncio.get_running_loop().time())
        if refusal is None:
            return None
        self.admission.stats[f"refused_{refusal.reason.value}"] += 1
        return (refusal.status, refusal.headers)

    async def _incoming_guarded(self, handle: ServerTransactionHandle, req: SipRequest) -> None:
        """`_incoming`, but a failure it did not foresee still answers the INVITE (500) and frees the call."""
        try:
            if not await self._incoming(handle, req):
                self.admission.abandoned(handle.source.host)
        except Exception as exc:
            unavailable = isinstance(exc, StoreUnavailable)  # disk full, store locked: try again later
            if unavailable:
                log.warning("inbound INVITE refused: %s", exc)
            else:
                log.exception("inbound INVITE failed")
            if not handle.responded:
                if unavailable:
                    handle.respond(503, "Service Unavailable", headers=[("Retry-After", RETRY_AFTER)])
                else:
                    handle.respond(500, "Server Internal Error")
            sc = self._by_dialog.get(req.call_id)
            if sc is not None and sc.invite is handle:
                if sc.leg_id is not None and self.calls.leg(sc.leg_id) is not None:
                    await self.calls.external_ended(sc.leg_id, results.CANNOT_ROUTE)
                await self.teardown(sc)
            else:
                self.admission.abandoned(handle.source.host)

    async def _incoming(self, handle: ServerTransactionHandle, req: SipRequest) -> bool:
        """Ring the bot the INVITE is for; True once a call exists (it then counts against its source)."""
        if len(self._by_key) >= self.config.max_calls:  # admitted by _admit, but others came first
            handle.respond(503, "Service Unavailable", headers=[("Retry-After", RETRY_AFTER)])
            return False
        inst = self._instance_for(req)
        if inst is None and self.dialin is not None and self.dialin.wants(req):
            return bool(await self.dialin.incoming(handle, req))  # the dial-in number, a meeting's SIP address
        if inst is None:
            handle.respond(404, "Not Found")
            return False
        app = self.directory.get_app(inst.app_id)
        if app is None:
            handle.respond(404, "Not Found")
            return False
        sc = await self.open_call(handle, req)
        if sc is None:
            return False
        frm = req.from_
        user = getattr(frm.uri, "user", None) or getattr(frm.uri, "number", None) or ""
        caller = caller_identity(user, frm.display_name, str(frm.uri))
        callee = self._callee_identity(inst)
        if sc.relayed:
            caller = self.webrtc.caller(handle) or caller
        handle.respond(180, "Ringing")
        await self.calls.accept_inbound(
            app=app, callee=callee, caller=caller, external=sc.key, call_id=sc.leg_id, gateway=self
        )
        return True

    async def open_call(self, handle: ServerTransactionHandle, req: SipRequest) -> SipCall | None:
        """An INVITE's media, before anyone answers it: the offer's addresses checked, an RTP session opened, the
        SDP answer made, the call registered with this gateway (a CANCEL ends it). None: the INVITE has been
        answered with the reason (488 no or unusable offer, 400 malformed SDP, 503 no ports) or was cancelled."""
        if not req.body:
            handle.respond(
                488, "Not Acceptable Here", headers=[("Warning", '399 opencomms "an SDP offer is required"')]
            )
            return None
        body = req.body
        browser = self.webrtc is not None and self.webrtc.is_browser(handle)
        if browser and (body := await self.webrtc.offer(handle, req)) is None:
            return None  # answered: outside its grant, an SDP rtpengine refused, rtpengine down
        try:
            offer = await self.addresses.prepare(SessionDescription.parse(body))
        except AddressError as exc:  # before any port is taken: an unusable or slow address fails this call alone
            handle.respond(488, "Not Acceptable Here", headers=[_warning(exc)])
            return None
        except SdpError:
            handle.respond(400, "Bad Request", headers=[("Warning", '399 opencomms "malformed SDP"')])
            return None
        if handle.responded:  # cancelled while its media address was being resolved
            return None
        key = new_id()
        rtp = RtpSession(key, self.bank, self.ports, self.host, config=self.rtp_config)
        try:
            port = await rtp.open()
        except Exception:
            log.exception("no RTP ports")
            await rtp.close()
            handle.respond(503, "Service Unavailable", headers=[("Retry-After", RETRY_AFTER)])
            return None
        try:
            sdp = self._local_sdp(port, relayed=browser)
            answer = sdp.answer(offer)
        except BaseException as exc:  # the ports go back whatever failed (and the INVITE gets its answer)
            await rtp.close()
            if not isinstance(exc, SdpError):  # not NegotiationError or an offer that makes no sense (no c= ...)
                raise
            handle.respond(488, "Not Acceptable Here", headers=[_warning(exc)])
            if browser:
                self.webrtc.forget(req.call_id)
            return None
        local = str(answer.sdp).encode()
        if browser and ((local := await self.webrtc.answer(handle, req, local)) is None or handle.responded):
            await rtp.close()  # answered (rtpengine failed) or cancelled meanwhile
            self.webrtc.forget(req.call_id)
            return None
        sc = SipCall(key=key, rtp=rtp, sdp=sdp, invite=handle, media=answer.media, dialog_call_id=req.call_id)
        sc.allow = allowed_methods(req)
        sc.answer = local
        sc.relayed = browser
        sc.leg_id = key
        sc.source = handle.source.host
        self._by_key[key] = sc
        self._by_dialog[req.call_id] = sc
        self.admission.started(sc.source)
        handle.on_cancel = lambda: self.remote_gone(sc, results.PSTN_HUNG_UP)
        return sc

    def _reinvite(self, handle: ServerTransactionHandle, req: SipRequest) -> None:
        sc = self._by_dialog.get(req.call_id)
        if sc is None or not sc.answered:
            handle.respond(491, "Request Pending")
            return
        if not req.body:
            handle.respond(200, body=sc.answer, content_type=SDP)
            return
        self.spawn(self._reoffered(sc, handle, req))

    async def _reoffered(self, sc: SipCall, handle: ServerTransactionHandle, req: SipRequest) -> None:
        """A re-INVITE's offer: answered, or refused with 488 while the call keeps the media it had (a browser's
        offer and our answer go through rtpengine again)."""
        body = req.body
        if sc.relayed and (body := await self.webrtc.offer(handle, req)) is None:
            return  # answered (rtpengine down or refusing): the call keeps its media
        try:
            offer = await self.addresses.prepare(SessionDescription.parse(body))
            if handle.responded:
                return
            if sc.closed:  # the call ended while the offer's address was being resolved
                handle.respond(481, "Call/Transaction Does Not Exist")
                return
            answer = sc.sdp.answer(offer)
        except (SdpError, NegotiationError) as exc:
            handle.respond(488, "Not Acceptable Here", headers=[_warning(exc)])
            return
        local = str(answer.sdp).encode()
        if sc.relayed and (local := await self.webrtc.answer(handle, req, local)) is None:
            return
        sc.answer = local
        sc.media = answer.media
        try:
            sc.rtp.update(answer.media)
        except RuntimeError:  # its media has not started yet: start() applies sc.media
            pass
        handle.respond(200, body=sc.answer, content_type=SDP)

    def remote_gone(self, sc: SipCall, reason: ResultInfo) -> None:
        if sc.driver is not None:
            sc.driver.gone(sc, reason)
        elif sc.leg_id is not None:
            self.spawn(self.calls.external_ended(sc.leg_id, reason))
        else:
            self.spawn(self.teardown(sc))

    def browser_legs(self, transport: str, peer: tuple[str, int]) -> list[str]:
        """The legs of the live calls a browser's WebSocket (`transport`, `peer`) made."""
        return [
            sc.leg_id
            for sc in self._by_key.values()
            if sc.invite is not None
            and sc.invite.source.transport == transport
            and sc.invite.source.addr == peer
            and sc.leg_id is not None
            and not sc.closed
        ]

    def browser_gone(self, transport: str, peer: tuple[str, int]) -> None:
        """A browser's WebSocket closed (tab closed, network lost): its calls end now, BYE or not."""
        for sc in list(self._by_key.values()):
            source = sc.invite.source if sc.invite is not None else None
            if source is not None and source.transport == transport and source.addr == peer and not sc.closed:
                self.remote_gone(sc, results.PSTN_HUNG_UP)

    def _instance_for(self, req: SipRequest) -> Any:
        uri = req.uri
        candidates: list[str] = []
        if isinstance(uri, SipUri):
            if uri.user:
                number = normalize_number(uri.user)
                if number:
                    candidates.append(number)
                candidates.append(f"sip:{uri.user}@{uri.host}".lower())
        elif isinstance(uri, TelUri):
            number = normalize_number(uri.number)
            if number:
                candidates.append(number)
        for address in candidates:
            inst = self.directory.find_instance_by_address(address)
            if inst is not None:
                return inst
        return None

    @staticmethod
    def _callee_identity(inst: Any) -> JsonObj:
        ident: JsonObj = {"@odata.type": "#microsoft.graph.identity", "id": inst.id, "displayName": inst.display_name}
        return {"@odata.type": "#microsoft.graph.identitySet", "applicationInstance": ident}

    def leg_of(self, sip_call_id: str) -> str | None:
        """The leg id of the live SIP dialog with this Call-ID, if any (the console's timelines ask)."""
        sc = self._by_dialog.get(sip_call_id)
        return None if sc is None else sc.leg_id

    # -- Gateway (calling.subscribers) --------------------------------------------------------------------------------
    def dial(self, call: Call) -> None:
        self._dialling.add(call.id)
        self.spawn(self._dial_guarded(call))

    def connected(self, call: Call) -> None:
        sc = self._by_key.get(call.id)
        if sc is None or sc.started:
            return
        sc.answered = True
        if sc.source is not None:
            self.admission.answered(sc.source)
        if sc.invite is not None:
            sc.invite.respond(200, body=sc.answer, content_type=SDP)
        self.spawn(self._start_media(sc))

    def can_refer(self, call: Call, target: JsonObj) -> bool:
        return can_refer(self, call, target)

    def refer(self, call: Call, target: JsonObj) -> None:
        start_refer(self, call, target)

    def ending(self, call: Call, reason: ResultInfo) -> None:
        self._dialling.discard(call.id)
        sc = self._by_key.get(call.id)
        if sc is None:
            return
        self._record(call, sc, reason)
        if sc.invite is not None and not sc.answered and not sc.invite.responded:
            status, phrase = status_for_failure(reason)
            sc.invite.respond(status, phrase)
        if sc.dialing is not None and not sc.answered:
            sc.dialing.cancel()
        self.spawn(self.teardown(sc, bye=sc.answered, reason=reason))

    def _record(self, call: Call, sc: SipCall, reason: ResultInfo) -> None:
        """Keep the leg's media quality in its conversation's call record (same store transaction as its end)."""
        codec = sc.media.codec.name if sc.media is not None else "unknown"
        quality = sc.rtp.quality()
        try:
            group = self.calls.conversation_kind(call.conversation_id) in (
                ConversationKind.GROUP,
                ConversationKind.MEETING,
            )
            now = self.calls.now()
            record_leg(self.directory.store, call, reason, quality, codec, group=group, now=now)
        except Exception:
            log.exception("call record not written", extra={"call_id": call.id})
        if self.on_quality is not None:
            self.on_quality(quality)

    # -- media and teardown --------------------------------------------------------------------------------
    async def _start_media(self, sc: SipCall) -> None:
        if sc.media is None or sc.closed:  # ended before its media could start
            return
        try:
            await sc.rtp.start(sc.media)
        except Exception:
            log.exception("RTP could not start", extra={"call_id": sc.leg_id})
            if sc.leg_id is not None:
                await self.calls.external_ended(sc.leg_id, results.MEDIA_LOST)
            return
        sc.rtp.on_timeout = lambda: self.remote_gone(sc, results.MEDIA_LOST)
        sc.rtp.on_error = lambda _step: self.remote_gone(sc, results.MEDIA_STREAM_FAILED)

    async def teardown(self, sc: SipCall, *, bye: bool = False, reason: ResultInfo | None = None) -> None:
        if sc.closed:
            return
        sc.closed = True
        self._by_key.pop(sc.key, None)
        if sc.source is not None:
            self.admission.ended(sc.source, answered=sc.answered)
        if sc.dialog_call_id is not None:
            self._by_dialog.pop(sc.dialog_call_id, None)
        dialog = sc.invite.dialog if sc.invite is not None else sc.outgoing.dialog if sc.outgoing else None
        # The endpoint keeps the INVITE's transaction (and its handle) for up to 32 s after the call: the handle
        # must not keep this call (its RTP session, sockets, SDP) alive that long through its callback.
        if sc.invite is not None:
            sc.invite.on_cancel = None
        if sc.relayed and sc.dialog_call_id is not None:
            self.webrtc.forget(sc.dialog_call_id)
        sc.rtp.on_timeout = sc.rtp.on_error = None
        try:
            await sc.rtp.close()  # media and ports go at once, not after the BYE's answer (up to 32 s on UDP)
        except Exception:  # close() released the ports in any case; the dialog still gets its BYE
            log.warning("RTP session did not close cleanly", extra={"call_id": sc.leg_id}, exc_info=True)
        if bye and dialog is not None and dialog in self.endpoint.dialogs:  # not after the peer's own BYE
            try:
                headers = [reason_header(reason)] if reason is not None else []
                await asyncio.wait_for(self.endpoint.request_in_dialog(dialog, dialog.bye(headers=headers)), 10)
            except Exception:
                log.info("BYE not confirmed", extra={"call_id": sc.leg_id})

    # -- outgoing calls --------------------------------------------------------------------------------------
    async def _dial_guarded(self, call: Call) -> None:
        """`_dial`, but a failure it did not foresee (or the task being cancelled) still ends the leg and frees
        its RTP ports."""
        try:
            await self._dial(call)
        except BaseException as exc:
            self._dialling.discard(call.id)
            if not isinstance(exc, asyncio.CancelledError):
                log.exception("outbound call failed", extra={"call_id": call.id})
            sc = self._by_key.get(call.id)
            if self.calls.leg(call.id) is not None and not isinstance(exc, asyncio.CancelledError):
                await self.calls.external_ended(call.id, results.CANNOT_ROUTE)  # ending() tears it down
            elif sc is not None:
                await asyncio.shield(self.teardown(sc, bye=sc.answered))
            if isinstance(exc, asyncio.CancelledError):
                raise

    async def _dial(self, call: Call) -> None:
        """Place `call` (an external leg) on its route: a registered softphone of its user, else the trunk."""
        if user_id_of(call):
            route = registered_route(self.registrations, call)
        else:
            route = trunk_route(self.config, self.host, call)
        if not isinstance(route, Route):
            self._dialling.discard(call.id)
            await self.calls.external_ended(call.id, route)
            return
        key = call.id
        rtp = RtpSession(call.id, self.bank, self.ports, self.host, config=self.rtp_config)
        try:
            port = await rtp.open()
        except Exception:
            await rtp.close()
            self._dialling.discard(call.id)
            await self.calls.external_ended(call.id, results.MEDIA_OVERLOADED)
            return
        if call.id not in self._dialling:  # the call ended while the ports were being opened
            await rtp.close()
            return
        self._dialling.discard(call.id)
        sc = SipCall(key=key, rtp=rtp, sdp=self._local_sdp(port), leg_id=call.id)
        self._by_key[key] = sc
        try:
            hop = route.next_hop
            dest = hop if isinstance(hop, Destination) else await self.endpoint.resolve(hop)
        except (OSError, ValueError):
            log.warning("callee unreachable", extra={"call_id": call.id})
            await self.calls.external_ended(call.id, route.unreachable)
            return
        if sc.closed:  # the call ended while the next hop was being resolved
            return
        offer = str(sc.sdp.offer()).encode()
        invite = OutboundInvite(
            self.endpoint,
            self._digest,
            route.target,
            dest,
            route.from_,
            offer,
            to=route.to,
            credentials=route.credentials,
            max_redirects=route.max_redirects,
        )
        sc.dialing = invite
        response = await invite.run()
        sc.outgoing = invite.handle
        await self._dialled(sc, response, invite.handle)

    async def _dialled(self, sc: SipCall, response: SipResponse | None, handle: ClientTransactionHandle | None) -> None:
        """The final answer to an outgoing INVITE: connect the leg, or end it with the mapped failure."""
        leg_id = sc.leg_id or sc.key
        dialog = handle.dialog if handle is not None else None
        if response is not None and response.is_success and dialog is not None:
            try:
                await self.endpoint.ack(dialog)  # every 2xx is acknowledged, also one that crossed our CANCEL
            except (OSError, ValueError):  # its Contact (or Record-Route) cannot be reached
                log.warning("ACK not sent: the answer's Contact is unreachable", extra={"call_id": leg_id})
                if self.calls.leg(leg_id) is not None:
                    await self.calls.external_ended(leg_id, results.CALLEE_UNREACHABLE)
                await self.teardown(sc)
                return
        if sc.closed or self.calls.leg(leg_id) is None:  # the leg ended meanwhile (ring timeout, bot hung up)
            if response is not None and response.is_success and dialog is not None:
                self.spawn(self.endpoint.bye(dialog))
            return
        if response is None or not response.is_success:
            reason = results.NO_ANSWER if response is None else failure_for_status(response.status, response.reason)
            await self.calls.external_ended(leg_id, reason)
            await self.teardown(sc)
            return
        sc.dialog_call_id = response.call_id
        self._by_dialog[response.call_id] = sc
        sc.allow = allowed_methods(response)
        sc.answered = True  # the dialog exists: ending it from now on sends BYE
        try:
            sc.media = sc.sdp.accept_answer(await self.addresses.prepare(SessionDescription.parse(response.body)))
        except AddressError as exc:
            log.info("answer's media address refused: %s", exc, extra={"call_id": leg_id})
            if self.calls.leg(leg_id) is not None:
                await self.calls.external_ended(leg_id, results.MEDIA_ADDRESS_REFUSED)
            return
        except (SdpError, NegotiationError):
            if self.calls.leg(leg_id) is not None:
                await self.calls.external_ended(leg_id, results.MEDIA_LOST)
            return
        if sc.closed or self.calls.leg(leg_id) is None:  # ended while its media address was being resolved
            return
        await self.calls.external_answered(leg_id)

    def spawn(self, coro: Any) -> None:
        self._tasks.spawn(coro)


def reason_header(reason: ResultInfo) -> tuple[str, str]:
    """The Reason header (RFC 3326) of a BYE the node sends: the leg's resultInfo, as its bot is told."""
    text = "".join(c for c in reason.message[:200] if c.isprintable() and c not in '\\"')
    return "Reason", f'opencomms;cause={reason.code};subcode={reason.subcode};text="{text}"'


def _warning(exc: SdpError) -> tuple[str, str]:
    """The Warning header of a 488 for an offer we cannot use: 301 for its address, 304/305 for its media."""
    code = getattr(exc, "warning_code", 305)
    text = "".join(c for c in str(exc)[:200] if c.isprintable() and c not in '\\"')
    return "Warning", f'{code} opencomms "{text}"'


__all__ = ["SipCall", "SipGateway"]
