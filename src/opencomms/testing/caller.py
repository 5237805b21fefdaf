"""VirtualCaller: a phone for tests that dials a bot over real SIP and RTP on loopback.

It uses our own SIP stack (`SipEndpoint` as a UAC: INVITE with an SDP offer, ACK, BYE, CANCEL, answering the
far end's BYE) and a small RTP peer (G.711 every 20 ms, RFC 4733). A test dials, waits for the answer, hears
what the bot plays (audio, recognised DTMF, speech and silence), presses keys, plays a WAV and hangs up:

    async with platform.caller() as caller:
        call = await caller.dial(bot.number)
        await call.wait_answered()
        await call.wait_for_speech(); await call.wait_for_silence()
        await call.press("1#")
        await call.hang_up()

Owns the call's state table, the SIP side of one call and the timeline of what happened. Must not decide
anything for the bot under test; everything it opened stops when the caller is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from opencomms.domain.fsm import TransitionTable
from opencomms.media.dtmf.tones import generate_dtmf, normalize_key
from opencomms.media.frames import SAMPLE_RATE
from opencomms.media.resample import resample
from opencomms.media.wav import decode_wav
from opencomms.rtp.offer_answer import PCMA, PCMU, Codec, LocalSdp, NegotiationError
from opencomms.rtp.sdp import SdpError, SessionDescription
from opencomms.sip.destination import Destination
from opencomms.sip.dialog import Dialog
from opencomms.sip.digest_client import DigestClient
from opencomms.sip.endpoint import SipEndpoint
from opencomms.sip.endpoint_config import EndpointConfig
from opencomms.sip.handles import ClientTransactionHandle, ServerTransactionHandle
from opencomms.sip.headers import NameAddr
from opencomms.sip.message import SipRequest, SipResponse
from opencomms.sip.uri import SipUri, parse_uri
from opencomms.tasks import TaskSet
from opencomms.testing.listen import HeardTone, Listener, SpeechSegment
from opencomms.testing.rtp_peer import RATE, RtpPeer, RtpPeerStats

__all__ = [
    "CallFailed",
    "CallState",
    "TimelineEntry",
    "VirtualCall",
    "VirtualCaller",
]

log = logging.getLogger("opencomms.testing")

SDP = "application/sdp"
Samples = npt.NDArray[np.int16]


class CallFailed(Exception):
    """The call was not answered: `status` is the final SIP response (404 unknown number, 486 busy, 603
    declined, 480 unavailable, 408 no answer ...)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"the call failed: {status} {reason}".strip())
        self.status = status
        self.reason = reason


class CallState(enum.StrEnum):
    DIALLING = "dialling"
    RINGING = "ringing"
    ANSWERED = "answered"
    CANCELLING = "cancelling"
    ENDED = "ended"
    FAILED = "failed"


class CallEvent(enum.StrEnum):
    RINGING = "ringing"
    ANSWERED = "answered"
    REJECTED = "rejected"
    BAD_ANSWER = "bad answer"
    CANCEL = "cancel"
    HANG_UP = "hang up"
    REMOTE_BYE = "remote bye"


_S, _E = CallState, CallEvent
CALL_FSM: TransitionTable[CallState, CallEvent] = TransitionTable(
    "virtual call",
    {
        (_S.DIALLING, _E.RINGING): _S.RINGING,
        (_S.RINGING, _E.RINGING): _S.RINGING,
        (_S.DIALLING, _E.ANSWERED): _S.ANSWERED,
        (_S.RINGING, _E.ANSWERED): _S.ANSWERED,
        (_S.DIALLING, _E.REJECTED): _S.FAILED,
        (_S.RINGING, _E.REJECTED): _S.FAILED,
        (_S.DIALLING, _E.BAD_ANSWER): _S.FAILED,  # a 2xx whose SDP we cannot use: ACK, then BYE
        (_S.RINGING, _E.BAD_ANSWER): _S.FAILED,
        (_S.CANCELLING, _E.BAD_ANSWER): _S.ENDED,
        (_S.DIALLING, _E.CANCEL): _S.CANCELLING,
        (_S.RINGING, _E.CANCEL): _S.CANCELLING,
        (_S.CANCELLING, _E.RINGING): _S.CANCELLING,
        (_S.CANCELLING, _E.REJECTED): _S.ENDED,
        (_S.CANCELLING, _E.ANSWERED): _S.ENDED,  # answered as the CANCEL crossed it: ACK, then BYE
        (_S.ANSWERED, _E.HANG_UP): _S.ENDED,
        (_S.ANSWERED, _E.REMOTE_BYE): _S.ENDED,
    },
)
"""What a virtual call may do in which state; anything absent is ignored (a BYE crossing ours, late 1xx)."""


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """Something that happened on a call, at `time.monotonic()` time `at`."""

    at: float
    what: str


