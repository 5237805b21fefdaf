"""Media streams, node side: a call's (or a meeting participant's) audio to a bot's WebSocket in Twilio Media Streams'
format, and the bot's audio back into the call (#opencomms startMediaStream / stopMediaStream). The messages are
defined in wire/mediastreams.py.

Owns one task per stream (connect through the egress policy, `connected` + `start`, then receive), the stream's
engine feeds (media/feeds.py: data commands, so the engine may run in this process or in the media process), the
audio conversion (16 kHz frames <-> 8 kHz µ-law) and the playout queue. It is a MediaService observer (legs
joining and ending, engine events) and reaches the engine only through commands, like calling/apphosted.py, which
it follows:

* **Node to bot.** `Heard(call)` (what the bot's call hears: the caller, or the meeting's mix) or, with
  `participantId`, `Said(participant)` (that participant's own, unmixed audio) is the `inbound` track; `Said(call)`
  (what the bot's call says: prompts and the stream's own audio) the `outbound` track. Feeds on the engine side
  only copy frames (FedFrames events); the event loop converts them (a streaming 16 -> 8 kHz resampler per track, µ-law)
  and sends one `media` per 20 ms per track. A slow bot loses its oldest messages (`send_queue_messages` kept).
* **Bot to node.** `media` payloads (any length) are decoded, resampled to 16 kHz and cut into 20 ms frames in the
  stream's playout queue (bounded by `playout_seconds`; past it, audio is dropped and counted), of which the
  engine's feed holds the next `PLAY_AHEAD` frames: every tick it plays one into the call (`push_inbound`: the
  call's participants hear it as the bot speaking, summed with its prompts) and reports how many it has taken, by
  which the loop tops it up. A `mark` waits in the queue behind the audio sent before it and is echoed when that
  audio has played; `clear` empties both queues and echoes their marks at once.
* **Events.** Keys the call hears (ToneDetected) -> `dtmf`. The call ending, the participant leaving or
  stopMediaStream -> `stop`, then the socket closes. A bot closing its socket ends its stream only; a stream that
  cannot connect within `connect_timeout` is given up (logged, counted). The call always goes on.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
from yarl import URL

from opencomms.calling import notifications as notes
from opencomms.calling.media import EnginePort
from opencomms.calling.model import Call, JsonObj
from opencomms.calling.service import ACCESS_MEDIA, CallService
from opencomms.calling.wsbridge import close_ws, egress_session, open_ws, send_loop
from opencomms.config import StreamsConfig
from opencomms.domain.calls import CallState
from opencomms.domain.errors import BadRequest, InvalidState, NotFound, QuotaExceeded
from opencomms.domain.ids import new_id, normalize_id
from opencomms.domain.results import ResultInfo
from opencomms.media import engine as eng
from opencomms.media.feeds import FeedClear, FeedClose, FeedKind, FeedOpen, FeedPush
from opencomms.media.frames import FRAME_SAMPLES, SAMPLE_RATE
from opencomms.media.g711 import ulaw_decode, ulaw_encode
from opencomms.media.resample import Resampler
from opencomms.net.egress import EgressPolicy, refusal
from opencomms.wire import mediastreams as wire
from opencomms.wire.calls import is_app_hosted

__all__ = ["MediaStreams", "StreamStats"]

log = logging.getLogger("opencomms.media")

START_OPERATION = "#opencomms.startMediaStreamOperation"
STREAM_DONE = ResultInfo(200, 0, "The media stream is connected.")
STREAM_UNREACHABLE = ResultInfo(410, 9142, "The media stream's WebSocket could not be reached (or is not allowed).")
"""The start operation's outcome when the socket cannot be opened within connect_timeout (subcode ours)."""
RETRY_SECONDS = 0.2
MARK_ROOM = 1024
"""Marks a playout queue holds beyond its audio."""
PLAY_AHEAD = 25
"""Frames of a stream's playout the engine's feed holds (0.5 s, topped up by the loop as they play: a busy loop
leaves no gap; `clear` empties the feed too, and marks echo by frames taken, so the depth delays neither)."""
Frame = eng.Samples
Caller = Any
"""auth's caller (app id, tenant id, roles), as CallService takes it."""


