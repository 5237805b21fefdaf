"""Application-hosted media, node side: for each bot leg answered or created with an appHostedMediaConfig (the blob
of the SDK's LocalMediaSession), a WebSocket to the bot's media endpoint carrying the leg's audio both ways.
The blob and the frame protocol are defined in wire/apphosted.py.

Owns one task per such leg (connect, hello/ready, receive loop, one reconnection after a drop), the leg's listener
on the engine (HeardParts), the dominant speaker of its conversation (from the engine's VAD on the other legs), and
ending the leg when its media endpoint cannot be reached (410/9140) or is lost for good (410/9141). It reaches the
engine only through commands (`EnginePort.call`) and must not know service-hosted operations (MediaService does).

* **Connecting.** Once the leg is established (MediaService tells its observers), the node connects, retrying
  every 0.2 s until `connect_timeout`; a bot that closes with 4401 (wrong key or secret) is not retried. After a
  drop (a close without `bye`, or no pong to the 5 s heartbeat) the node reconnects once, retrying until the same
  timeout; if that fails the leg ends. A `bye` from the bot stops its media for good. The node's egress policy
  (`opencomms.net.egress`) judges the URL and every redirect hop of the handshake; host names are resolved and
  checked at connect time and the connection goes to the checked address. A refused hop ends the leg (410/9140).
* **Bot to node.** Frames wait in the leg's playout queue (8 frames, the oldest dropped when full); the engine's
  far-end queue gets at most one frame of the leg per tick (`push_inbound`, media/taps.py): a `TapPush` command
  sent on arrival pushes it
  for the coming tick when that tick has none yet, else the leg's listener (end of each tick) pushes the next one for
  the next tick. So a frame is heard at the first tick after it arrives and bursts are played out one per tick;
  when frames have been left waiting at the start of 5 ticks in a row (a standing backlog, after a stall or
  from a bot whose clock runs fast), the oldest is dropped: latency beats completeness.
* **Node to bot.** The leg's listener (`HeardTalkers`, media/taps.py) runs on the engine's side every tick; it
  keeps copies, which reach the loop with the tick's events as one HeardFrames event. The loop encodes them
  (mixed + the 4 loudest other participants, each with the mediaStream sourceId the engine holds for it) and
  hands them to the leg's sender task. In a conference the engine hands over only the talkers it mixed (K), so a
  bot in a meeting of 1000 costs what its talkers cost. A slow bot loses its oldest frames (8 kept).
* **Events.** ToneDetected on the leg -> `dtmf`. Dominant speaker -> `dominantSpeaker` when it changes: in a
  conference, the engine's DominantSpeakerChanged; in a smaller conversation, the engine's VAD (a VadBank) on each
  other participant's own audio (the unmixed frames).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp
import numpy as np
from yarl import URL

from opencomms.calling.media import EnginePort
from opencomms.calling.model import Call
from opencomms.calling.service import CallService
from opencomms.calling.wsbridge import close_ws, egress_session, open_ws, send_loop
from opencomms.domain import results
from opencomms.domain.results import ResultInfo
from opencomms.media import engine as eng
from opencomms.media.speakers import HISTORY, DominantSpeaker, SpeakerVad, loudest
from opencomms.media.taps import TapClose, TapOpen, TapPush
from opencomms.net.egress import EgressPolicy, refusal
from opencomms.wire.apphosted import (
    MAX_UNMIXED,
    TICKS_PER_SECOND,
    UNAUTHORIZED_CLOSE,
    FrameError,
    MediaBlob,
    decode_audio,
    decode_control,
    encode_audio,
    encode_control,
    read_blob,
)
from opencomms.wire.calls import is_app_hosted
from opencomms.wire.tones import tone_name

__all__ = ["AppHostedMedia", "AppHostedStats"]

log = logging.getLogger("opencomms.media")

RETRY_SECONDS = 0.2
SEND_QUEUE_FRAMES = 8
MAX_MESSAGE_BYTES = 64 * 1024

Frame = eng.Samples


@dataclass(eq=False)
class _Bridge:
    """One app-hosted leg's media connection."""

    call_id: str
    conversation_id: str
    source_id: str
    blob: MediaBlob
    task: asyncio.Task[None] | None = None
    ws: aiohttp.ClientWebSocketResponse | None = None
    audio: deque[bytes] = field(default_factory=lambda: deque(maxlen=SEND_QUEUE_FRAMES))
    control: deque[str] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    speakers: DominantSpeaker = field(default_factory=DominantSpeaker)
    sequence: int = 0
    closing: bool = False
    reconnects: int = 0