class VirtualCall:
    """One call placed by a VirtualCaller. Created by `VirtualCaller.dial`; see the module docstring."""

    def __init__(self, caller: VirtualCaller, uri: str, rtp: RtpPeer, sdp: LocalSdp, listener: Listener) -> None:
        self.caller = caller
        self.uri = uri
        self.state = CallState.DIALLING
        self.status: int | None = None
        """Final SIP status of the INVITE (200 when answered), None while it is pending."""
        self.reason = ""
        self.ended_by: str | None = None
        self.bye_reason: str | None = None
        """The Reason header (RFC 3326) of the far end's BYE, if it had one (the node's: the leg's resultInfo)."""
        """"caller" (we hung up or cancelled), "far end" (BYE received), "rejected" (no answer, an error)."""
        self.timeline: list[TimelineEntry] = []
        self.sip_call_id = ""
        self._rtp = rtp
        self._sdp = sdp
        self._listener = listener
        self._dialog: Dialog | None = None
        self._invite: ClientTransactionHandle | None = None
        self._answered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._ended = asyncio.Event()
        self._cursor = 0.0
        self._request: SipRequest | None = None
        """The first INVITE (kept to answer a digest challenge once when the caller has credentials)."""
        listener.on_note = self.note

    # -- state

    def note(self, what: str) -> None:
        """Add a line to the call's timeline."""
        self.timeline.append(TimelineEntry(time.monotonic(), what))

    @property
    def answered(self) -> bool:
        done = self._answered
        return done.done() and not done.cancelled() and done.exception() is None

    @property
    def ended(self) -> bool:
        """True once the call is over: hung up by either side, or never answered."""
        return self._ended.is_set()

    @property
    def rtp_stats(self) -> RtpPeerStats:
        return self._rtp.stats

    @property
    def codec(self) -> str | None:
        """The negotiated audio codec ("PCMU", "PCMA", "G722"); None before the answer."""
        return None if self._rtp.media is None else self._rtp.media.codec.name

    def _apply(self, event: CallEvent) -> bool:
        if not CALL_FSM.allows(self.state, event):
            return False
        self.state = CALL_FSM.apply(self.state, event)
        return True

    async def wait_answered(self, timeout: float = 10.0) -> None:
        """Return once the far end answered (200 OK, media flowing); CallFailed with the final status if not."""
        try:
            await asyncio.wait_for(asyncio.shield(self._answered), timeout)
        except TimeoutError:
            raise TimeoutError(f"the call to {self.uri} was not answered within {timeout:g} s") from None

    async def wait_ended(self, timeout: float = 10.0) -> None:
        """Return once the call is over (for example after the bot hung up: BYE received)."""
        try:
            await asyncio.wait_for(self._ended.wait(), timeout)
        except TimeoutError:
            raise TimeoutError(f"the call to {self.uri} did not end within {timeout:g} s") from None

    # -- hearing

    def heard_audio(self, start: float = 0.0, end: float | None = None) -> Samples:
        """Everything received so far (16 kHz mono int16), optionally between media times `start`/`end` (s)."""
        return self._listener.audio(start, end)

    @property
    def heard_seconds(self) -> float:
        """Media time: seconds of audio received since the answer."""
        return self._listener.seconds

    @property
    def heard_tones(self) -> str:
        """The DTMF keys the far end sent, in order (in-band ones recognised by the Goertzel detector)."""
        return "".join(t.key for t in self._listener.tones)

    @property
    def tone_events(self) -> list[HeardTone]:
        return list(self._listener.tones)

    @property
    def speech(self) -> list[SpeechSegment]:
        """Stretches of sound heard (prompts, speech, tones), in media time."""
        return list(self._listener.segments)

    async def hear(self, seconds: float) -> Samples:
        """The next `seconds` of audio received (shorter if the call ends first)."""
        listener = self._listener
        start = listener.seconds
        await listener.until(lambda: listener.closed or listener.seconds >= start + seconds, seconds * 3 + 2, "hear")
        return listener.audio(start, start + seconds)

    async def wait_for_tones(self, count: int, timeout: float = 5.0) -> str:
        """Wait until `count` DTMF keys have been heard in all; returns the keys heard."""
        tones = self._listener.tones
        await self._listener.until(lambda: len(tones) >= count, timeout, f"waiting for {count} DTMF tones")
        return self.heard_tones

    async def wait_for_speech(self, timeout: float = 20.0) -> float:
        """Wait for sound (a prompt, speech) that starts after the last `wait_for_silence`; returns its start
        (media time). Sound already going on counts. The default allows for a prompt rendered on demand (text to
        speech) on a loaded machine."""
        listener = self._listener

        def found() -> SpeechSegment | None:
            for seg in listener.segments:
                if seg.end is None or seg.end > self._cursor:
                    return seg
            return None

        await listener.until(lambda: found() is not None, timeout, "waiting for speech")
        seg = found()
        assert seg is not None
        self._cursor = max(self._cursor, seg.start)
        return seg.start

    async def wait_for_silence(self, seconds: float = 0.5, timeout: float = 20.0) -> float:
        """Wait until nothing has been heard for `seconds` (a prompt has finished); returns the media time at
        which the quiet began."""
        listener = self._listener
        await listener.until(lambda: listener.quiet_for >= seconds, timeout, f"waiting for {seconds:g} s of silence")
        self._cursor = listener.seconds
        return listener.seconds - listener.quiet_for

    # -- speaking

    async def press(
        self, keys: str, method: str = "rfc4733", *, duration_ms: float = 100.0, gap_ms: float = 70.0
    ) -> None:
        """Press DTMF keys: as RFC 4733 telephone events ("rfc4733", the default) or as tones in the audio
        ("inband"). Returns once the last key has been sent."""
        self._require_answered("press keys")
        keys = "".join(normalize_key(k) for k in keys)
        if method == "rfc4733":
            done = self._rtp.queue_keys(keys, duration_ms, gap_ms)
        elif method == "inband":
            gap = np.zeros(round(gap_ms * RATE / 1000), dtype=np.int16)
            parts = [p for k in keys for p in (generate_dtmf(k, duration_ms, -10.0, RATE), gap)]
            done = self._rtp.queue_audio(np.concatenate(parts) if parts else gap[:0])
        else:
            raise ValueError(f"method must be 'rfc4733' or 'inband', not {method!r}")
        self.note(f"press {keys} ({'RFC 4733' if method == 'rfc4733' else 'in-band'})")
        await done

    async def play_wav(
        self, source: str | Path | bytes | Samples, *, rate: int = SAMPLE_RATE, wait: bool = True
    ) -> float:
        """Speak into the call: a WAV file (path or bytes, any common format) or int16 samples at `rate`.
        Returns the duration in seconds; with `wait` only once the last sample has been sent."""
        self._require_answered("play audio")
        if isinstance(source, (str, Path)):
            pcm = decode_wav(await asyncio.to_thread(Path(source).read_bytes))
        elif isinstance(source, bytes):
            pcm = decode_wav(source)
        else:
            pcm = source if rate == SAMPLE_RATE else resample(np.asarray(source, dtype=np.int16), rate, SAMPLE_RATE)
        pcm = np.ascontiguousarray(pcm, dtype=np.int16)
        seconds = pcm.size / SAMPLE_RATE
        self.note(f"play {seconds:.1f} s of audio")
        done = self._rtp.queue_audio(pcm, rate=SAMPLE_RATE)  # G.722: as it is; G.711: narrowed to 8 kHz
        if wait:
            await done
        return seconds

    def _require_answered(self, what: str) -> None:
        if self.state is not CallState.ANSWERED:
            raise RuntimeError(f"cannot {what}: the call is {self.state.value}")

    # -- ending

    async def hang_up(self, timeout: float = 5.0) -> None:
        """End the call: BYE once answered, CANCEL while it rings. No effect once it has ended."""
        if self.state is CallState.ANSWERED:
            self._apply(CallEvent.HANG_UP)
            self.ended_by = "caller"
            dialog = self._dialog
            self.note("→ BYE")
            if dialog is not None:
                try:
                    response = await asyncio.wait_for(self.caller.endpoint.bye(dialog), timeout)
                    self.note(f"← {response.status} {response.reason} (BYE)")
                except TimeoutError:
                    self.note("BYE not answered")
            await self._finish()
        elif self.state in (CallState.DIALLING, CallState.RINGING):
            self._apply(CallEvent.CANCEL)
            self.ended_by = "caller"
            self.note("→ CANCEL")
            invite = self._invite
            if invite is not None:
                invite.cancel()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ended.wait(), timeout)
            if not self.ended:
                await self._finish()

    async def _finish(self) -> None:
        self._listener.close()
        await self._rtp.close()
        if not self._answered.done():
            self._answered.set_exception(CallFailed(self.status or 487, self.reason or "Request Terminated"))
            self._answered.exception()  # retrieved: nobody may be waiting
        self._ended.set()

    # -- SIP (driven by VirtualCaller)

    def _provisional(self, response: SipResponse) -> None:
        self.note(f"← {response.status} {response.reason}")
        if response.status >= 180:
            self._apply(CallEvent.RINGING)

    async def _run_invite(self, handle: ClientTransactionHandle) -> None:
        self._invite = handle
        response = await handle
        self.status, self.reason = response.status, response.reason
        self.note(f"← {response.status} {response.reason}")
        retry = self._authorized(response)
        if retry is not None:
            self.note("→ INVITE with credentials")
            dest = Destination("udp", self.caller.server[0], self.caller.server[1])
            await self._run_invite(self.caller.endpoint.send_request(retry, dest, on_provisional=self._provisional))
            return
        if not response.is_success:
            self._apply(CallEvent.REJECTED)
            self.ended_by = self.ended_by or "rejected"
            await self._finish()
            return
        dialog = handle.dialog
        self._dialog = dialog
        if dialog is not None:
            await self.caller.endpoint.ack(dialog)
            self.note("→ ACK")
        try:
            media = self._sdp.accept_answer(SessionDescription.parse(response.body))
        except (SdpError, NegotiationError, RuntimeError) as exc:
            self.reason = f"unusable SDP answer: {exc}"
            self.note(self.reason)
            self._apply(CallEvent.BAD_ANSWER)
            self.ended_by = self.ended_by or "rejected"
            if dialog is not None:
                await self._bye_and_finish(dialog)
            else:
                await self._finish()
            return
        if not self._apply(CallEvent.ANSWERED):  # cancelled meanwhile
            self._answered_then_cancelled()
            return
        self._rtp.start(media)
        self._answered.set_result(None)

    def _authorized(self, response: SipResponse) -> SipRequest | None:
        """The INVITE again with digest credentials answering a 401/407 (once), when the caller has them."""
        first, credentials = self._request, self.caller.credentials
        if response.status not in (401, 407) or first is None or credentials is None or self.state is not _S.DIALLING:
            return None
        self._request = None
        name = "Proxy-Authenticate" if response.status == 407 else "WWW-Authenticate"
        value = DigestClient().authorize(
            ",".join(response.headers.get_all(name)), "INVITE", str(first.uri), *credentials, first.body
        )
        header = ("Proxy-Authorization" if response.status == 407 else "Authorization", value)
        return self.caller.endpoint.new_request(
            "INVITE",
            first.uri,
            from_=first.from_,
            call_id=first.call_id,
            cseq=first.cseq.number + 1,
            headers=(header,),
            body=first.body,
            content_type=SDP,
        )

    def _answered_then_cancelled(self) -> None:
        dialog = self._dialog
        if dialog is not None:
            self.caller._spawn(self._bye_and_finish(dialog))

    async def _bye_and_finish(self, dialog: Dialog) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.caller.endpoint.bye(dialog), 5.0)
        await self._finish()

    def _on_request(self, handle: ServerTransactionHandle, req: SipRequest) -> None:
        if req.method == "BYE":
            self.note("← BYE")
            self.bye_reason = req.headers.get("Reason")
            handle.respond(200)
            self.note("→ 200 OK (BYE)")
            if self._apply(CallEvent.REMOTE_BYE):
                self.ended_by = "far end"
                self.caller._spawn(self._finish())
        elif req.method == "INVITE":
            self._reinvite(handle, req)
        else:
            handle.respond(200 if req.method in ("OPTIONS", "INFO") else 501)

    def _reinvite(self, handle: ServerTransactionHandle, req: SipRequest) -> None:
        """A re-INVITE (hold, a new address): answer it and follow."""
        if not req.body:
            handle.respond(200, body=bytes(self._sdp.offer()), content_type=SDP)
            return
        try:
            answer = self._sdp.answer(SessionDescription.parse(req.body))
        except (SdpError, NegotiationError):
            handle.respond(488)
            return
        self._rtp.update(answer.media)
        handle.respond(200, body=bytes(answer.sdp), content_type=SDP)
        self.note("← re-INVITE (answered 200)")


