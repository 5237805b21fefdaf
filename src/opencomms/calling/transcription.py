"""Live transcription of a call, node side: a bot turns it on for its call (`POST .../opencomms.startTranscription`)
and receives what every other participant says, one utterance at a time, as call notifications.

Owns, per transcribing call, the engine feed (media/feeds.py: `talkers` on the bot's leg, each other participant's
own audio, unmixed, with its sourceId, in a conference only the talkers the engine mixes; silent speakers stop
crossing; the frames arrive as FedFrames events, from the engine thread or from the media process alike) whose
frames the event loop hands to the `TranscriptionPool` (speech/pool.py: VAD and Whisper on threads of their own,
never the event loop or the engine), and the notifications. Must not decode audio nor know SIP, RTP or how legs
are stored.

* **Turning on and off.** `startTranscription` / `stopTranscription` (Calls.AccessMedia.All) answer a completed
  `#opencomms.startTranscriptionOperation` / `stopTranscriptionOperation`, and the call's Graph property
  `transcription` (`callTranscriptionInfo`: `active` / `inactive`, `lastModifiedDateTime`) is notified. In a
  meeting, start is refused (403) until updateRecordingStatus has set `recording` (Graph's rule for media that is
  kept), and a status that leaves `recording` turns every transcription of the meeting off. Per meeting, the
  onlineMeeting's `allowTranscription`: false refuses it (403); true turns it on by itself for the bot whose
  updateRecordingStatus sets `recording`; absent leaves it to the bots.
* **Captions.** Each utterance arrives as an `updated` notification of the call whose resourceData carries
  `transcript`, an `#opencomms.transcript`: `id`, `sequenceId` (per call), `text`, `isFinal` (true: captions are
  whole utterances), `status` (`final`, or `overloaded` when the node could not decode the span in time: no text),
  the speaker's `participantId`, `sourceId` and `identity` (identitySet), and `startOffset`/`endOffset` (ISO 8601
  durations since transcription started) with `startDateTime`/`endDateTime`.
* **Speakers.** A speaker leg that ends has its open utterance decoded; a transcribing call that ends stops.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opencomms.calling import notifications as notes
from opencomms.calling.media import EnginePort
from opencomms.calling.model import Call, JsonObj
from opencomms.calling.service import ACCESS_MEDIA, Caller, CallService
from opencomms.calling.subscribers import Batch, Subscriber
from opencomms.config import SpeechConfig
from opencomms.domain import events as ev
from opencomms.domain.calls import CallState
from opencomms.domain.errors import AccessDenied, InvalidState, ServiceUnavailable
from opencomms.domain.ids import new_id
from opencomms.domain.meetings import MeetingLookup
from opencomms.domain.rules import ConversationKind
from opencomms.media import engine as eng
from opencomms.media.feeds import FeedClose, FeedOpen
from opencomms.speech.pool import OVERLOADED, Caption, TranscriptionPool
from opencomms.tasks import TaskSet

__all__ = ["SILENT_PEAK", "CallTranscription", "HeardCaption", "TranscriptionStats", "from_config"]

log = logging.getLogger("opencomms.speech")

SILENT_PEAK = 24
"""A frame whose peak stays below this (about -63 dBFS) is silent."""
SILENT_FRAMES = 50
"""After this many silent frames in a row (1 s) a participant's frames are no longer handed to the pool until it
makes a sound: a silent participant costs nothing (pauses between words still reach the VAD)."""


@dataclass(eq=False)
class _Session:
    call_id: str
    conversation_id: str
    started_mono: float
    started_wall: float
    feed_id: str = ""
    speakers: set[str] = field(default_factory=set)
    """Speaker legs heard."""
    sequence: int = 0
    active: bool = True


@dataclass(frozen=True, slots=True)
class HeardCaption:
    """A final caption with text, as the meeting transcript keeps it (calling/meeting_artifacts.py)."""

    call_id: str
    """The transcribing bot's call."""
    conversation_id: str
    speaker_leg: str
    identity: JsonObj
    start: float
    end: float
    """Wall-clock epoch seconds."""
    text: str


