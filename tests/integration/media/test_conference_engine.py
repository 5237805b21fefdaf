"""A meeting of 10 legs on a real MediaEngine ticked by a real EngineThread (20 ms schedule, commands from another
thread, events handed out): three phones talk (their far-end frames pushed by row every tick, as the RTP bank
does), the others listen. Mix-minus from the K loudest, server mute by command, dominant-speaker events, an
app-hosted bot's per-speaker frames with sourceIds, a prompt to the whole meeting and its recording."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from opencomms.domain.media import RecordStop
from opencomms.media.clock import EngineThread
from opencomms.media.engine import (
    Batch,
    DominantSpeakerChanged,
    Heard,
    HeardTalkers,
    MediaEngine,
    MediaEvent,
    MixPlayFinished,
    MixRecordingFinished,
    TalkerConfig,
)
from opencomms.media.frames import FRAME_SAMPLES

N = FRAME_SAMPLES
LEGS = [f"phone{i}" for i in range(9)] + ["bot"]
LEVELS = {"phone0": 9000, "phone1": 3000, "phone2": 1000, "phone3": 200}  # phone3: quieter than the three


def wait_for(predicate: Callable[[], object], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def test_a_meeting_of_ten_on_the_engine_thread() -> None:
    events: list[MediaEvent] = []
    lock = threading.Lock()
    heard: dict[str, npt.NDArray[np.int16]] = {}
    bot_frames: list[list[tuple[str, int, int]]] = []

    def on_events(batch: list[MediaEvent]) -> None:
        with lock:
            events.extend(batch)

    def kept(kind: type) -> list[MediaEvent]:
        with lock:
            return [e for e in events if isinstance(e, kind)]

    engine = MediaEngine(16, talkers=TalkerConfig(talkers=3, select_above=4))
    with EngineThread(engine, on_events) as thread:

        def setup(e: MediaEngine) -> None:
            for i, leg in enumerate(LEGS):
                e.add_leg(leg)
                e.join(leg, "meeting")
                e.set_source_id(leg, 7000 + i)
                e.subscribe(Heard(leg, lambda leg_id, frame, now: heard.__setitem__(leg_id, frame.copy())))
            rows = np.array([e.leg_key(leg)[0] for leg in LEVELS], dtype=np.intp)
            frames = np.stack([np.full(N, level, np.int16) for level in LEVELS.values()])
            e.subscribe(Batch(lambda inp, now: e.push_inbound_rows(rows, frames)))  # the far ends, every tick
            e.subscribe(
                HeardTalkers(
                    "bot",
                    lambda leg, mix, talkers, now: bot_frames.append(
                        [(other, source, int(frame[0])) for other, source, frame in talkers]
                    ),
                )
            )

        thread.call_result(setup).result(timeout=2)
        wait_for(lambda: len(bot_frames) > 10)
        snapshot = thread.call_result(lambda e: ({k: int(v[0]) for k, v in heard.items()}, e.talkers("meeting")))
        levels, talkers = snapshot.result(timeout=1)
        assert talkers == ["phone0", "phone1", "phone2"]
        assert levels["phone8"] == levels["bot"] == levels["phone3"] == 13000  # only the three loudest
        assert levels["phone0"] == 4000 and levels["phone1"] == 10000 and levels["phone2"] == 12000  # never itself
        assert bot_frames[-1] == [("phone0", 7000, 9000), ("phone1", 7001, 3000), ("phone2", 7002, 1000)]
        (first,) = kept(DominantSpeakerChanged)
        assert (first.mix_id, first.leg_id, first.source_id) == ("meeting", "phone0", 7000)

        thread.call(lambda e: e.set_server_muted("phone0", True))  # a participant muted by the organizer
        wait_for(lambda: thread.call_result(lambda e: int(heard["phone8"][0])).result(timeout=1) == 4200)
        assert thread.call_result(lambda e: e.talkers("meeting")).result(timeout=1) == ["phone1", "phone2", "phone3"]
        wait_for(lambda: [e.leg_id for e in kept(DominantSpeakerChanged)] == ["phone0", "phone1"])

        prompt = np.full(10 * N, 500, np.int16)

        def record_and_play(e: MediaEngine) -> None:
            e.record_mix("meeting", "rec", max_seconds=0.1)
            e.play_to_mix("meeting", "hi", [prompt])

        thread.call(record_and_play)
        wait_for(lambda: kept(MixPlayFinished) and kept(MixRecordingFinished))
        (played,) = kept(MixPlayFinished)
        assert played.completed and played.tag == "hi"
        (recorded,) = kept(MixRecordingFinished)
        assert recorded.reason is RecordStop.MAX_DURATION and recorded.samples.size == 1600
        assert (recorded.samples == 4200 + 500).all()  # the talkers and the prompt, as a listener hears them
        assert thread.stats()["overruns"] == 0