class VirtualCaller:
    """A phone on loopback that calls a SIP server (`server`: the node's SIP host and port).

    `number` is the caller's number (the bot sees it as a `phone` identity), `codecs` what it offers (PCMU
    first by default), `rfc4733` whether it offers telephone-event. Use as an async context manager: on exit
    every call still going is hung up and every socket closed."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        server: tuple[str, int],
        *,
        number: str = "+15550100",
        display_name: str | None = "Virtual Caller",
        host: str = "127.0.0.1",
        codecs: Sequence[Codec] = (PCMU, PCMA),
        rfc4733: bool = True,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.server = server
        self.credentials = credentials
        """(SIP user name, password) answering a 401/407 to an INVITE once (a registered softphone user)."""
        self.number = number
        self.display_name = display_name
        self.host = host
        self.codecs = tuple(codecs)
        self.rfc4733 = rfc4733
        self.endpoint = SipEndpoint(
            EndpointConfig(host=host, udp_port=0, tcp_port=None, user_agent="opencomms-virtual-caller"),
            on_request=self._on_request,
        )
        self.calls: list[VirtualCall] = []
        self._by_call_id: dict[str, VirtualCall] = {}
        self._tasks = TaskSet("virtual-caller")
        self._started = False

    async def start(self) -> VirtualCaller:
        if not self._started:
            await self.endpoint.start()
            self._started = True
        return self

    async def close(self) -> None:
        """Hang up every call still going and close the SIP and RTP sockets."""
        for call in self.calls:
            with contextlib.suppress(Exception):
                await call.hang_up(timeout=2.0)
            with contextlib.suppress(Exception):
                await call._finish()
        await self._tasks.close()
        await self.endpoint.close()

    async def __aenter__(self) -> VirtualCaller:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def sip_uri(self) -> str:
        """Our address, as the bot sees it in the call's source."""
        return str(SipUri(host=self.host, user=self.number, port=self.endpoint.local_port("udp")))

    def target_uri(self, target: str) -> str:
        """The Request-URI for a number ('+14255550100' -> sip:+14255550100@<server>) or a SIP/tel URI."""
        if target.startswith(("sip:", "sips:", "tel:")):
            return target
        host, port = self.server
        return str(SipUri(host=f"[{host}]" if ":" in host else host, user=target, port=port))

    async def dial(self, target: str, *, headers: Sequence[tuple[str, str]] = ()) -> VirtualCall:
        """Place a call to a number or SIP URI (sent to `server`); returns at once with the call ringing.
        `await call.wait_answered()` next."""
        await self.start()
        uri = self.target_uri(target)
        listener = Listener()
        rtp = RtpPeer(self.host, on_audio=listener.feed, on_key=listener.key_received, on_wide_audio=listener.feed_wide)
        port = await rtp.open()
        sdp = LocalSdp(self.host, port, self.codecs, telephone_event_pt=101 if self.rfc4733 else None)
        call = VirtualCall(self, uri, rtp, sdp, listener)
        sender = NameAddr(SipUri(host=self.host, user=self.number), self.display_name)
        request = self.endpoint.new_request(
            "INVITE",
            parse_uri(uri),
            from_=sender,
            headers=tuple(headers),
            body=bytes(sdp.offer()),
            content_type=SDP,
        )
        call.sip_call_id = request.call_id
        call._request = request
        self.calls.append(call)
        self._by_call_id[request.call_id] = call
        call.note(f"→ INVITE {uri}")
        handle = self.endpoint.send_request(
            request, Destination("udp", self.server[0], self.server[1]), on_provisional=call._provisional
        )
        self._spawn(call._run_invite(handle))
        return call

    async def dial_in(
        self, number: str, conference_id: str, passcode: str | None = None, *, method: str = "rfc4733"
    ) -> VirtualCall:
        """Dial a meeting dial-in number and answer the attendant: the conference id, then the passcode if given
        (each followed by '#', each after its prompt began). Returns the call, joined or in the lobby."""
        call = await self.dial(number)
        await call.wait_answered()
        await call.wait_for_speech()
        await call.press(conference_id + "#", method)
        if passcode is not None:
            await call.wait_for_silence(0.3)
            await call.wait_for_speech()
            await call.press(passcode + "#", method)
        return call

    def _on_request(self, handle: ServerTransactionHandle, req: SipRequest, source: tuple[str, int]) -> None:
        call = self._by_call_id.get(req.call_id)
        if call is not None and handle.dialog is not None:
            call._on_request(handle, req)
        elif req.method == "OPTIONS":
            handle.respond(200)
        elif req.method == "INVITE":
            handle.respond(486, "Busy Here")  # a virtual caller places calls; it does not take them
        elif req.method != "ACK":
            handle.respond(481)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks.spawn(coro)  # a failure is logged by the set
