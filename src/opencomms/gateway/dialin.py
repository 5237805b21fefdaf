"""DialIn: phones that dial the node's dial-in number meet the attendant and join the meeting they name; registered
softphone users join a meeting by its SIP address.

The dial-in leg: one leg id, two owners in turn. The INVITE to `[meetings] dial_in_number` gets its leg id and RTP
session as any inbound call, but this driver answers it (200 OK at once) and owns it while the attendant
(`domain.attendant`) runs: the phone's engine leg and a *voice* leg of the driver share a private mix, so the phone
hears the voice's prompts (espeak-ng through the PromptLibrary, cached by text) and the voice hears the phone's
keys: in-band ones through the engine's detector on the voice's input, RFC 4733 ones through `push_key`, both as
`ToneDetected(voice)`. The core knows nothing of the call yet: no leg, no document, nothing to end. When the
attendant succeeds, the driver drops its voice leg and hands the same leg id to `LiveMeetingService.join_external`;
the core's media session moves the phone's engine leg (same row, same RTP stream: no re-INVITE) into the meeting's
mix and the SIP gateway finds the call already answered (`SipCall.started`). Until the core has the leg, a BYE,
CANCEL or media loss comes here (`SipCall.driver`); after, it goes to the core as for any call. A phone put in the
lobby keeps the voice leg (it hears that it waits, then hold music) until it is admitted or its leg ends
(`DialInEvents`).

A meeting's SIP address is `sip:meeting-<joinMeetingId>@<node>`: a registered softphone user INVITEs it with
digest credentials (401 challenge, the registrar's realm and accounts) and joins as a USER joiner (lobby by the
meeting's scope and the user's role); the same hand-over, without the attendant.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from opencomms.calling.hold_music import HOLD_SECONDS
from opencomms.calling.invitations import new_source_id
from opencomms.calling.model import Call, JsonObj
from opencomms.calling.subscribers import Batch, Subscriber
from opencomms.config import MeetingsConfig
from opencomms.domain import events as ev
from opencomms.domain import results
from opencomms.domain.attendant import Attendant, AttendantPrompts, Goodbye, Join, Say
from opencomms.domain.errors import OpenCommsError
from opencomms.domain.ids import new_id
from opencomms.domain.legs import LegKind, LegSpec
from opencomms.domain.media import PromptError, PromptSpec
from opencomms.domain.meeting_rules import JoinerKind
from opencomms.domain.meetings import MeetingInfo
from opencomms.domain.results import ResultInfo
from opencomms.gateway.mapping import caller_identity, normalize_number
from opencomms.gateway.sip import SipCall, SipGateway, reason_header
from opencomms.media import engine as eng
from opencomms.media.engine import commands as cmd
from opencomms.media.hold_music import hold_music, loops_for
from opencomms.sip.digest import AuthError
from opencomms.sip.handles import ServerTransactionHandle
from opencomms.sip.message import SipRequest
from opencomms.sip.uri import SipUri, TelUri
from opencomms.tasks import TaskSet

if TYPE_CHECKING:
    from opencomms.calling.meetings import LiveMeetingService
    from opencomms.media.prompts import PromptLibrary

log = logging.getLogger("opencomms.dialin")

__all__ = ["MEETING_ADDRESS_PREFIX", "MEETING_UNAVAILABLE", "DialIn", "DialInEvents", "meeting_address"]

SDP = "application/sdp"
MEETING_ADDRESS_PREFIX = "meeting-"
"""User part of a meeting's SIP address: `sip:meeting-<joinMeetingId>@<node>`."""
MEETING_UNAVAILABLE = ResultInfo(200, 5011, "The meeting could not be joined: it has ended or is full.")
"""How a dial-in call ends when the meeting it named refused the join (ended, over its end time, full)."""
LOBBY_PROMPT = "Please wait. Someone in the meeting will let you in soon."
UNAVAILABLE_PROMPT = "Sorry, this meeting cannot be joined now. Goodbye."
PLAY_LIMIT = 60.0
"""Longest wait for one prompt to finish playing (a prompt longer than this is cut short by the hang-up)."""


def meeting_address(join_meeting_id: str, host: str) -> str:
    """The SIP address a softphone user dials to join the meeting with this joinMeetingId."""
    return f"sip:{MEETING_ADDRESS_PREFIX}{join_meeting_id}@{host}"


class _Phase(StrEnum):
    ATTENDANT = "attendant"
    JOINING = "joining"
    LOBBY = "lobby"
    DONE = "done"


