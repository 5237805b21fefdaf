"""A meeting's transcript and recording, live side: what is kept while its recording status is `recording`.

A *recording period* opens when updateRecordingStatus sets `recording` in a meeting and closes when the status
leaves it or the meeting ends. During a period:
* **Recording** (`[meetings] record_meetings`): the engine records the meeting's mix (`RecordMix`, at most
  `recording_max_seconds`, at most `max_recorded_meetings` meetings at once: the mix is held in memory); when the
  period closes the mix is saved as the meeting's `callRecording`.
* **Transcript**: the captions of the meeting's live transcription (calling/transcription.py, which itself runs
  only while the status is `recording`) are kept as cues, speaker-attributed by display name. The first bot call
  whose captions arrive is the period's scribe; another transcribing bot adds only what the scribe cannot hear (the
  scribe's own voice). When the period closes, after `transcript_grace` seconds (the last utterances are still
  being decoded), a period with at least one cue is saved as the meeting's `callTranscript` (WebVTT).
Both are saved through meetings/artifacts.py (same `contentCorrelationId`), which owns retention and the API's
view of them. Only meetings with an onlineMeeting resource (an organizer) keep artifacts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from opencomms.calling.media import EnginePort
from opencomms.calling.subscribers import Batch, Subscriber
from opencomms.calling.transcription import HeardCaption
from opencomms.domain import events as ev
from opencomms.domain.ids import new_id
from opencomms.domain.meetings import MeetingInfo, MeetingLookup
from opencomms.domain.rules import ConversationKind
from opencomms.media import engine as eng
from opencomms.media.engine.commands import RecordMix, StopMixRecording
from opencomms.media.wav import encode_wav
from opencomms.meetings.artifacts import RECORDING, TRANSCRIPT, Artifact, ArtifactStore, Cue, to_vtt

__all__ = ["MeetingArtifacts", "speaker_name"]

log = logging.getLogger("opencomms.meetings")


def speaker_name(identity: dict[str, Any]) -> str:
    """The name a transcript gives a speaker: the displayName of its user, application, guest or phone, else the
    phone number or id."""
    for key in ("user", "guest", "application", "applicationInstance", "phone", "device"):
        part = identity.get(key)
        if isinstance(part, dict):
            name = part.get("displayName") or part.get("id")
            if isinstance(name, str) and name:
                return name
    return "Unknown"


@dataclass(eq=False)
class _Period:
    info: MeetingInfo
    correlation_id: str
    started_at: float
    cues: list[Cue] = field(default_factory=list)
    scribe: str | None = None
    """The bot call whose captions the transcript takes."""
    recording: bool = False
    ended_at: float = 0.0


class MeetingArtifacts(Subscriber):
    """A conversation subscriber (recording status, meeting end) and a MediaService observer (the mix recording);
    `heard` is CallTranscription's caption hook."""

    def __init__(
        self,
        artifacts: ArtifactStore,
        engine: EnginePort,
        meetings: MeetingLookup,
        *,
        record_meetings: bool = False,
        max_seconds: float = 3600.0,
        max_recordings: int = 8,
        transcript_grace: float = 3.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.artifacts = artifacts
        self.engine = engine
        self.meetings = meetings
        self.record_meetings = record_meetings
        self.max_seconds = max_seconds
        self.max_recordings = max_recordings
        self.refused_recordings = 0
        """Periods that got no recording because `max_recordings` mixes were being recorded."""
        self.transcript_grace = transcript_grace
        self.clock = clock
        self._periods: dict[str, _Period] = {}
        """Open periods by meeting id."""
        self._recordings: dict[str, _Period] = {}
        """Periods whose mix recording is running or being finished, by correlation id (the engine tag)."""
        self._finishing: dict[str, _Period] = {}
        """Closed periods whose transcript waits for its last captions (`transcript_grace`), by meeting id."""
        self._handles: set[asyncio.TimerHandle] = set()

    def close(self) -> None:
        """At shutdown: transcripts waiting for their last captions are saved now."""
        for handle in self._handles:
            handle.cancel()
        self._handles.clear()
        for period in self._finishing.values():
            self._save_transcript(period)
        self._finishing.clear()

    # -- conversation subscriber ------------------------------------------------------------------------------
    def committed(self, batch: Batch, event: ev.Event) -> None:
        if batch.kind is not ConversationKind.MEETING:
            return
        if isinstance(event, ev.RecordingStatusChanged):
            if event.status == "recording":
                self._open(batch.conversation_id)
            else:
                self._close(batch.conversation_id)
        elif isinstance(event, ev.ConversationEnded):
            self._close(batch.conversation_id)

    def _open(self, meeting_id: str) -> None:
        if meeting_id in self._periods:
            return
        info = self.meetings.meeting(meeting_id)
        if info is None:
            return
        period = _Period(info, new_id(), self.clock())
        self._periods[meeting_id] = period
        if self.record_meetings and len(self._recordings) >= self.max_recordings:
            self.refused_recordings += 1
            log.warning("meeting not recorded: max_recorded_meetings reached", extra={"meeting_id": meeting_id})
        elif self.record_meetings:
            period.recording = True
            self._recordings[period.correlation_id] = period
            self.engine.call(RecordMix(meeting_id, period.correlation_id, self.max_seconds))

    def _close(self, meeting_id: str) -> None:
        period = self._periods.pop(meeting_id, None)
        if period is None:
            return
        period.ended_at = self.clock()
        if period.recording:
            self.engine.call(StopMixRecording(meeting_id, period.correlation_id))
        self._finishing[meeting_id] = period
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def later() -> None:
            self._handles.discard(handle)
            if self._finishing.get(meeting_id) is period:
                del self._finishing[meeting_id]
            self._save_transcript(period)

        handle = loop.call_later(self.transcript_grace, later)
        self._handles.add(handle)

    # -- captions -----------------------------------------------------------------------------------------------
    def heard(self, caption: HeardCaption) -> None:
        period = self._periods.get(caption.conversation_id) or self._finishing.get(caption.conversation_id)
        if period is None:
            return
        if caption.start < period.started_at - 1.0:
            return  # said before the meeting recorded
        if period.scribe is None:
            period.scribe = caption.call_id
        if caption.call_id != period.scribe and caption.speaker_leg != period.scribe:
            return  # the scribe heard it too
        name = speaker_name(caption.identity)
        period.cues.append(Cue(caption.start - period.started_at, caption.end - period.started_at, name, caption.text))

    def _save_transcript(self, period: _Period) -> None:
        if not period.cues:
            return
        try:
            self.artifacts.save(
                TRANSCRIPT,
                **self._fields(period),
                data=to_vtt(period.cues).encode(),
            )
        except Exception:
            log.exception("meeting transcript not saved", extra={"meeting_id": period.info.id})

    def _fields(self, period: _Period) -> dict[str, Any]:
        info = period.info
        return {
            "meeting_id": info.id,
            "tenant_id": info.tenant_id,
            "organizer_id": info.organizer_id,
            "call_id": info.id,
            "correlation_id": period.correlation_id,
            "started_at": period.started_at,
            "ended_at": period.ended_at or self.clock(),
        }

    # -- MediaService observer ------------------------------------------------------------------------------
    def connected(self, call: Any) -> None:
        pass

    def ending(self, call: Any) -> None:
        pass

    def on_events(self, events: Sequence[eng.MediaEvent]) -> None:
        for event in events:
            if isinstance(event, eng.MixRecordingFinished):
                period = self._recordings.pop(event.tag, None)
                if period is None:
                    continue
                if not period.ended_at:  # full (recording_max_seconds): the period goes on without a recording
                    period.recording = False
                try:
                    self.artifacts.save(RECORDING, **self._fields(period), data=encode_wav(event.samples))
                except Exception:
                    log.exception("meeting recording not saved", extra={"meeting_id": period.info.id})


def attach_meeting_artifacts(node: Any) -> MeetingArtifacts:
    """Wire meeting transcripts and recordings into a node (`node` is an opencomms.server.Node, typed Any: this
    module does not import the composition root): the artifact store (the recordings directory, kept
    `recording_max_age`), the live side as a conversation subscriber, media observer and caption hook, the API."""
    media, meetings = node.config.media, node.config.meetings
    store = ArtifactStore(media.recordings_dir, node.store, retention_seconds=media.recording_max_age, clock=node.clock)

    def saved(artifact: Artifact) -> None:  # change notifications (the subscriptions are attached later)
        subscriptions = getattr(node, "subscriptions", None)
        if subscriptions is not None:
            subscriptions.artifact_created(artifact.tenant_id, artifact.kind, artifact.meeting_id, artifact.id)

    store.on_saved = saved
    live = MeetingArtifacts(
        store,
        node.media.engine,
        node.live_meetings.lookup,
        record_meetings=meetings.record_meetings,
        max_seconds=meetings.recording_max_seconds,
        max_recordings=meetings.max_recorded_meetings,
        transcript_grace=meetings.transcript_grace,
        clock=node.clock,
    )
    node.calls.subscribe(live)
    node.media.observers.append(live)
    if node.transcription is not None:
        node.transcription.heard.append(live.heard)
    node.api.meeting_artifacts = store
    return live