@dataclass
class AppHostedStats:
    """Counters of application-hosted media (since the node started)."""

    connections: int = 0
    reconnects: int = 0
    failures: int = 0
    refused: int = 0
    """Endpoints refused because their address is private, loopback or reserved and not allowed."""
    frames_sent: int = 0
    frames_received: int = 0
    frames_unsent: int = 0
    """Frames for bots dropped because a bot's socket had 8 waiting (a slow bot)."""
    frames_trimmed: int = 0
    """Frames from bots dropped to shorten a standing backlog, or because 8 were already waiting."""
    bad_messages: int = 0


class AppHostedMedia:
    """The node's side of application-hosted media; a MediaService observer (see the module docstring)."""

    def __init__(
        self,
        calls: CallService,
        engine: EnginePort,
        *,
        connect_timeout: float = 10.0,
        allow_private: Sequence[str] = (),
        egress: EgressPolicy | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if connect_timeout <= 0:
            raise ValueError("connect_timeout must be positive")
        self.calls = calls
        self.engine = engine
        self.connect_timeout = connect_timeout
        self._egress = egress if egress is not None else EgressPolicy(allow_private)
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._bridges: dict[str, _Bridge] = {}
        self._by_conv: dict[str, set[str]] = {}
        self._vad = SpeakerVad()
        self._frames: deque[tuple[str, Frame, list[tuple[str, str, Frame]], float]] = deque()
        self._conferences: set[str] = set()
        """Conversations whose dominant speaker the engine reports (conferences): no VAD of ours there."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self.stats = AppHostedStats()

    @property
    def active(self) -> int:
        """App-hosted legs with a media connection (or trying to get one)."""
        return len(self._bridges)

    # -- MediaService observer (event loop) ----------------------------------------------------------------
    def connected(self, call: Call) -> None:
        """A leg joined the engine: bridge it if it is app-hosted."""
        conv = call.conversation_id
        if call.id in self._bridges or not is_app_hosted(call.media_config or {}):
            return
        try:
            blob = read_blob((call.media_config or {}).get("blob"))
        except Exception:  # validated at create/answer; a stored call from an older node may not be
            log.warning("app-hosted media blob is invalid", extra={"call_id": call.id})
            return
        self._loop = asyncio.get_running_loop()
        bridge = _Bridge(call.id, conv, call.source_id, blob)
        self._bridges[call.id] = bridge
        self._by_conv.setdefault(conv, set()).add(call.id)
        bridge.task = self._loop.create_task(self._run(bridge), name=f"apphosted-{call.id}")

    def ending(self, call: Call) -> None:
        self._vad.forget(call.id)
        bridge = self._bridges.pop(call.id, None)
        if bridge is None:
            return
        members = self._by_conv.get(bridge.conversation_id)
        if members is not None:
            members.discard(call.id)
            if not members:
                del self._by_conv[bridge.conversation_id]
                self._conferences.discard(bridge.conversation_id)
        self._stop(bridge, bye="call ended")

    def on_events(self, events: Sequence[eng.MediaEvent]) -> None:
        heard = False
        for event in events:
            if isinstance(event, eng.HeardFrames):
                self.stats.frames_trimmed += event.trimmed
                self._frames.extend(event.frames)
                heard = True
            elif not self._bridges:
                continue
            elif isinstance(event, eng.DominantSpeakerChanged):
                self._dominant(event)
            elif isinstance(event, eng.ToneDetected):
                bridge = self._bridges.get(event.leg_id)
                if bridge is not None:
                    at = round(event.at * TICKS_PER_SECOND)
                    self._send_control(bridge, encode_control("dtmf", key=event.key, tone=tone_name(event.key), at=at))
        if heard:
            self._flush()

    async def close(self) -> None:
        """Stop every bridge (the node is shutting down) and close the HTTP session."""
        bridges = list(self._bridges.values())
        self._bridges.clear()
        self._by_conv.clear()
        for bridge in bridges:
            self._stop(bridge, bye=None)  # no bye: the bot keeps the socket for the restarted node to reconnect
        tasks = [b.task for b in bridges if b.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- engine side -----------------------------------------------------------------------------------------
    def _flush(self) -> None:
        calls = self.calls
        speakers: dict[str, Frame] = {}
        frame_time = None
        while self._frames:
            leg_id, heard, unmixed, now = self._frames.popleft()
            if now != frame_time:  # the VAD runs once per tick, on every participant's own frame of that tick
                if speakers:
                    self._detect_speech(speakers)
                speakers, frame_time = {}, now
            speakers.update((other, frame) for other, _, frame in unmixed)
            bridge = self._bridges.get(leg_id)
            if bridge is None or bridge.ws is None:
                continue
            sources = {other: source for other, source, _ in unmixed}
            tagged: list[tuple[str, bytes]] = []
            for other, frame in loudest([(other, frame) for other, _, frame in unmixed], MAX_UNMIXED):
                source = sources[other]
                if not source:  # a leg the engine has no sourceId for: the roster's
                    leg = calls.leg(other)
                    source = leg.source_id if leg is not None else ""
                if source:
                    tagged.append((source, frame.tobytes()))
            bridge.sequence += 1
            message = encode_audio(bridge.sequence, round(now * TICKS_PER_SECOND), heard.tobytes(), tuple(tagged))
            if len(bridge.audio) == SEND_QUEUE_FRAMES:
                self.stats.frames_unsent += 1
            bridge.audio.append(message)
            bridge.wake.set()
        if speakers:
            self._detect_speech(speakers)

    def _send_control(self, bridge: _Bridge, text: str) -> None:
        if bridge.ws is not None:
            bridge.control.append(text)
            bridge.wake.set()

    def _detect_speech(self, speakers: dict[str, Frame]) -> None:
        for leg_id, speaking in self._vad.process(speakers.items()):
            self._speech(leg_id, speaking)

    def _dominant(self, event: eng.DominantSpeakerChanged) -> None:
        """The engine's dominant speaker of a conference: to every bot of it but the speaker itself."""
        conv = event.mix_id
        self._conferences.add(conv)
        source = str(event.source_id) if event.source_id else None
        if source is None and event.leg_id is not None:
            leg = self.calls.leg(event.leg_id)
            source = leg.source_id if leg is not None else None
        for call_id in self._by_conv.get(conv, ()):
            bridge = self._bridges.get(call_id)
            if bridge is None or call_id == event.leg_id:
                continue
            speakers = bridge.speakers
            speakers.current = source
            if source is not None:
                speakers.history = [source, *(s for s in speakers.history if s != source)][:HISTORY]
            self._send_control(
                bridge, encode_control("dominantSpeaker", sourceId=speakers.current, history=speakers.history)
            )

    def _speech(self, leg_id: str, speaking: bool) -> None:
        leg = self.calls.leg(leg_id)
        if leg is None or leg.conversation_id in self._conferences:
            return
        for call_id in self._by_conv.get(leg.conversation_id, ()):
            bridge = self._bridges.get(call_id)
            if bridge is None or call_id == leg_id:
                continue
            if bridge.speakers.update(leg.source_id, speaking):
                speakers = bridge.speakers
                self._send_control(
                    bridge, encode_control("dominantSpeaker", sourceId=speakers.current, history=speakers.history)
                )

    # -- the connection ----------------------------------------------------------------------------------------
    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = egress_session(self._egress, self._ssl)
        return self._session

    def _stop(self, bridge: _Bridge, *, bye: str | None) -> None:
        bridge.closing = True
        ws = bridge.ws
        if bye is not None and ws is not None and not ws.closed:
            bridge.control.append(encode_control("bye", reason=bye))
        task = bridge.task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self.engine.call(TapClose(bridge.call_id))

    async def _run(self, bridge: _Bridge) -> None:
        try:
            failure = await self._connect(bridge)
            while failure is None:
                self.engine.call(TapOpen(bridge.call_id))
                if await self._serve(bridge) or bridge.closing:
                    return
                bridge.reconnects += 1
                self.stats.reconnects += 1
                log.info("app-hosted media dropped, reconnecting", extra={"call_id": bridge.call_id})
                failure = await self._connect(bridge)
                if failure is results.APP_MEDIA_UNREACHABLE:
                    failure = results.APP_MEDIA_LOST
            if failure is not None and not bridge.closing:
                self.stats.failures += 1
                log.warning("app-hosted media failed", extra={"call_id": bridge.call_id, "code": failure.subcode})
                await self.calls.media_failed(bridge.call_id, failure)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("app-hosted media failed", extra={"call_id": bridge.call_id})
            await self.calls.media_failed(bridge.call_id, results.APP_MEDIA_LOST)
        finally:
            ws, bridge.ws = bridge.ws, None
            await close_ws(ws, bridge.control)  # with the `bye` queued by _stop

    async def _connect(self, bridge: _Bridge) -> ResultInfo | None:
        """Connect and exchange hello/ready before the deadline: None, or why not."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.connect_timeout
        url = URL(bridge.blob.url)
        blob = bridge.blob
        hello = encode_control(
            "hello", v=1, key=blob.key, secret=blob.secret, callId=bridge.call_id, sourceId=bridge.source_id
        )
        while not bridge.closing:
            ws: aiohttp.ClientWebSocketResponse | None = None
            try:
                async with asyncio.timeout_at(deadline):
                    ws = await open_ws(self._http(), url, max_msg_size=MAX_MESSAGE_BYTES)
                    await ws.send_str(hello)
                    msg = await ws.receive()
                    if msg.type is aiohttp.WSMsgType.TEXT and decode_control(msg.data).get("type") == "ready":
                        bridge.ws = ws
                        self.stats.connections += 1
                        log.info("app-hosted media connected", extra={"call_id": bridge.call_id})
                        return None
                    if ws.close_code == UNAUTHORIZED_CLOSE or msg.data == UNAUTHORIZED_CLOSE:
                        log.warning("app-hosted media endpoint refused the hello", extra={"call_id": bridge.call_id})
                        await ws.close()
                        return results.APP_MEDIA_UNREACHABLE
            except TimeoutError:
                if ws is not None:
                    await ws.close()
                return results.APP_MEDIA_UNREACHABLE
            except (aiohttp.ClientError, OSError, FrameError) as exc:
                refused = refusal(exc)
                if refused is not None:  # a forbidden address: final
                    self.stats.refused += 1
                    log.warning("app-hosted media endpoint refused: %s", refused, extra={"call_id": bridge.call_id})
                    return results.APP_MEDIA_UNREACHABLE
                log.debug("app-hosted media connect failed: %s", exc, extra={"call_id": bridge.call_id})
            if ws is not None:
                await ws.close()
            if loop.time() + RETRY_SECONDS >= deadline:
                return results.APP_MEDIA_UNREACHABLE
            await asyncio.sleep(RETRY_SECONDS)
        return None

    async def _serve(self, bridge: _Bridge) -> bool:
        """Carry media until the socket closes: True for a `bye` from the bot, False for a drop."""
        ws = bridge.ws
        assert ws is not None
        sender = asyncio.get_running_loop().create_task(
            send_loop(ws, bridge.wake, bridge.control, bridge.audio, on_frame=self._sent)
        )

        leg = bridge.call_id
        try:
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.BINARY:
                    try:
                        audio = decode_audio(msg.data)
                        if audio.unmixed:
                            raise FrameError("a bot sends mixed frames only")
                    except FrameError:
                        self.stats.bad_messages += 1
                        continue
                    self.stats.frames_received += 1
                    frame = np.frombuffer(audio.pcm, dtype="<i2").astype(np.int16)
                    self.engine.call(TapPush(leg, frame))  # heard at the coming tick if it is the leg's first for it
                elif msg.type is aiohttp.WSMsgType.TEXT:
                    try:
                        control = decode_control(msg.data)
                    except FrameError:
                        self.stats.bad_messages += 1
                        continue
                    if control["type"] == "bye":
                        log.info("app-hosted media closed by the bot", extra={"call_id": leg})
                        return True
                else:
                    break
            return False
        finally:
            sender.cancel()
            bridge.audio.clear()
            if not bridge.closing:  # else _run's clean-up sends the queued `bye` and closes
                bridge.ws = None
                bridge.control.clear()
                if not ws.closed:
                    await ws.close()

    def _sent(self) -> None:
        self.stats.frames_sent += 1
