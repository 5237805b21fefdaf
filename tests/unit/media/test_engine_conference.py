"""Conference media in the engine: mix-minus from the K loudest talkers, server mute, dominant-speaker events, the
talkers' unmixed frames with their sourceIds, and prompts and recordings on a whole mix. Pure: tick(now) in a loop."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import numpy.typing as npt

from opencomms.domain.media import RecordStop
from opencomms.media.engine import (
    DominantSpeakerChanged,
    Heard,
    HeardTalkers,
    MediaEngine,
    MediaEvent,
    MixPlayFinished,
    MixRecordingFinished,
    TalkerConfig,
)
from opencomms.media.engine.mixing import topology
from opencomms.media.engine.talkers import Talkers
from opencomms.media.frames import FRAME_SAMPLES

N = FRAME_SAMPLES
Samples = npt.NDArray[np.int16]


class Room:
    """`size` legs l0.. in mix "m"; each tick every leg says a constant frame of its `level` (0: silence)."""

    def __init__(self, size: int = 10, config: TalkerConfig | None = None) -> None:
        self.engine = MediaEngine(64, talkers=config or TalkerConfig(talkers=3, select_above=4))
        self.legs = [f"l{i}" for i in range(size)]
        self.level = dict.fromkeys(self.legs, 0)
        self.heard: dict[str, Samples] = {}
        self.events: list[tuple[int, MediaEvent]] = []
        self.k = 0
        for i, leg in enumerate(self.legs):
            self.engine.add_leg(leg)
            self.engine.join(leg, "m")
            self.engine.set_source_id(leg, 100 + i)
            self.engine.subscribe(Heard(leg, self._heard))

    def _heard(self, leg: str, frame: Samples, now: float) -> None:
        self.heard[leg] = frame.copy()

    def run(self, ticks: int = 1) -> list[MediaEvent]:
        new: list[MediaEvent] = []
        for _ in range(ticks):
            for leg, level in self.level.items():
                if level:
                    self.engine.push_inbound(leg, np.full(N, level, np.int16))
            events = self.engine.tick(self.k * 0.02)
            self.events += [(self.k, e) for e in events]
            new += events
            self.k += 1
        return new

    def hears(self, leg: str) -> int:
        frame = self.heard[leg]
        assert (frame == frame[0]).all()
        return int(frame[0])

    def dominant(self) -> list[tuple[int, str | None]]:
        return [(k, e.leg_id) for k, e in self.events if isinstance(e, DominantSpeakerChanged)]


def test_only_the_k_loudest_are_heard_and_no_member_hears_itself() -> None:
    room = Room()
    room.level.update(l0=8000, l1=4000, l2=2000, l3=1000, l4=500)
    room.run(3)
    assert room.engine.talkers("m") == ["l0", "l1", "l2"]
    assert room.hears("l9") == 14000  # a listener hears the three talkers
    assert room.hears("l3") == 14000 and room.hears("l4") == 14000  # not mixed: quieter than the three
    assert room.hears("l0") == 6000 and room.hears("l1") == 10000 and room.hears("l2") == 12000  # minus itself


def test_a_small_mix_still_mixes_everyone() -> None:
    room = Room(size=4)
    room.level.update(l0=8000, l1=4000, l2=2000, l3=1000)
    room.run(2)
    assert room.engine.talkers("m") == []  # not a conference
    assert room.hears("l0") == 7000 and room.hears("l3") == 14000


def test_talkers_do_not_flicker_but_a_much_louder_voice_takes_a_place() -> None:
    room = Room()
    room.level.update(l0=4000, l1=4000, l2=4000)
    room.run(20)
    room.level["l3"] = 5000  # 2 dB louder than the talkers: below the 6 dB margin
    room.run(30)
    assert room.engine.talkers("m") == ["l0", "l1", "l2"]
    room.level["l3"] = 16000  # 12 dB louder: replaces one talker
    room.run(3)
    talkers = room.engine.talkers("m")
    assert "l3" in talkers and len(talkers) == 3
    assert room.hears("l9") == 16000 + 8000


def test_a_silent_talker_leaves_after_its_hangover_and_the_next_active_one_enters() -> None:
    room = Room(config=TalkerConfig(talkers=3, select_above=4, hangover_ticks=5))
    room.level.update(l0=8000, l1=4000, l2=2000, l3=1000)
    room.run(5)
    room.level["l0"] = 0
    room.run(3)
    assert "l0" in room.engine.talkers("m")  # still within its hangover: no gap between words
    room.run(5)
    assert room.engine.talkers("m") == ["l1", "l2", "l3"]
    assert room.hears("l9") == 7000


def test_server_mute_keeps_a_member_out_of_the_mix_and_self_unmute_does_not_undo_it() -> None:
    room = Room()
    room.level.update(l0=8000, l1=4000, l2=2000, l3=1000)
    room.run(3)
    room.engine.set_server_muted("l0", True)
    room.run(2)
    assert "l0" not in room.engine.talkers("m")
    assert room.hears("l9") == 7000 and room.hears("l1") == 3000
    room.engine.set_muted("l0", False)  # the participant unmutes itself: the server mute stays
    room.run(2)
    assert room.hears("l9") == 7000
    room.engine.set_server_muted("l0", False)
    room.run(4)  # its level rises half-way per tick until it beats the quietest talker by the margin
    assert room.hears("l9") == 14000


def test_dominant_speaker_changes_with_hysteresis_and_rate_limit() -> None:
    room = Room(config=TalkerConfig(talkers=3, select_above=4, dominant_hold_ticks=25))
    room.level.update(l1=4000, l2=2000)
    events = room.run(2)
    changes = [e for e in events if isinstance(e, DominantSpeakerChanged)]
    assert [(e.mix_id, e.leg_id, e.source_id) for e in changes] == [("m", "l1", 101)]
    room.level["l2"] = 5000  # louder, but by less than the margin: no change
    room.run(40)
    assert room.dominant() == [(0, "l1")]
    room.level["l2"] = 16000  # much louder: one change, at least 25 ticks after the first
    room.run(5)
    room.level["l1"] = 32000  # and back: not before the hold has passed
    room.run(60)
    ticks = [k for k, _ in room.dominant()]
    assert [leg for _, leg in room.dominant()] == ["l1", "l2", "l1"]
    assert all(b - a >= 25 for a, b in pairwise(ticks))


def test_dominant_speaker_leaving_the_mix_with_nobody_talking_is_none() -> None:
    room = Room()
    room.level["l1"] = 4000
    room.run(3)
    room.level["l1"] = 0
    room.engine.join("l1", None)
    events = room.run(1)
    assert [(e.leg_id, e.source_id) for e in events if isinstance(e, DominantSpeakerChanged)] == [(None, None)]


def test_heard_talkers_delivers_the_talkers_unmixed_with_source_ids_but_not_the_leg_itself() -> None:
    room = Room()
    room.level.update(l0=8000, l1=4000, l2=2000, l3=1000)
    got: dict[str, list[tuple[str, int, int]]] = {}

    def tap(leg: str, heard: Samples, talkers: list[tuple[str, int, Samples]], now: float) -> None:
        got[leg] = [(other, source, int(frame[0])) for other, source, frame in talkers]

    room.engine.subscribe(HeardTalkers("l9", tap))
    room.engine.subscribe(HeardTalkers("l1", tap))
    room.run(3)
    assert got["l9"] == [("l0", 100, 8000), ("l1", 101, 4000), ("l2", 102, 2000)]
    assert got["l1"] == [("l0", 100, 8000), ("l2", 102, 2000)]


def test_a_prompt_played_to_the_mix_reaches_every_member_and_finishes() -> None:
    room = Room()
    room.level["l0"] = 8000
    room.run(2)
    room.engine.play_to_mix("m", "hello", [np.full(N + N // 2, 300, np.int16), np.full(N // 2, 700, np.int16)])
    events = room.run(1)
    assert room.hears("l0") == 300 and room.hears("l9") == 8300  # the talker hears it too
    events = room.run(1)
    assert (room.heard["l0"][: N // 2] == 300).all() and (room.heard["l5"][: N // 2] == 8300).all()
    assert (room.heard["l0"][N // 2 :] == 700).all()
    assert [(e.mix_id, e.tag, e.completed) for e in events if isinstance(e, MixPlayFinished)] == [("m", "hello", True)]
    room.engine.play_to_mix("m", "long", [np.full(100 * N, 5, np.int16)])
    room.run(1)
    room.engine.stop_mix_play("m")
    events = room.run(1)
    assert [(e.tag, e.completed) for e in events if isinstance(e, MixPlayFinished)] == [("long", False)]
    assert room.hears("l9") == 8000


def test_record_mix_records_the_talkers_and_prompts_for_its_duration() -> None:
    room = Room()
    room.level.update(l0=8000, l1=4000)
    room.run(2)
    room.engine.record_mix("m", "rec", max_seconds=0.05)  # 2.5 frames
    room.engine.play_to_mix("m", "p", [np.full(10 * N, 100, np.int16)])
    events: list[MediaEvent] = []
    for _ in range(4):
        events += room.run(1)
    done = [e for e in events if isinstance(e, MixRecordingFinished)]
    assert len(done) == 1 and done[0].reason is RecordStop.MAX_DURATION
    assert done[0].samples.size == 800 and (done[0].samples == 12100).all()
    room.engine.record_mix("m", "rec2", max_seconds=10)
    room.run(2)
    room.engine.stop_mix_recording("m", "rec2")
    (stopped,) = [e for e in room.run(1) if isinstance(e, MixRecordingFinished)]
    assert stopped.reason is RecordStop.CANCELLED and stopped.samples.size == 2 * N


def test_talker_selection_on_arrays_of_a_thousand_members() -> None:
    rng = np.random.default_rng(3)
    out = np.zeros((1000, N), np.int32)
    out[:] = rng.integers(-20, 20, size=(1000, N))  # background noise well under the threshold
    loud = [17, 420, 421, 999]
    for i, row in enumerate(loud):
        out[row] = rng.integers(-1, 2, size=N) * (2000 * (i + 1))
    talkers = Talkers(1000, TalkerConfig(talkers=4, select_above=4))
    sel = talkers.select(np.array([0]), np.arange(1000)[None, :], out, None, np.zeros(1000, np.int64))
    assert sel.rows[sel.valid].tolist() == loud and sel.changed.tolist() == [True] and talkers.dominant[0] == 999
    topo = topology(np.zeros(1000, np.int64), select_above=4)
    assert len(topo.conferences) == 1 and not topo.groups and not topo.silent


def test_many_conferences_of_one_size_are_selected_independently() -> None:
    rng = np.random.default_rng(4)
    out = rng.integers(-20, 20, size=(60, N)).astype(np.int32)
    members = np.arange(60).reshape(6, 10)
    for m in range(6):  # mix m: member m talks loudest, member m + 1 less
        out[members[m, m]] = 8000
        out[members[m, m + 1]] = 2000
    talkers = Talkers(64, TalkerConfig(talkers=2, select_above=4))
    sel = talkers.select(np.arange(6), members, out, None, np.repeat(np.arange(6), 10).astype(np.int64))
    for m in range(6):
        assert sel.rows[m][sel.valid[m]].tolist() == [members[m, m], members[m, m + 1]]
        assert talkers.dominant[m] == members[m, m]
