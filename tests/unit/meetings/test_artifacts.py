"""Meeting transcripts and recordings without a node: the VTT (voice tags, escaping, order), the store (a
meeting's own artifacts of one kind, retention), and the live side's recording period (the mix recorded only while
`recording`, one scribe's captions, the transcript saved after the grace)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np

from opencomms.calling.meeting_artifacts import MeetingArtifacts, speaker_name
from opencomms.calling.subscribers import Batch
from opencomms.calling.transcription import HeardCaption
from opencomms.domain import events as ev
from opencomms.domain.media import RecordStop
from opencomms.domain.meetings import MeetingInfo
from opencomms.domain.rules import ConversationKind
from opencomms.media import engine as eng
from opencomms.media.engine.commands import RecordMix, StopMixRecording
from opencomms.meetings.artifacts import RECORDING, TRANSCRIPT, ArtifactStore, Cue, to_vtt
from opencomms.store.memory import MemoryStore


def test_vtt_has_voice_tags_in_time_order_and_escapes_markup() -> None:
    vtt = to_vtt([Cue(3.5, 4.25, "Bob", "Fine <b>&</b>\n\nthanks"), Cue(0.0, 1.0, "Alice", "How are you?")])
    assert vtt == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n<v Alice>How are you?</v>\n\n"
        "00:00:03.500 --> 00:00:04.250\n<v Bob>Fine &lt;b&gt;&amp;&lt;/b&gt; thanks</v>\n"
    )


def test_speaker_name_prefers_a_display_name() -> None:
    assert speaker_name({"phone": {"id": "+15550101", "displayName": "Alice"}}) == "Alice"
    assert speaker_name({"phone": {"id": "+15550101"}}) == "+15550101"
    assert speaker_name({"application": {"id": "a", "displayName": "Notes bot"}}) == "Notes bot"
    assert speaker_name({}) == "Unknown"


def _store(tmp_path: Path, now: list[float]) -> ArtifactStore:
    return ArtifactStore(tmp_path, MemoryStore(), retention_seconds=100.0, clock=lambda: now[0])


def _save(store: ArtifactStore, kind: str, meeting: str) -> Any:
    return store.save(
        kind,
        meeting_id=meeting,
        tenant_id="t",
        organizer_id="o",
        call_id=meeting,
        correlation_id="c",
        started_at=0.0,
        ended_at=1.0,
        data=b"x",
    )


def test_store_lists_a_meeting_s_own_kind_and_purges_after_retention(tmp_path: Path) -> None:
    now = [1000.0]
    store = _store(tmp_path, now)
    mine = _save(store, TRANSCRIPT, "m1")
    _save(store, RECORDING, "m1")
    _save(store, TRANSCRIPT, "m2")
    assert [a.id for a in store.list("m1", TRANSCRIPT)] == [mine.id]
    assert store.get("m2", TRANSCRIPT, mine.id) is None and store.get("m1", RECORDING, mine.id) is None
    assert store.get("m1", TRANSCRIPT, "not-a-guid") is None
    assert store.content(mine) == b"x" and (tmp_path / f"{mine.id}.vtt").stat().st_mode & 0o077 == 0
    now[0] += 99
    assert store.purge_due() == 0
    now[0] += 2
    assert store.get("m1", TRANSCRIPT, mine.id) is None  # due: gone even before the purge runs
    assert store.purge_due() == 3 and not list(tmp_path.glob("*.vtt"))


class FakeEngine:
    capacity = 10
    shares_process = True

    def __init__(self) -> None:
        self.commands: list[Any] = []

    def call(self, command: Any) -> None:
        self.commands.append(command)


class Lookup:
    def __init__(self, info: MeetingInfo) -> None:
        self.info = info

    def meeting(self, meeting_id: str) -> MeetingInfo | None:
        return self.info if meeting_id == self.info.id else None


def _batch(meeting: str, event: ev.Event) -> Batch:
    return Batch(meeting, "t", ConversationKind.MEETING, (event,))


async def test_a_recording_period_keeps_the_mix_and_one_scribe_s_captions(tmp_path: Path) -> None:
    now = [1000.0]
    store = _store(tmp_path, now)
    engine = FakeEngine()
    info = MeetingInfo(id="m1", tenant_id="t", organizer_id="o", organizer_name="O", thread_id="th")
    live = MeetingArtifacts(
        store, engine, Lookup(info), record_meetings=True, transcript_grace=0.01, clock=lambda: now[0]
    )  # type: ignore[arg-type]

    def caption(call: str, speaker: str, at: float, text: str) -> HeardCaption:
        return HeardCaption(call, "m1", speaker, {"phone": {"id": speaker}}, at, at + 1, text)

    live.heard(caption("bot1", "p1", now[0], "before recording"))  # nothing is kept before `recording`
    live.committed(_batch("m1", ev.RecordingStatusChanged("recording", {})), ev.RecordingStatusChanged("recording", {}))
    [record] = engine.commands
    assert isinstance(record, RecordMix) and record.mix_id == "m1"
    live.heard(caption("bot1", "p1", now[0] + 1, "hello"))
    live.heard(caption("bot2", "p1", now[0] + 1, "hello"))  # a second transcribing bot: the same words
    live.heard(caption("bot2", "bot1", now[0] + 3, "I am the scribe"))  # what the scribe cannot hear itself
    now[0] += 10
    stop = ev.RecordingStatusChanged("notRecording", {})
    live.committed(_batch("m1", stop), stop)
    assert isinstance(engine.commands[-1], StopMixRecording)
    samples = np.ones(16000, dtype=np.int16)
    live.on_events([eng.MixRecordingFinished("m1", record.tag, RecordStop.CANCELLED, samples, 0.0)])
    [recording] = store.list("m1", RECORDING)
    assert recording.correlation_id == record.tag and recording.ended_at == now[0]
    await asyncio.sleep(0.05)
    [transcript] = store.list("m1", TRANSCRIPT)
    vtt = (store.content(transcript) or b"").decode()
    assert vtt.count("<v p1>hello</v>") == 1 and "<v bot1>I am the scribe</v>" in vtt and "before" not in vtt
    assert transcript.correlation_id == recording.correlation_id


async def test_a_period_without_captions_keeps_no_transcript(tmp_path: Path) -> None:
    store = _store(tmp_path, [0.0])
    info = MeetingInfo(id="m1", tenant_id="t", organizer_id="o", organizer_name="O", thread_id="th")
    live = MeetingArtifacts(store, FakeEngine(), Lookup(info), record_meetings=False, transcript_grace=0)  # type: ignore[arg-type]
    start = ev.RecordingStatusChanged("recording", {})
    live.committed(_batch("m1", start), start)
    live.committed(_batch("m1", ev.ConversationEnded("m1")), ev.ConversationEnded("m1"))
    await asyncio.sleep(0.01)
    assert store.list("m1", TRANSCRIPT) == [] and store.list("m1", RECORDING) == []


async def test_past_the_limit_a_meeting_gets_no_recording(tmp_path: Path) -> None:
    store = _store(tmp_path, [0.0])
    engine = FakeEngine()
    infos = {m: MeetingInfo(id=m, tenant_id="t", organizer_id="o", organizer_name="O", thread_id=m) for m in "ab"}

    class Both:
        def meeting(self, meeting_id: str) -> MeetingInfo | None:
            return infos.get(meeting_id)

    live = MeetingArtifacts(store, engine, Both(), record_meetings=True, max_recordings=1, transcript_grace=0)  # type: ignore[arg-type]
    start = ev.RecordingStatusChanged("recording", {})
    live.committed(_batch("a", start), start)
    live.committed(_batch("b", start), start)
    assert [c.mix_id for c in engine.commands] == ["a"] and live.refused_recordings == 1