@dataclass(eq=False)
class DialInCall:
    """One call the driver owns (from its 200 OK until the core has its leg established, or it ends)."""

    sc: SipCall
    identity: JsonObj
    meeting: MeetingInfo | None = None
    """Known at once for a softphone dialling a meeting's SIP address; found by the attendant otherwise."""
    joiner: JoinerKind = JoinerKind.PHONE
    user_id: str = ""
    phase: _Phase = _Phase.ATTENDANT
    keys: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    playing: asyncio.Future[None] | None = None
    play_tag: str = ""
    task: asyncio.Task[None] | None = None
    gone: ResultInfo | None = None
    """The peer ended the call while the core was taking it (JOINING): told to the core once it has the leg."""

    @property
    def leg(self) -> str:
        assert self.sc.leg_id is not None
        return self.sc.leg_id

    @property
    def voice(self) -> str:
        return f"{self.leg}/voice"

    @property
    def mix(self) -> str:
        return f"dialin/{self.leg}"


class DialIn:
    """The driver of the dial-in attendant and of softphone joins by SIP address (see the module docstring)."""

    def __init__(
        self,
        gateway: SipGateway,
        meetings: LiveMeetingService,
        prompts: PromptLibrary,
        config: MeetingsConfig,
    ) -> None:
        self.gateway = gateway
        self.meetings = meetings
        self.calls = meetings.calls
        self.prompts = prompts
        self.config = config
        self.engine = gateway.engine
        self._calls: dict[str, DialInCall] = {}
        """By leg id, while the driver owns the call (attendant, joining, lobby)."""
        self._by_voice: dict[str, DialInCall] = {}
        self._tasks = TaskSet("dialin")
        self.stats = {"dialled": 0, "joined": 0, "refused": 0, "abandoned": 0}

    # -- what the gateway asks ----------------------------------------------------------------------------
    def wants(self, req: SipRequest) -> bool:
        """The INVITE is for the dial-in number or a meeting's SIP address."""
        uri = req.uri
        user = uri.user if isinstance(uri, SipUri) else uri.number if isinstance(uri, TelUri) else None
        if not user:
            return False
        if user.lower().startswith(MEETING_ADDRESS_PREFIX):
            return True
        number = self.config.dial_in_number
        return bool(number) and normalize_number(user) == number

    async def incoming(self, handle: ServerTransactionHandle, req: SipRequest) -> bool:
        """Answer the INVITE and start the attendant (or the softphone's join); True once a call exists."""
        uri = req.uri
        user = (uri.user if isinstance(uri, SipUri) else "") or ""
        frm = req.from_
        caller_user = getattr(frm.uri, "user", None) or getattr(frm.uri, "number", None) or ""
        identity = caller_identity(caller_user, frm.display_name, str(frm.uri))
        dc_meeting: MeetingInfo | None = None
        joiner, user_id = JoinerKind.PHONE, ""
        if user.lower().startswith(MEETING_ADDRESS_PREFIX):
            dc_meeting = self.meetings.lookup.by_join_id(user[len(MEETING_ADDRESS_PREFIX) :])
            if dc_meeting is None:
                handle.respond(404, "Not Found")
                return False
            who = self._softphone_user(handle, req, dc_meeting)
            if who is None:
                return False
            identity, joiner, user_id = who
        sc = await self._answerable(handle, req)
        if sc is None:
            return False
        dc = DialInCall(sc, identity, dc_meeting, joiner, user_id)
        self._calls[dc.leg] = dc
        self._by_voice[dc.voice] = dc
        self.stats["dialled"] += 1
        dc.task = self._tasks.spawn(self._run(dc))
        return True

    def gone(self, sc: SipCall, reason: ResultInfo) -> None:
        """The peer hung up (BYE, CANCEL) or its media was lost while the driver owned the call."""
        dc = self._calls.get(sc.leg_id or "")
        if dc is None:
            sc.driver = None
            self.gateway.spawn(self.gateway.teardown(sc))
            return
        if dc.phase is _Phase.JOINING:
            dc.gone = dc.gone or reason
            return
        self.stats["abandoned"] += 1
        self._forget(dc)
        if dc.task is not None and dc.task is not asyncio.current_task():
            dc.task.cancel()
        self.gateway.spawn(self._release(dc, bye=False))

    # -- the media engine's events (a MediaService observer) ----------------------------------------------
    def connected(self, call: Call) -> None:
        """(LegObserver) nothing: the core's legs are not the driver's."""

    def ending(self, call: Call) -> None:
        """(LegObserver) nothing: see DialInEvents for the legs the driver still owns."""

    def on_events(self, events: Any) -> None:
        for event in events:
            if isinstance(event, eng.ToneDetected):
                dc = self._by_voice.get(event.leg_id)
                if dc is not None and dc.phase is _Phase.ATTENDANT:
                    dc.keys.put_nowait(event.key)
                    self.engine.call(cmd.StopPlay(dc.voice))  # a key interrupts the prompt
            elif isinstance(event, eng.PlayFinished):
                dc = self._by_voice.get(event.leg_id)
                if dc is not None and dc.play_tag == event.tag and dc.playing is not None and not dc.playing.done():
                    dc.playing.set_result(None)

    # -- the conversation with the caller -------------------------------------------------------------------
    async def _run(self, dc: DialInCall) -> None:
        try:
            await self._start_media(dc)
            if dc.meeting is not None:
                await self._join(dc, dc.meeting)
            else:
                await self._attend(dc)
        except asyncio.CancelledError:
            raise
        except eng.EngineFull:
            log.warning("dial-in call refused: the media engine is full", extra={"call_id": dc.sc.leg_id})
            if dc.phase is not _Phase.DONE and dc.sc.driver is not None:
                await self._hang_up(dc, results.MEDIA_OVERLOADED)
        except Exception:
            log.exception("dial-in call failed", extra={"call_id": dc.sc.leg_id})
            if dc.phase is not _Phase.DONE and dc.sc.driver is not None:
                await self._hang_up(dc, results.CANNOT_ROUTE)

    async def _start_media(self, dc: DialInCall) -> None:
        leg, voice, mix = dc.leg, dc.voice, dc.mix

        await asyncio.wrap_future(self.engine.call_result(cmd.DialInSetup(leg, voice, mix)))
        sc = dc.sc
        assert sc.media is not None
        await sc.rtp.start(sc.media)
        gw = self.gateway
        sc.rtp.on_timeout = lambda: gw.remote_gone(sc, results.MEDIA_LOST)
        sc.rtp.on_error = lambda _step: gw.remote_gone(sc, results.MEDIA_STREAM_FAILED)

    async def _attend(self, dc: DialInCall) -> None:
        loop = asyncio.get_running_loop()
        attendant = Attendant(
            self.meetings.lookup.by_conference_id,
            tries=self.config.dial_in_tries,
            entry_timeout=self.config.dial_in_entry_timeout,
        )
        actions = attendant.start(loop.time())
        while True:
            for action in actions:
                if isinstance(action, Say):
                    await self._say(dc, action.text)
                elif isinstance(action, Join):
                    await self._played(dc)
                    await self._join(dc, action.meeting)
                    return
                elif isinstance(action, Goodbye):
                    log.info("dial-in attendant gave up", extra={"call_id": dc.leg})
                    self.stats["refused"] += 1
                    await self._say(dc, action.text)
                    await self._played(dc)
                    await self._hang_up(dc, action.reason)
                    return
            deadline = attendant.next_deadline()
            wait = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                key = await asyncio.wait_for(dc.keys.get(), wait)
            except TimeoutError:
                actions = attendant.fire(loop.time())
            else:
                actions = attendant.key(key, loop.time())

    async def _say(self, dc: DialInCall, text: str) -> None:
        """Queue `text` on the caller's voice leg (after what plays); `_played` waits for its end."""
        try:
            clip = await self.prompts.load(PromptSpec(text=text, voice=self.config.dial_in_voice or None))
        except PromptError as exc:  # espeak-ng missing or failing: the attendant goes on silently
            log.warning("dial-in prompt not spoken: %s", exc.message, extra={"call_id": dc.leg})
            return
        if dc.phase is _Phase.DONE:  # the caller hung up (or was admitted) while the speech was made
            return
        tag = new_id()
        dc.play_tag = tag
        dc.playing = asyncio.get_running_loop().create_future()
        voice = dc.voice
        self.engine.call(cmd.Play(voice, tag, (clip,)))

    async def _played(self, dc: DialInCall) -> None:
        playing = dc.playing
        if playing is not None:
            try:
                await asyncio.wait_for(asyncio.shield(playing), PLAY_LIMIT)
            except TimeoutError:
                pass

    async def _join(self, dc: DialInCall, meeting: MeetingInfo) -> None:
        """Hand the leg to the core: it joins `meeting` (in the lobby or not) with the same leg id and RTP."""
        sc = dc.sc
        source = {"@odata.type": "#microsoft.graph.participantInfo", "identity": dc.identity}
        spec = LegSpec(
            id=dc.leg,
            kind=LegKind.SIP,
            participant_id=new_id(),
            source_id=new_source_id(),
            identity=dc.identity,
            source=source,
            attrs={"requested_modalities": ["audio"]},
            external=sc.key,
        )
        dc.phase = _Phase.JOINING
        try:
            events = await self.meetings.join_external(meeting.id, spec, joiner=dc.joiner, user_id=dc.user_id)
        except OpenCommsError as exc:
            log.info("dial-in join refused: %s", exc, extra={"call_id": dc.leg})
            dc.phase = _Phase.ATTENDANT
            if dc.gone is not None:
                self.gone(sc, dc.gone)
                return
            await self._say(dc, UNAVAILABLE_PROMPT)
            await self._played(dc)
            await self._hang_up(dc, MEETING_UNAVAILABLE)
            return
        sc.driver = None  # from here on the core owns the leg: the peer's BYE goes to it
        self.stats["joined"] += 1
        log.info("phone joined meeting", extra={"call_id": dc.leg, "meeting_id": meeting.id})
        if dc.gone is not None or self.calls.leg(dc.leg) is None:
            if self.calls.leg(dc.leg) is not None:
                await self.calls.external_ended(dc.leg, dc.gone or results.PSTN_HUNG_UP)
            self._forget(dc)
            self._drop_engine(dc, phone=self.calls.leg(dc.leg) is None)
            return
        established = any(isinstance(e, ev.LegEstablished) and e.leg_id == dc.leg for e in events)
        if established:
            self._forget(dc)
            self._drop_engine(dc, phone=False)
        else:
            dc.phase = _Phase.LOBBY  # DialInEvents drops the voice once it is admitted or gone
            await self._say(dc, LOBBY_PROMPT)
            self._hold_music(dc)

    def _hold_music(self, dc: DialInCall) -> None:
        """The lobby's hold music, queued on the voice after the "please wait" prompt, for as long as the lobby
        may keep the caller (it stops when the voice leg goes: admitted or gone)."""
        if dc.phase is not _Phase.LOBBY:
            return
        clip = hold_music()
        clips = [clip] * loops_for(len(clip), self.config.lobby_timeout or HOLD_SECONDS)
        voice, tag = dc.voice, new_id()
        self.engine.call(cmd.Play(voice, tag, tuple(clips), if_present=True))

    async def _hang_up(self, dc: DialInCall, reason: ResultInfo) -> None:
        """End a call the core never had: BYE with the resultInfo in a Reason header (RFC 3326)."""
        sc = dc.sc
        self._forget(dc)
        log.info("dial-in call ended", extra={"call_id": dc.leg, "code": reason.code, "subcode": reason.subcode})
        dialog = sc.invite.dialog if sc.invite is not None else None
        await self._release(dc, bye=False)
        endpoint = self.gateway.endpoint
        if dialog is not None and dialog in endpoint.dialogs:
            header = reason_header(reason)
            try:
                await asyncio.wait_for(endpoint.request_in_dialog(dialog, dialog.bye(headers=[header])), 10)
            except Exception:
                log.info("BYE not confirmed", extra={"call_id": dc.leg})

    async def _release(self, dc: DialInCall, *, bye: bool) -> None:
        dc.sc.driver = None
        self._drop_engine(dc, phone=True)
        await self.gateway.teardown(dc.sc, bye=bye)

    def _drop_engine(self, dc: DialInCall, *, phone: bool) -> None:
        leg, voice = dc.leg, dc.voice

        self.engine.call(cmd.RemoveLeg((voice, leg) if phone else (voice,)))

    def _forget(self, dc: DialInCall) -> None:
        dc.phase = _Phase.DONE
        self._calls.pop(dc.leg, None)
        self._by_voice.pop(dc.voice, None)
        if dc.playing is not None and not dc.playing.done():
            dc.playing.cancel()

    # -- the core's events about legs the driver still holds (lobby) -------------------------------------------
    def lobby_left(self, leg_id: str, *, established: bool) -> None:
        """A lobby phone was admitted (`established`) or its leg ended: the voice goes, and the phone's engine leg
        too when it ended (the core's media session never had it)."""
        dc = self._calls.get(leg_id)
        if dc is None or dc.phase is not _Phase.LOBBY:
            return
        self._forget(dc)
        self._drop_engine(dc, phone=not established)

    # -- softphones and SIP ---------------------------------------------------------------------------------
    def _softphone_user(
        self, handle: ServerTransactionHandle, req: SipRequest, meeting: MeetingInfo
    ) -> tuple[JsonObj, JoinerKind, str] | None:
        """Digest-authenticate the INVITE against the registrar's accounts (or, with `anonymous_sip_guests`, take an
        INVITE without credentials as an anonymous guest); the joiner's identity and kind."""
        web = self.gateway.webrtc
        if web is not None and web.is_browser(handle):  # a browser: its WebSocket's credential says who it is
            return web.joiner(handle, meeting)  # type: ignore[no-any-return]
        regs = self.gateway.registrations
        now = regs.clock()
        credentials = req.headers.get_all("Authorization")
        if not credentials and self.config.anonymous_sip_guests:
            return _anonymous_guest(req), JoinerKind.GUEST, ""
        if not credentials:
            headers = [("WWW-Authenticate", v) for v in regs.challenger.challenge_headers(now)]
            handle.respond(401, "Unauthorized", headers=headers)
            return None
        try:
            verified = regs.challenger.verify(credentials, "INVITE", str(req.uri), now, body=req.body)
        except AuthError as exc:
            headers = [("WWW-Authenticate", v) for v in regs.challenger.challenge_headers(now, stale=exc.stale)]
            handle.respond(401, "Unauthorized", headers=headers)
            return None
        account = regs.accounts.get(verified.username)
        if account is None:
            handle.respond(403, "Forbidden")
            return None
        member = account.tenant_id == meeting.tenant_id
        uid = account.user_id or ""
        ident: JsonObj = {
            "@odata.type": "#microsoft.graph.identity",
            "id": uid or f"sip:{account.username}@{regs.realm}",
            "displayName": account.display_name or account.username,
        }
        kind = "user" if member else "guest"
        identity = {"@odata.type": "#microsoft.graph.identitySet", kind: ident}
        return identity, JoinerKind.USER if member else JoinerKind.GUEST, uid if member else ""

    async def _answerable(self, handle: ServerTransactionHandle, req: SipRequest) -> SipCall | None:
        """The INVITE's RTP session and SDP answer, the call registered with the gateway and answered 200 OK."""
        gw = self.gateway
        sc = await gw.open_call(handle, req)
        if sc is None:
            return None
        sc.driver = self
        handle.respond(200, body=sc.answer, content_type=SDP)
        sc.answered = sc.started = True
        gw.admission.answered(handle.source.host)
        return sc

    def prefetch(self) -> None:
        """Render the welcome every caller hears first in the background now, so that the first caller does not
        wait for text-to-speech (piper's worker loads its model on first use; the other prompts follow warm)."""
        voice = self.config.dial_in_voice or None
        self.prompts.prefetch([PromptSpec(text=AttendantPrompts().welcome, voice=voice)])

    async def close(self) -> None:
        """Stop every attendant (the gateway then tears the calls down)."""
        for dc in list(self._calls.values()):
            self._forget(dc)
            self._drop_engine(dc, phone=True)
        await self._tasks.close()

    def health(self) -> dict[str, int]:
        return {"attending": len(self._calls), **self.stats}


class DialInEvents(Subscriber):
    """The core's events about phones the driver put in a meeting's lobby: admitted or gone, the driver lets go."""

    def __init__(self, dialin: DialIn) -> None:
        self.dialin = dialin

    def committed(self, batch: Batch, event: ev.Event) -> None:
        if isinstance(event, ev.LegEstablished) and event.kind is LegKind.SIP:
            self.dialin.lobby_left(event.leg_id, established=True)
        elif isinstance(event, ev.LegEnded) and event.kind is LegKind.SIP:
            self.dialin.lobby_left(event.leg_id, established=False)


def _anonymous_guest(req: SipRequest) -> JsonObj:
    """The identity of an unauthenticated caller to a meeting address (`anonymous_sip_guests`): a guest named by
    its From header (the display name, else the URI's user part)."""
    frm = req.from_
    user = getattr(frm.uri, "user", None) or getattr(frm.uri, "number", None) or ""
    name = "".join(ch for ch in (frm.display_name or user or "Guest") if ch.isprintable())[:60]
    ident: JsonObj = {"@odata.type": "#microsoft.graph.identity", "id": str(frm.uri)[:256], "displayName": name}
    return {"@odata.type": "#microsoft.graph.identitySet", "guest": ident}