@dataclass(eq=False)
class _Stream:
    sid: str
    call_id: str
    conversation_id: str
    inbound_leg: str
    """Whose audio the inbound track carries: the call itself (what it hears) or a participant's leg (what it says)."""
    request: wire.StartMediaStream
    encoder: wire.StreamEncoder
    playout: deque[Frame | str]
    """Frames to play and mark names, in order, not yet handed to the engine's feed."""
    outbox: deque[str]
    max_frames: int
    """Queued audio (frames and marks) past which the bot's audio is dropped."""
    task: asyncio.Task[None] | None = None
    ws: aiohttp.ClientWebSocketResponse | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    feeds: list[str] = field(default_factory=list)
    play_feed: str = ""
    """The engine feed that plays the bot's audio into the call (also the inbound track when that is the call's)."""
    sent: int = 0
    """Frames handed to the play feed."""
    taken: int = 0
    """Frames the play feed has played or cleared (as last reported)."""
    marks: deque[tuple[int, str]] = field(default_factory=deque)
    """Marks whose audio is in the feed: (frames sent before it, name), echoed once that many are taken."""
    down: dict[str, Resampler] = field(default_factory=dict)
    up: Resampler = field(default_factory=lambda: Resampler(wire.SAMPLE_RATE, SAMPLE_RATE))
    pending: np.ndarray[Any, np.dtype[np.int16]] = field(default_factory=lambda: np.zeros(0, dtype=np.int16))
    op_id: str = ""
    """The startMediaStream operation: `running` until the socket opens, then completed (or failed)."""
    started_at: float | None = None
    """Engine time of the first frame sent (timestamps count from it)."""
    closing: bool = False


@dataclass
class StreamStats:
    """Counters of media streams (since the node started)."""

    started: int = 0
    connected: int = 0
    failed: int = 0
    """Streams given up because their WebSocket could not be opened (or its address is refused)."""
    media_sent: int = 0
    media_unsent: int = 0
    """Messages dropped because a slow bot had `send_queue_messages` waiting."""
    frames_played: int = 0
    frames_dropped: int = 0
    """20 ms frames from bots dropped because their playout queue was full."""
    marks: int = 0
    bad_messages: int = 0