@dataclass
class TranscriptionStats:
    sessions: int = 0
    captions: int = 0
    overloaded: int = 0
    late_captions: int = 0
    """Captions of calls that had ended (dropped)."""


def _duration(seconds: float) -> str:
    return f"PT{max(0.0, seconds):.2f}S"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _operation(kind: str, client_context: str | None) -> JsonObj:
    return {
        "@odata.type": f"#opencomms.{kind}Operation",
        "id": new_id(),
        "status": "completed",
        "clientContext": client_context,
        "resultInfo": {"@odata.type": "#microsoft.graph.resultInfo", "code": 200, "subcode": 0, "message": "OK"},
    }


class CallTranscription(Subscriber):
    """Per-call live transcription (see the module docstring); a MediaService observer and a conversation
    subscriber (recording status)."""

    def __init__(
        self,
        calls: CallService,
        engine: EnginePort,
        pool: Callable[[Callable[[Caption], None]], TranscriptionPool],
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.calls = calls
        self.engine = engine
        self._make_pool = pool
        self.pool: TranscriptionPool | None = None
        """Made (models loaded, threads started) at the first startTranscription, on a worker thread."""
        self._pool_lock = asyncio.Lock()
        self._closed = False
        self._tasks = TaskSet("transcription")
        self.meetings: MeetingLookup | None = None
        """The meetings' settings (allowTranscription); None: every meeting allows it, none turns it on."""
        self._clock = clock
        self._monotonic = monotonic
        self._sessions: dict[str, _Session] = {}
        self._feeds: dict[str, _Session] = {}
        self._feed_ids = itertools.count(1)
        self._closing: dict[str, _Session] = {}
        """Stopped sessions of live calls: what their speakers had said still arrives (dropped when the call ends)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._speaker_cache: dict[str, tuple[str, str, JsonObj]] = {}
        self.heard: list[Callable[[HeardCaption], None]] = []
        """Told of every final caption with text (a meeting's transcript); failures are logged."""
        self.stats = TranscriptionStats()

    @property
    def active(self) -> int:
        return len(self._sessions)

    async def _started_pool(self) -> TranscriptionPool:
        async with self._pool_lock:
            if self._closed:
                raise ServiceUnavailable("The node is stopping.")
            if self.pool is None:
                pool = await asyncio.to_thread(self._make_pool, self._from_pool)
                pool.start()
                self.pool = pool
            return self.pool

    async def close(self) -> None:
        self._closed = True
        await self._tasks.close()
        sessions = list(self._sessions.values())
        self._sessions.clear()
        self._closing.clear()
        for session in sessions:
            self._unsubscribe(session)
        async with self._pool_lock:
            if self.pool is not None:
                await asyncio.to_thread(self.pool.close)

    # -- REST actions ------------------------------------------------------------------------------------------
    async def start(self, caller: Caller, call_id: str, client_context: str | None) -> JsonObj:
        call = self.calls.own(caller, call_id)
        CallService.require(caller, ACCESS_MEDIA)
        if call.state is not CallState.ESTABLISHED:
            raise InvalidState("Transcription needs an established call.")
        if self.calls.conversation_kind(call.conversation_id) is ConversationKind.MEETING:
            info = self.meetings.meeting(call.conversation_id) if self.meetings is not None else None
            if info is not None and info.allow_transcription is False:
                raise AccessDenied("The meeting does not allow transcription (its allowTranscription is false).")
            conv = await self.calls.conversation(call.conversation_id)
            if conv is not None and conv.meeting is not None and conv.meeting.recording != "recording":
                raise AccessDenied("A meeting may be transcribed only after updateRecordingStatus has set 'recording'.")
        await self._begin(call)
        return _operation("startTranscription", client_context)

    async def _begin(self, call: Call) -> None:
        self._loop = asyncio.get_running_loop()
        await self._started_pool()
        if call.id not in self._sessions and self.calls.leg(call.id) is not None:
            session = _Session(call.id, call.conversation_id, self._monotonic(), self._clock())
            previous = self._closing.pop(call.id, None)
            if previous is not None:  # restarted: sequence ids go on
                session.sequence = previous.sequence
            self._sessions[call.id] = session
            self.stats.sessions += 1
            session.feed_id = f"transcription/{next(self._feed_ids)}"
            self._feeds[session.feed_id] = session
            self.engine.call(
                FeedOpen(session.feed_id, call.id, "talkers", quiet_peak=SILENT_PEAK, quiet_frames=SILENT_FRAMES)
            )
            self._notify_state(call, "active")
            log.info("transcription started", extra={"call_id": call.id})

    async def stop(self, caller: Caller, call_id: str, client_context: str | None) -> JsonObj:
        call = self.calls.own(caller, call_id)
        CallService.require(caller, ACCESS_MEDIA)
        if self._end(call.id):
            self._notify_state(call, "inactive")
        return _operation("stopTranscription", client_context)

    def health(self) -> dict[str, Any]:
        """Counters for /healthz: sessions, captions, overloads, and the pool's (when it has started)."""
        pool = self.pool
        return {
            "active": len(self._sessions),
            **dataclasses.asdict(self.stats),
            "pool": None
            if pool is None
            else {"queued": pool.queued, "speakers": pool.speakers, **dataclasses.asdict(pool.stats)},
        }

    def transcribing(self, call_id: str) -> bool:
        return call_id in self._sessions

    # -- MediaService observer ---------------------------------------------------------------------------------
    def connected(self, call: Call) -> None:
        pass

    def ending(self, call: Call) -> None:
        self._end(call.id)
        self._closing.pop(call.id, None)
        pool = self.pool
        if pool is None:
            return
        for session in self._sessions.values():  # a speaker left: decode what it was saying
            if session.conversation_id == call.conversation_id:
                pool.end((session.call_id, call.id))

    def on_events(self, events: Sequence[eng.MediaEvent]) -> None:
        """The talkers' frames of every transcribing call, to the pool."""
        pool, feeds = self.pool, self._feeds
        if pool is None or not feeds:
            return
        for event in events:
            if not isinstance(event, eng.FedFrames):
                continue
            for feed_id, talkers, now, _taken in event.frames:
                session = feeds.get(feed_id)
                if session is None or not session.active or not isinstance(talkers, tuple):
                    continue
                call_id = session.call_id
                for speaker, _source, frame in talkers:
                    session.speakers.add(speaker)
                    pool.feed((call_id, speaker), frame, now)

    # -- conversation subscriber ------------------------------------------------------------------------------
    def committed(self, batch: Batch, event: ev.Event) -> None:
        if not isinstance(event, ev.RecordingStatusChanged):
            return
        if event.status == "recording":
            self._meeting_records(batch.conversation_id, event.initiator)
            return
        for session in [s for s in self._sessions.values() if s.conversation_id == batch.conversation_id]:
            self._end(session.call_id)
            call = self.calls.leg(session.call_id)
            if call is not None:
                self._notify_state(call, "inactive")

    def _meeting_records(self, meeting_id: str, initiator: JsonObj) -> None:
        """A meeting whose `allowTranscription` is true is transcribed from the moment it records: for the bot whose
        updateRecordingStatus set `recording` (it holds Calls.AccessMedia.All)."""
        info = self.meetings.meeting(meeting_id) if self.meetings is not None else None
        if info is None or info.allow_transcription is not True:
            return
        for call in self.calls.legs():
            if (
                call.conversation_id == meeting_id
                and not call.is_external
                and call.identity == initiator
                and call.state is CallState.ESTABLISHED
                and call.id not in self._sessions
            ):
                self._tasks.spawn(self._begin(call), name=f"transcription-{call.id}")

    # -- the feed ------------------------------------------------------------------------------------------------
    def _unsubscribe(self, session: _Session) -> None:
        session.active = False
        if self._feeds.pop(session.feed_id, None) is not None:
            self.engine.call(FeedClose(session.feed_id))
        pool = self.pool
        if pool is None:
            return
        for speaker in session.speakers:  # what they were saying is still decoded and delivered
            pool.end((session.call_id, speaker))

    def _end(self, call_id: str) -> bool:
        session = self._sessions.pop(call_id, None)
        if session is None:
            return False
        self._unsubscribe(session)
        self._closing[call_id] = session
        log.info("transcription stopped", extra={"call_id": call_id})
        return True

    # -- captions (pool thread -> event loop) ------------------------------------------------------------------
    def _from_pool(self, caption: Caption) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._caption, caption)
        except RuntimeError:  # the loop closed meanwhile
            pass

    def _caption(self, caption: Caption) -> None:
        key: Hashable = caption.key
        assert isinstance(key, tuple)
        call_id, speaker_id = key
        session = self._sessions.get(call_id) or self._closing.get(call_id)
        call = self.calls.leg(call_id)
        if session is None or call is None or call.state is not CallState.ESTABLISHED:
            self.stats.late_captions += 1
            return
        session.sequence += 1
        if caption.status == OVERLOADED:
            self.stats.overloaded += 1
        else:
            self.stats.captions += 1
        participant_id, source_id, identity = self._speaker(speaker_id)
        start = caption.start - session.started_mono
        end = caption.end - session.started_mono
        transcript: JsonObj = {
            "@odata.type": "#opencomms.transcript",
            "id": new_id(),
            "sequenceId": session.sequence,
            "text": caption.text,
            "isFinal": True,
            "status": caption.status,
            "participantId": participant_id,
            "sourceId": source_id,
            "identity": identity,
            "startOffset": _duration(start),
            "endOffset": _duration(end),
            "startDateTime": _iso(session.started_wall + start),
            "endDateTime": _iso(session.started_wall + end),
        }
        with self.calls.unit():
            self.calls.notify(call, notes.call_updated(call, transcript=transcript))
        if caption.text and caption.status != OVERLOADED:
            heard = HeardCaption(
                call_id,
                session.conversation_id,
                speaker_id,
                identity,
                session.started_wall + start,
                session.started_wall + end,
                caption.text,
            )
            for hook in self.heard:
                try:
                    hook(heard)
                except Exception:
                    log.exception("caption hook failed")

    def _speaker(self, leg_id: str) -> tuple[str, str, JsonObj]:
        leg = self.calls.leg(leg_id)
        if leg is not None:
            found = (leg.my_participant_id, leg.source_id, leg.identity)
            self._speaker_cache[leg_id] = found
            if len(self._speaker_cache) > 4096:
                self._speaker_cache.pop(next(iter(self._speaker_cache)))
            return found
        return self._speaker_cache.get(leg_id, ("", "", {}))

    def _notify_state(self, call: Call, state: str) -> None:
        info = {
            "@odata.type": "#microsoft.graph.callTranscriptionInfo",
            "state": state,
            "lastModifiedDateTime": _iso(self._clock()),
        }
        with self.calls.unit():
            self.calls.notify(call, notes.call_updated(call, transcription=info))


def from_config(calls: CallService, engine: EnginePort, config: SpeechConfig) -> CallTranscription:
    """The node's transcription from its `[speech]` section. The packages and model files are checked now (a
    missing one raises `SpeechConfigError` at start); the models load at the first startTranscription (or now with
    `preload`)."""
    from opencomms.speech.pool import PoolConfig
    from opencomms.speech.segmenter import SegmenterConfig
    from opencomms.speech.silero import SileroVad
    from opencomms.speech.whisper import WhisperConfig, WhisperTranscriber, check_model

    whisper = WhisperConfig(
        model_path=config.model_path,
        beam_size=config.beam_size,
        threads_per_worker=config.threads_per_worker,
        workers=config.workers,
        no_speech_threshold=config.no_speech_threshold,
    )
    check_model(whisper)
    pool_config = PoolConfig(
        workers=config.workers, max_batch=config.max_batch, max_queued=config.max_queued, max_wait=config.max_wait
    )
    segmenter = SegmenterConfig(min_silence=config.min_silence, max_seconds=config.max_utterance)

    def make(deliver: Callable[[Caption], None]) -> TranscriptionPool:
        recognizer = WhisperTranscriber(whisper)
        return TranscriptionPool(recognizer, SileroVad(), deliver, config=pool_config, segmenter=segmenter)

    if config.preload:
        made = make(lambda _caption: None)  # load once now: a broken model stops the start
        made.close()
    return CallTranscription(calls, engine, make)