class MediaStreams:
    """Twilio-format media streams of the node's calls (see the module docstring)."""

    def __init__(
        self,
        calls: CallService,
        engine: EnginePort,
        *,
        config: StreamsConfig | None = None,
        egress: EgressPolicy | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.calls = calls
        self.engine = engine
        self.config = config or StreamsConfig()
        self._egress = egress if egress is not None else EgressPolicy(())
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._streams: dict[str, _Stream] = {}
        self._by_call: dict[str, list[str]] = {}
        self._frames: deque[tuple[_Stream, str, Frame | str, float]] = deque()
        """(stream, track or "mark", frame or mark name, engine time), from the engine's feeds."""
        self._feeds: dict[str, tuple[_Stream, str]] = {}
        """Open feeds: their stream and the track they carry ("" for the play feed without a track)."""
        self._feed_ids = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = StreamStats()

    @property
    def active(self) -> int:
        return len(self._streams)

    # -- REST actions (event loop) ---------------------------------------------------------------------------
    async def start(self, caller: Caller, call_id: str, req: wire.StartMediaStream) -> JsonObj:
        """startMediaStream: checks, then connects in the background; the operation carries the streamSid."""
        call = self.calls.own(caller, call_id)
        self.calls.require(caller, ACCESS_MEDIA)
        if call.state is not CallState.ESTABLISHED:
            raise InvalidState(f"The action 'startMediaStream' is not allowed while the call is '{call.state.value}'.")
        if is_app_hosted(call.media_config or {}):
            raise InvalidState("The action 'startMediaStream' needs service-hosted media; this call is app-hosted.")
        if len(self._by_call.get(call.id, ())) >= self.config.max_per_call:
            raise QuotaExceeded(f"This call already has {self.config.max_per_call} media stream(s); stop one first.")
        inbound_leg = call.id
        if req.participant_id:
            inbound_leg = self._participant_leg(call, req.participant_id)
        self._loop = asyncio.get_running_loop()
        sid = wire.new_stream_sid()
        tracks = ("inbound", "outbound") if req.track == "both" else (req.track,)
        encoder = wire.StreamEncoder(sid, call.id, call.tenant_id, tracks, dict(req.custom_parameters))
        frames = max(1, round(self.config.playout_seconds * SAMPLE_RATE / FRAME_SAMPLES))
        stream = _Stream(
            sid,
            call.id,
            call.conversation_id,
            inbound_leg,
            req,
            encoder,
            playout=deque(),  # bounded by _queue_audio and MARK_ROOM
            outbox=deque(maxlen=self.config.send_queue_messages),
            max_frames=frames,
        )
        self._streams[sid] = stream
        self._by_call.setdefault(call.id, []).append(sid)
        self.stats.started += 1
        op = self._operation(call, START_OPERATION, req.client_context, status="running", streamSid=sid)
        stream.op_id = op["id"]
        stream.task = self._loop.create_task(self._run(stream), name=f"mediastream-{sid}")
        log.info("media stream started", extra={"call_id": call.id, "stream_sid": sid})
        return op

    def stop(self, caller: Caller, call_id: str, req: wire.StopMediaStream) -> JsonObj:
        """stopMediaStream: `stop` to the bot and the socket closes (one stream, or every stream of the call)."""
        call = self.calls.own(caller, call_id)
        sids = list(self._by_call.get(call.id, ()))
        if req.stream_sid is not None:
            if req.stream_sid not in sids:
                raise NotFound(f"No media stream {req.stream_sid!r} on this call.")
            sids = [req.stream_sid]
        for sid in sids:
            self._end(sid)
        return self._operation(call, "#opencomms.stopMediaStreamOperation", req.client_context)

    def _participant_leg(self, call: Call, participant_id: str) -> str:
        wanted = normalize_id(participant_id)
        for leg in self.calls.legs():
            if leg.conversation_id == call.conversation_id and leg.my_participant_id == wanted:
                if leg.id == call.id:
                    raise BadRequest("'participantId' names the bot's own participant; leave it out.")
                return leg.id
        raise NotFound(f"No participant {participant_id!r} in this call.")

    def _operation(
        self, call: Call, kind: str, client_context: str | None, *, status: str = "completed", **extra: Any
    ) -> JsonObj:
        op_id = new_id()
        result = STREAM_DONE.to_wire() if status == "completed" else None
        body: JsonObj = {
            "@odata.type": kind,
            "id": op_id,
            "status": status,
            "clientContext": client_context,
            "resultInfo": result,
            **extra,
        }
        with self.calls.unit():
            self.calls.store.put("operation", f"{call.id}/{op_id}", body)
        return body

    def _started(self, stream: _Stream, result: ResultInfo) -> None:
        """The start operation ends (the socket opened, or could not be opened): stored, and the bot notified
        (`deleted` on the operation, as Graph reports finished operations) if its call still exists."""
        call = self.calls.leg(stream.call_id)
        if call is None or not stream.op_id:
            return
        url = f"/communications/calls/{stream.call_id}/operations/{stream.op_id}"
        body: JsonObj = {
            "@odata.type": START_OPERATION,
            "id": stream.op_id,
            "status": "completed" if result.code < 400 else "failed",
            "clientContext": stream.request.client_context,
            "resultInfo": result.to_wire(),
            "streamSid": stream.sid,
        }
        with self.calls.unit():
            self.calls.store.put("operation", f"{stream.call_id}/{stream.op_id}", body)
            self.calls.notify(call, notes.envelope("deleted", url, {**body, "@odata.id": url, "@odata.etag": 'W/"2"'}))

    # -- MediaService observer (event loop) ------------------------------------------------------------------
    def connected(self, call: Call) -> None:
        """(LegObserver) nothing: streams start on request."""

    def ending(self, call: Call) -> None:
        for sid in list(self._by_call.get(call.id, ())):
            self._end(sid)
        for stream in [s for s in self._streams.values() if s.inbound_leg == call.id]:
            self._end(stream.sid)  # the participant it listened to left

    def on_events(self, events: Sequence[eng.MediaEvent]) -> None:
        if not self._streams:
            return
        for event in events:
            if isinstance(event, eng.FedFrames):
                self._fed(event)
            elif isinstance(event, eng.ToneDetected):
                for sid in self._by_call.get(event.leg_id, ()):
                    stream = self._streams[sid]
                    self._send(stream, stream.encoder.dtmf(event.key))

    async def close(self) -> None:
        """Stop every stream (the node is shutting down) and close the HTTP session."""
        streams = list(self._streams)
        for sid in streams:
            self._end(sid)
        tasks = [t for t in self._tasks if not t.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _end(self, sid: str) -> None:
        stream = self._streams.pop(sid, None)
        if stream is None:
            return
        sids = self._by_call.get(stream.call_id)
        if sids is not None:
            sids.remove(sid)
            if not sids:
                del self._by_call[stream.call_id]
        stream.closing = True
        if stream.ws is not None and not stream.ws.closed:
            stream.outbox.append(stream.encoder.stop())
        stream.wake.set()
        task = stream.task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        for feed_id in stream.feeds:
            self._feeds.pop(feed_id, None)
            self.engine.call(FeedClose(feed_id))
        stream.feeds.clear()
        log.info("media stream stopped", extra={"call_id": stream.call_id, "stream_sid": sid})

    # -- engine feeds ------------------------------------------------------------------------------------------
    def _open_feeds(self, stream: _Stream) -> None:
        """Open the stream's feeds: `heard` on the call plays the bot's audio every tick and carries the inbound
        track unless a participant's `said` does; `said` on the call carries the outbound track."""
        tracks = stream.encoder.tracks
        own_inbound = "inbound" in tracks and stream.inbound_leg == stream.call_id
        stream.play_feed = self._feed(stream, stream.call_id, "heard", "inbound" if own_inbound else "")
        if "inbound" in tracks and not own_inbound:
            self._feed(stream, stream.inbound_leg, "said", "inbound")
        if "outbound" in tracks:
            self._feed(stream, stream.call_id, "said", "outbound")
        self._top_up(stream)

    def _feed(self, stream: _Stream, leg_id: str, kind: FeedKind, track: str) -> str:
        self._feed_ids += 1
        feed_id = f"mediastream/{self._feed_ids}"
        self._feeds[feed_id] = (stream, track)
        stream.feeds.append(feed_id)
        self.engine.call(FeedOpen(feed_id, leg_id, kind, send=bool(track)))
        return feed_id

    def _fed(self, event: eng.FedFrames) -> None:
        feeds = self._feeds
        for feed_id, frame, now, taken in event.frames:
            entry = feeds.get(feed_id)
            if entry is None:
                continue
            stream, track = entry
            if feed_id == stream.play_feed:
                if taken > stream.taken:
                    self.stats.frames_played += taken - stream.taken
                    stream.taken = taken
                self._top_up(stream)
                self._echo_marks(stream, now)
            if track and isinstance(frame, np.ndarray):
                self._frames.append((stream, track, frame, now))
        if self._frames:
            self._flush()

    def _top_up(self, stream: _Stream) -> None:
        """Hand the feed the next frames of the playout queue (it holds PLAY_AHEAD at most); the marks met on the
        way wait for the frames before them to be taken."""
        if stream.closing or not stream.play_feed:
            return
        room = PLAY_AHEAD - (stream.sent - stream.taken)
        frames: list[Frame] = []
        playout = stream.playout
        while playout and (room > 0 or isinstance(playout[0], str)):
            item = playout.popleft()
            if isinstance(item, str):
                stream.marks.append((stream.sent + len(frames), item))
                continue
            frames.append(item)
            room -= 1
        if frames:
            stream.sent += len(frames)
            self.engine.call(FeedPush(stream.play_feed, tuple(frames)))

    def _echo_marks(self, stream: _Stream, now: float) -> None:
        marks = stream.marks
        while marks and marks[0][0] <= stream.taken:
            self._frames.append((stream, "mark", marks.popleft()[1], now))

    def _flush(self) -> None:
        while self._frames:
            stream, kind, item, now = self._frames.popleft()
            if stream.closing or stream.ws is None:
                continue
            if isinstance(item, str):
                self.stats.marks += 1
                self._send(stream, stream.encoder.mark(item))
                continue
            if stream.started_at is None:
                stream.started_at = now
            down = stream.down.get(kind)
            if down is None:
                down = stream.down[kind] = Resampler(SAMPLE_RATE, wire.SAMPLE_RATE)
            ulaw = ulaw_encode(down.process(item)).tobytes()
            timestamp = round((now - stream.started_at) * 1000)
            self._send(stream, stream.encoder.media(kind, ulaw, timestamp))

    def _send(self, stream: _Stream, text: str) -> None:
        if stream.ws is None or stream.closing:
            return
        if len(stream.outbox) == stream.outbox.maxlen:
            self.stats.media_unsent += 1
        stream.outbox.append(text)
        stream.wake.set()

    # -- from the bot (event loop) -------------------------------------------------------------------------------
    def _queue_audio(self, stream: _Stream, ulaw: bytes) -> None:
        """Decode, resample and cut the bot's audio into 20 ms frames at the end of the playout queue; frames
        past `playout_seconds` of queue are dropped (counted)."""
        pcm = stream.up.process(ulaw_decode(ulaw))
        pending = np.concatenate([stream.pending, pcm]) if stream.pending.size else pcm
        whole = pending.size // FRAME_SAMPLES * FRAME_SAMPLES
        for start in range(0, whole, FRAME_SAMPLES):
            if len(stream.playout) >= stream.max_frames:
                self.stats.frames_dropped += 1
                continue
            stream.playout.append(pending[start : start + FRAME_SAMPLES].copy())
        stream.pending = pending[whole:].copy()
        self._top_up(stream)

    def _clear(self, stream: _Stream) -> None:
        stream.pending = np.zeros(0, dtype=np.int16)
        if stream.sent > stream.taken:
            self.engine.call(FeedClear(stream.play_feed))
            stream.taken = stream.sent  # the feed reports no more than it was sent
        while stream.marks:
            self.stats.marks += 1
            self._send(stream, stream.encoder.mark(stream.marks.popleft()[1]))
        while True:
            try:
                item = stream.playout.popleft()
            except IndexError:
                break
            if isinstance(item, str):
                self.stats.marks += 1
                self._send(stream, stream.encoder.mark(item))

    # -- the connection ----------------------------------------------------------------------------------------
    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = egress_session(self._egress, self._ssl)
        return self._session

    async def _run(self, stream: _Stream) -> None:
        try:
            ws = await self._connect(stream)
            if ws is None:
                self.stats.failed += 1
                log.warning("media stream endpoint unreachable", extra={"call_id": stream.call_id})
                if not stream.closing:
                    self._started(stream, STREAM_UNREACHABLE)
                self._end(stream.sid)
                return
            stream.ws = ws
            self.stats.connected += 1
            await ws.send_str(stream.encoder.connected())
            await ws.send_str(stream.encoder.start())
            self._started(stream, STREAM_DONE)
            self._open_feeds(stream)
            sender = asyncio.get_running_loop().create_task(
                send_loop(ws, stream.wake, stream.outbox, on_text=self._sent)
            )
            try:
                await self._receive(stream, ws)
            finally:
                sender.cancel()
            log.info("media stream closed by the bot", extra={"call_id": stream.call_id})
            self._end(stream.sid)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("media stream failed", extra={"call_id": stream.call_id})
            self._end(stream.sid)
        finally:
            ws, stream.ws = stream.ws, None
            await close_ws(ws, stream.outbox)  # with the `stop` queued by _end

    async def _connect(self, stream: _Stream) -> aiohttp.ClientWebSocketResponse | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.connect_timeout
        url = URL(stream.request.url)
        while not stream.closing:
            try:
                async with asyncio.timeout_at(deadline):
                    return await open_ws(self._http(), url, max_msg_size=wire.MAX_MESSAGE_BYTES)
            except TimeoutError:
                return None
            except (aiohttp.ClientError, OSError) as exc:
                refused = refusal(exc)
                if refused is not None:
                    log.warning("media stream endpoint refused: %s", refused, extra={"call_id": stream.call_id})
                    return None
                log.debug("media stream connect failed: %s", exc, extra={"call_id": stream.call_id})
            if loop.time() + RETRY_SECONDS >= deadline:
                return None
            await asyncio.sleep(RETRY_SECONDS)
        return None

    async def _receive(self, stream: _Stream, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                if msg.type is aiohttp.WSMsgType.BINARY:
                    self.stats.bad_messages += 1
                    continue
                break
            try:
                message = wire.parse_inbound(msg.data)
            except wire.StreamError:
                self.stats.bad_messages += 1
                continue
            if isinstance(message, wire.Media):
                self._queue_audio(stream, message.ulaw)
            elif isinstance(message, wire.Mark):
                if len(stream.playout) >= stream.max_frames + MARK_ROOM:
                    self.stats.bad_messages += 1  # a flood of marks: not queued (never echoed)
                else:
                    stream.playout.append(message.name)
                    self._top_up(stream)
                    if stream.marks:
                        self._echo_marks(stream, 0.0)
                        self._flush()
            elif isinstance(message, wire.Clear):
                self._clear(stream)

    def _sent(self) -> None:
        self.stats.media_sent += 1
