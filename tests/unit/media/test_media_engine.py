"""Media engine core: mixing, players, tones, DTMF and VAD on every leg's input, recordings, mute, inbound queues,
row reuse and prefix processing. Pure: tick(now) in a loop, no clock, no sleeping."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import numpy.typing as npt
import pytest
from media_signals import speech_like

from opencomms.domain.media import RecordStop
from opencomms.media.dtmf import DtmfDetectorBank, detect_keys, generate_dtmf
from opencomms.media.engine import (
    EngineFull,
    Heard,
    MediaEngine,
    MediaEvent,
    PlayFinished,
    RecordingFinished,
    RecordingStarted,
    SpeechStarted,
    SpeechStopped,
    ToneDetected,
    TonesFinished,
)
from opencomms.media.frames import FRAME_SAMPLES
from opencomms.media.vad import VadBank

N = FRAME_SAMPLES
FRAME_S = 0.02
Samples = npt.NDArray[np.int16]
E = TypeVar("E", bound=MediaEvent)


class Harness:
    """Ticks an engine with now = k * 20 ms, collecting events (with their tick) and what tapped legs hear."""

    def __init__(self, engine: MediaEngine | None = None) -> None:
        self.engine = engine or MediaEngine(64)
        self.k = 0
        self.events: list[tuple[int, MediaEvent]] = []
        self.heard: dict[str, list[Samples]] = {}

    def pair(self, a: str = "a", b: str = "b", mix: str = "m") -> None:
        for leg in (a, b):
            self.engine.add_leg(leg)
            self.engine.join(leg, mix)

    def listen(self, *legs: str) -> None:
        for leg in legs:
            self.heard[leg] = []
            self.engine.subscribe(Heard(leg, lambda leg_id, frame, now: self.heard[leg_id].append(frame.copy())))

    def run(self, ticks: int) -> list[MediaEvent]:
        new: list[MediaEvent] = []
        for _ in range(ticks):
            events = self.engine.tick(self.k * FRAME_S)
            self.events += [(self.k, e) for e in events]
            new += events
            self.k += 1
        return new

    def until(self, kind: type[E], limit: int = 2000) -> E:
        for _ in range(limit):
            for event in self.run(1):
                if isinstance(event, kind):
                    return event
        raise AssertionError(f"no {kind.__name__} within {limit} ticks")

    def signal(self, leg: str) -> Samples:
        return np.concatenate(self.heard[leg]) if self.heard[leg] else np.zeros(0, np.int16)

    def of(self, kind: type[E]) -> list[tuple[int, E]]:
        return [(k, e) for k, e in self.events if isinstance(e, kind)]


def noise_clip(samples: int, seed: int, scale: float = 3000) -> Samples:
    rng = np.random.default_rng(seed)
    return np.clip(rng.standard_normal(samples) * scale, -32768, 32767).astype(np.int16)


def const(value: int, samples: int) -> Samples:
    return np.full(samples, value, np.int16)


# -- mixing ------------------------------------------------------------------------------------------------------


def test_two_legs_hear_each_other_sample_exact_and_not_themselves() -> None:
    h = Harness()
    h.pair()
    h.listen("a", "b")
    clip = noise_clip(3 * N + 123, seed=1)
    h.engine.play("a", "p", [clip])
    h.run(6)
    heard = h.signal("b")
    assert heard.size == 6 * N
    np.testing.assert_array_equal(heard[: clip.size], clip)
    assert not heard[clip.size :].any()
    assert not h.signal("a").any()  # A does not hear itself


def test_three_leg_mix_sums_the_others_and_clips() -> None:
    h = Harness()
    for leg in "abc":
        h.engine.add_leg(leg)
        h.engine.join(leg, "m")
    h.listen("a", "b", "c")
    h.engine.play("a", "p", [const(100, 2 * N)])
    h.engine.play("b", "p", [const(1000, 2 * N)])
    h.engine.play("c", "p", [const(10000, N), const(30000, N)])
    h.run(2)
    first, second = slice(0, N), slice(N, 2 * N)
    assert (h.signal("a")[first] == 11000).all() and (h.signal("a")[second] == 31000).all()
    assert (h.signal("b")[first] == 10100).all() and (h.signal("b")[second] == 30100).all()
    assert (h.signal("c")[first] == 1100).all()
    h.engine.play("a", "q", [const(30000, N)])
    h.engine.play("b", "q", [const(30000, N)])
    h.engine.play("c", "q", [const(-30000, N)])
    h.run(1)
    assert (h.signal("c")[-N:] == 32767).all()  # 60000 clipped
    assert (h.signal("a")[-N:] == 0).all()


def test_leaving_the_mix_silences_both_ways_and_rejoining_restores() -> None:
    h = Harness()
    h.pair()
    h.listen("a", "b")
    h.engine.play("a", "p", [const(500, 10 * N)])
    h.engine.play("b", "p", [const(700, 10 * N)])
    h.run(2)
    h.engine.join("b", None)
    h.run(2)
    h.engine.join("b", "m")
    h.run(2)
    per_frame_b = h.signal("b").reshape(-1, N)[:, 0].tolist()
    per_frame_a = h.signal("a").reshape(-1, N)[:, 0].tolist()
    assert per_frame_b == [500, 500, 0, 0, 500, 500]
    assert per_frame_a == [700, 700, 0, 0, 700, 700]
    assert h.engine.stats.mixes == 1


def test_many_legs_random_clips_inbound_and_mixes_match_a_reference_mix() -> None:
    """Shared and distinct clips at different offsets, inbound frames, mixes of 1 to 4 legs on scattered rows
    and legs in no mix: every leg hears exactly the reference mix of the others."""
    rng = np.random.default_rng(7)
    engine = MediaEngine(64)
    h = Harness(engine)
    legs = [f"l{i}" for i in range(14)]
    plan_mix = ["2a", "3", "4", "2b", "3", "1", "4", "2a", None, "3", "4", "2b", "4", None]
    mixes = dict(zip(legs, plan_mix, strict=True))
    for leg in legs:
        engine.add_leg(leg)
    for leg in reversed(legs):
        engine.join(leg, mixes[leg])
    h.listen(*legs)
    shared = noise_clip(5 * N + 17, seed=2, scale=2000)
    ticks = 12
    expected_out = {leg: np.zeros(ticks * N, np.int64) for leg in legs}
    plan = {}
    for i, leg in enumerate(legs):
        start = int(rng.integers(0, 4))
        clip = shared if i % 3 else noise_clip(int(rng.integers(100, 4 * N)), seed=10 + i, scale=2000)
        plan[leg] = (start, clip)
        expected_out[leg][start * N : start * N + clip.size] += clip
    for k in range(ticks):
        for leg, (start, clip) in plan.items():
            if k == start:
                engine.play(leg, "p", [clip])
        if k in (3, 4):
            for leg in legs[:5]:
                frame = noise_clip(N, seed=100 + k, scale=1000)
                engine.push_inbound(leg, frame)
                expected_out[leg][(k) * N : (k + 1) * N] += frame
        h.run(1)
    for leg in legs:
        others = [expected_out[o] for o in legs if o != leg and mixes[leg] is not None and mixes[o] == mixes[leg]]
        want = np.sum(others, axis=0) if others else np.zeros(ticks * N)
        np.testing.assert_array_equal(h.signal(leg), np.clip(want, -32768, 32767))
    assert engine.stats.mixes == 5


# -- player --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("samples", "tick"), [(3 * N, 2), (3 * N + 1, 3), (1, 0)])
def test_play_finished_once_in_the_tick_of_the_last_sample(samples: int, tick: int) -> None:
    h = Harness()
    h.pair()
    h.engine.play("a", "p", [const(1, samples)])
    h.run(8)
    assert h.events == [(tick, PlayFinished("a", "p", True, tick * FRAME_S))]


def test_plays_are_a_fifo_back_to_back_and_clips_of_one_play_too() -> None:
    h = Harness()
    h.pair()
    h.listen("b")
    c1, c2, c3 = noise_clip(500, 1), noise_clip(200, 2), noise_clip(700, 3)
    h.engine.play("a", "first", [c1, c2])
    h.engine.play("a", "second", [c3])
    h.run(6)
    np.testing.assert_array_equal(h.signal("b")[:1400], np.concatenate([c1, c2, c3]))
    assert not h.signal("b")[1400:].any()
    assert h.of(PlayFinished) == [
        (2, PlayFinished("a", "first", True, 2 * FRAME_S)),  # sample 699 is in frame 2
        (4, PlayFinished("a", "second", True, 4 * FRAME_S)),  # sample 1399 is in frame 4
    ]


def test_empty_clips_and_empty_plays_finish() -> None:
    h = Harness()
    h.pair()
    h.listen("b")
    h.engine.play("a", "empty", [])
    h.engine.play("a", "gap", [const(5, 0), const(7, N), const(9, 0)])
    h.run(3)
    assert [e for _, e in h.events] == [
        PlayFinished("a", "empty", True, 0.0),
        PlayFinished("a", "gap", True, 0.0),
    ]
    assert (h.signal("b")[:N] == 7).all()


def test_stop_play_of_a_queued_tag_and_of_the_playing_tag() -> None:
    h = Harness()
    h.pair()
    h.listen("b")
    h.engine.play("a", "p1", [const(1, 4 * N + 10)])
    h.engine.play("a", "p2", [const(2, N)])
    h.engine.play("a", "p3", [const(3, 2 * N)])
    h.run(1)
    h.engine.stop_play("a", "p2")  # queued: dropped, reported at the next tick
    assert h.run(1) == [PlayFinished("a", "p2", False, 1 * FRAME_S)]
    h.engine.stop_play("a", "p1")  # playing: stops at the frame boundary, p3 starts with the next frame
    assert h.run(1) == [PlayFinished("a", "p1", False, 2 * FRAME_S)]
    h.run(2)
    frames = h.signal("b").reshape(-1, N)
    assert (frames[:2] == 1).all() and (frames[2:4] == 3).all() and not frames[4].any()
    assert h.of(PlayFinished)[-1] == (3, PlayFinished("a", "p3", True, 3 * FRAME_S))
    h.engine.play("a", "x", [const(1, 9 * N)])
    h.engine.play("a", "y", [const(1, 9 * N)])
    h.engine.stop_play("a")
    assert h.run(1) == [PlayFinished("a", "x", False, 5 * FRAME_S), PlayFinished("a", "y", False, 5 * FRAME_S)]
    h.engine.stop_play("a", "unknown")
    h.engine.stop_play("nobody")
    assert h.run(1) == []


def test_a_clip_played_on_many_legs_is_held_once_until_the_last_play_ends() -> None:
    h = Harness()
    clip = noise_clip(3 * N, seed=5)
    for i in range(5):
        h.pair(f"a{i}", f"b{i}", f"m{i}")
        h.listen(f"b{i}")
    for i in range(5):
        h.engine.play(f"a{i}", "p", [clip, clip])
        h.run(1)  # each leg starts a frame later than the previous one
    assert h.engine.stats.clips == 1 and h.engine.stats.playing == 5
    h.run(10)
    assert h.engine.stats.clips == 0 and h.engine.stats.playing == 0
    for i in range(5):
        heard = h.signal(f"b{i}")[i * N :]  # queued before tick i, heard from tick i
        np.testing.assert_array_equal(heard[: 2 * clip.size], np.concatenate([clip, clip]))


def test_play_rejects_what_is_not_int16_mono() -> None:
    engine = MediaEngine(2)
    engine.add_leg("a")
    with pytest.raises(ValueError):
        engine.play("a", "p", [np.zeros(10, np.float32)])  # type: ignore[list-item,unused-ignore]
    with pytest.raises(ValueError):
        engine.play("a", "p", [np.zeros((2, 10), np.int16)])
    with pytest.raises(KeyError):
        engine.play("nobody", "p", [])


# -- legs and rows ----------------------------------------------------------------------------------------------


def test_remove_leg_is_silent_frees_the_row_and_capacity_is_enforced() -> None:
    h = Harness(MediaEngine(3))
    h.pair()
    h.engine.add_leg("c")
    h.engine.play("a", "p", [const(1, 50 * N)])
    h.engine.send_tones("a", "t", "123")
    h.engine.record("a", "r", max_seconds=5, initial_silence_seconds=5, max_silence_seconds=5)
    h.engine.watch_speech("a", True)
    h.run(3)
    with pytest.raises(EngineFull):
        h.engine.add_leg("d")
    with pytest.raises(ValueError):
        h.engine.add_leg("c")
    h.engine.remove_leg("a")
    h.engine.remove_leg("a")  # idempotent
    assert not h.engine.has_leg("a") and h.engine.legs == 2
    assert [e for e in h.run(60) if e.leg_id == "a"] == []
    h.engine.add_leg("d")  # takes the freed row 0
    assert h.engine.stats.rows == 3 and h.engine.legs == 3
    h.engine.join("d", "m")
    h.listen("b")
    h.run(1)
    assert not h.signal("b").any()  # the new leg in row 0 starts idle: nothing of A's player is left
    assert h.engine.stats.playing == 0 and h.engine.stats.recording == 0 and h.engine.stats.clips == 0


def test_only_the_prefix_of_rows_in_use_is_processed() -> None:
    h = Harness(MediaEngine(4096))
    h.pair()
    h.run(1)
    assert h.engine.stats.dsp_rows == 2 and h.engine.stats.rows == 2
    h.engine.add_leg("c")
    h.engine.add_leg("d")
    h.engine.remove_leg("d")
    h.run(1)
    assert h.engine.stats.dsp_rows == 3
    h.engine.remove_leg("a")  # row 0 freed, row 2 still in use
    h.run(1)
    assert h.engine.stats.dsp_rows == 3
    h.engine.remove_leg("c")
    h.run(1)
    assert h.engine.stats.dsp_rows == 2  # only b, in row 1
    h.engine.remove_leg("b")
    h.run(1)
    assert h.engine.stats.dsp_rows == 0


# -- tones and DTMF ----------------------------------------------------------------------------------------------


def test_tones_sent_by_one_bot_are_detected_on_the_other_in_order_with_their_spacing() -> None:
    h = Harness()
    h.pair()
    h.engine.send_tones("a", "t", "123#", tone_ms=100, gap_ms=300)
    h.run(90)
    detected = [e for _, e in h.of(ToneDetected)]
    assert [(e.leg_id, e.key) for e in detected] == [("b", "1"), ("b", "2"), ("b", "3"), ("b", "#")]
    starts = np.array([e.at for e in detected])
    np.testing.assert_allclose(starts, [0.0, 0.4, 0.8, 1.2], atol=0.005)
    assert h.of(TonesFinished) == [(79, TonesFinished("a", "t", True, 79 * FRAME_S))]  # 4 x 400 ms = 80 frames


def test_tone_fifo_runs_alongside_the_player_and_stop_tones_reports() -> None:
    h = Harness()
    h.pair()
    h.engine.play("a", "p", [const(0, 20 * N)])
    h.engine.send_tones("a", "t1", "5", tone_ms=60, gap_ms=40)
    h.engine.send_tones("a", "t2", "", tone_ms=60, gap_ms=40)
    h.engine.send_tones("a", "t3", "9999", tone_ms=60, gap_ms=40)
    h.run(8)
    h.engine.stop_tones("a", "t3")
    h.run(20)
    assert [(k, e) for k, e in h.of(TonesFinished)] == [
        (4, TonesFinished("a", "t1", True, 4 * FRAME_S)),
        (5, TonesFinished("a", "t2", True, 5 * FRAME_S)),
        (8, TonesFinished("a", "t3", False, 8 * FRAME_S)),
    ]
    assert [e.key for _, e in h.of(ToneDetected)] == ["5", "9"]
    assert h.of(PlayFinished) == [(19, PlayFinished("a", "p", True, 19 * FRAME_S))]
    with pytest.raises(ValueError):
        h.engine.send_tones("a", "bad", "12x")


@pytest.mark.parametrize("replace", [True, False])
def test_tones_over_a_loud_prompt_take_the_line_unless_told_to_sum(replace: bool) -> None:
    h = Harness(MediaEngine(4, tones_replace_output=replace))
    h.pair()
    h.listen("b")
    hum = (np.sin(2 * np.pi * 300 * np.arange(40 * N) / 16000) * 8000).astype(np.int16)  # -12 dBFS
    h.engine.play("a", "p", [hum])
    h.run(5)
    h.engine.send_tones("a", "t", "#", tone_ms=100, gap_ms=100)
    h.run(35)
    tones = generate_dtmf("#", 100)
    heard = h.signal("b")
    if replace:
        assert [e.key for _, e in h.of(ToneDetected)] == ["#"]
        np.testing.assert_array_equal(heard[5 * N : 5 * N + tones.size], tones)
        assert not heard[5 * N + tones.size : 15 * N].any()  # the gap: silence, not the prompt
        np.testing.assert_array_equal(heard[15 * N : 40 * N], hum[15 * N : 40 * N])  # the prompt kept its pace
    else:
        assert h.of(ToneDetected) == []  # a tone pair summed with the hum fails the purity test
        want = hum[: 40 * N].astype(np.int32)
        want[5 * N : 5 * N + tones.size] += tones
        np.testing.assert_array_equal(heard, np.clip(want, -32768, 32767))
    assert h.of(PlayFinished) == [(39, PlayFinished("a", "p", True, 39 * FRAME_S))]


def test_tones_from_the_far_end_queue_are_detected() -> None:
    h = Harness()
    h.pair()
    tone = np.concatenate([generate_dtmf("7", 80), np.zeros(N * 4 - 1280, np.int16)])
    for frame in tone.reshape(-1, N):
        h.engine.push_inbound("a", frame)
    h.run(6)
    assert [(e.leg_id, e.key) for _, e in h.of(ToneDetected)] == [("b", "7")]


# -- recording -----------------------------------------------------------------------------------------------------


def speech(seconds: float, seed: int = 3) -> Samples:
    talk: Samples = speech_like(seconds, np.random.default_rng(seed))
    return talk


def test_recording_ends_after_max_silence_following_speech() -> None:
    h = Harness()
    h.pair()
    h.listen("b")
    talk = speech(2.0)
    h.engine.play("a", "p", [talk])
    h.engine.record("b", "r", max_seconds=30, initial_silence_seconds=3, max_silence_seconds=1.0)
    done = h.until(RecordingFinished)
    assert done.reason is RecordStop.MAX_SILENCE and done.speech_detected
    assert 3.0 <= done.at <= 3.6  # 2 s of speech, ~0.3 s of VAD hangover, then 1 s of silence
    assert h.events[0] == (0, RecordingStarted("b", "r", 0.0))
    np.testing.assert_array_equal(done.samples, h.signal("b")[: done.samples.size])
    assert done.samples.size == round(done.at / FRAME_S + 1) * N and not done.samples.flags.writeable
    kinds = [type(e) for _, e in h.events if e.leg_id == "b"]
    assert SpeechStarted in kinds and SpeechStopped in kinds  # speech events while recording


def test_recording_of_silence_ends_with_initial_silence() -> None:
    h = Harness()
    h.pair()
    h.engine.record("b", "r", max_seconds=30, initial_silence_seconds=1.0, max_silence_seconds=1.0)
    done = h.until(RecordingFinished)
    assert done.reason is RecordStop.INITIAL_SILENCE and not done.speech_detected
    assert done.samples.size == 16000 and done.at == pytest.approx(49 * FRAME_S)


def test_recording_ends_at_max_duration_with_exactly_that_many_samples() -> None:
    h = Harness()
    h.pair()
    h.listen("b")
    talk = speech(3.0)
    h.engine.play("a", "p", [talk])
    h.engine.record("b", "r", max_seconds=1.01, initial_silence_seconds=0.5, max_silence_seconds=0.2)
    done = h.until(RecordingFinished)
    assert done.reason is RecordStop.MAX_DURATION and done.speech_detected
    assert done.samples.size == 16160
    np.testing.assert_array_equal(done.samples, talk[:16160])


def test_stop_key_ends_the_recording_without_the_tone() -> None:
    h = Harness()
    h.pair()
    talk = speech(1.0)
    h.engine.play("a", "p", [talk])
    h.engine.record("b", "r", max_seconds=30, initial_silence_seconds=5, max_silence_seconds=5, stop_keys="#*")
    h.until(PlayFinished)
    tone_tick = h.k
    h.engine.send_tones("a", "t", "#")
    done = h.until(RecordingFinished)
    assert done.reason is RecordStop.STOP_TONE
    assert tone_tick * N == talk.size  # the tone follows the speech directly
    assert abs(done.samples.size - talk.size) <= 80  # cut at the tone's estimated start (+-5 ms)
    np.testing.assert_array_equal(done.samples[: talk.size], talk[: done.samples.size])
    assert detect_keys(done.samples) == []
    assert [(e.leg_id, e.key) for _, e in h.of(ToneDetected)] == [("b", "#")]  # still reported


def test_record_after_play_starts_when_the_prompt_ends() -> None:
    h = Harness()
    h.pair()
    h.listen("b")
    h.engine.play("b", "prompt", [const(0, 10 * N + 5)])
    h.engine.play("a", "talk", [noise_clip(40 * N, seed=4)])
    h.engine.record("b", "r", max_seconds=0.2, initial_silence_seconds=5, max_silence_seconds=5, after_play="prompt")
    h.run(30)
    b_events = [(k, e) for k, e in h.events if e.leg_id == "b"]
    assert b_events[:2] == [
        (10, PlayFinished("b", "prompt", True, 10 * FRAME_S)),
        (10, RecordingStarted("b", "r", 10 * FRAME_S)),
    ]
    done = h.of(RecordingFinished)[0][1]
    assert done.reason is RecordStop.MAX_DURATION
    np.testing.assert_array_equal(done.samples, h.signal("b")[10 * N : 20 * N])


def test_record_after_a_stopped_or_unknown_play_starts_anyway() -> None:
    h = Harness()
    h.pair()
    h.engine.play("b", "prompt", [const(0, 100 * N)])
    h.engine.record("b", "r", max_seconds=9, initial_silence_seconds=9, max_silence_seconds=9, after_play="prompt")
    h.run(3)
    assert not h.of(RecordingStarted)
    h.engine.stop_play("b", "prompt")
    assert h.run(1) == [PlayFinished("b", "prompt", False, 3 * FRAME_S), RecordingStarted("b", "r", 3 * FRAME_S)]
    h.engine.record("a", "r2", max_seconds=9, initial_silence_seconds=9, max_silence_seconds=9, after_play="nope")
    assert h.run(1) == [RecordingStarted("a", "r2", 4 * FRAME_S)]


def test_second_record_cancels_the_first_and_stop_recording_keeps_samples() -> None:
    h = Harness()
    h.pair()
    h.engine.record("b", "r1", max_seconds=9, initial_silence_seconds=9, max_silence_seconds=9)
    h.run(5)
    h.engine.record("b", "r2", max_seconds=9, initial_silence_seconds=9, max_silence_seconds=9)
    first = h.run(1)
    assert [type(e) for e in first] == [RecordingFinished, RecordingStarted]
    cancelled = first[0]
    assert isinstance(cancelled, RecordingFinished)
    assert cancelled.tag == "r1" and cancelled.reason is RecordStop.CANCELLED and cancelled.samples.size == 5 * N
    h.run(2)
    h.engine.stop_recording("b", "other")  # wrong tag: ignored
    h.engine.stop_recording("b", "r2")
    stopped = h.run(1)
    assert len(stopped) == 1 and isinstance(stopped[0], RecordingFinished)
    assert stopped[0].reason is RecordStop.CANCELLED and stopped[0].samples.size == 3 * N
    h.engine.stop_recording("b")
    h.engine.stop_recording("nobody")
    assert h.run(1) == []
    with pytest.raises(ValueError):
        h.engine.record("b", "r", max_seconds=0, initial_silence_seconds=1, max_silence_seconds=1)


def test_watch_speech_reports_a_leg_that_is_not_recording() -> None:
    h = Harness()
    h.pair("a", "b", "m1")
    h.pair("c", "d", "m2")
    talk = [speech(1.0), const(0, 50 * N)]
    h.engine.play("a", "p", talk)
    h.engine.play("c", "p", talk)
    h.engine.watch_speech("b", True)
    h.run(100)
    changes = [(e.leg_id, type(e)) for _, e in h.events if isinstance(e, SpeechStarted | SpeechStopped)]
    assert changes[0] == ("b", SpeechStarted) and changes[-1] == ("b", SpeechStopped)
    assert {leg for leg, _ in changes} == {"b"}  # d is neither watched nor recording
    h.engine.watch_speech("b", False)
    h.engine.play("a", "p", talk)
    h.run(100)
    assert len([e for _, e in h.events if isinstance(e, SpeechStarted | SpeechStopped)]) == len(changes)


# -- mute, inbound, taps -----------------------------------------------------------------------------------------


def test_muted_leg_is_not_heard_but_its_prompt_finishes_on_time() -> None:
    h = Harness()
    h.pair()
    h.listen("b")
    h.engine.push_inbound("a", const(99, N))
    h.engine.set_muted("a", True)
    h.engine.play("a", "p", [const(1000, 3 * N)])
    h.engine.send_tones("a", "t", "1", tone_ms=40, gap_ms=0)
    h.run(3)
    assert not h.signal("b").any()
    assert h.of(PlayFinished) == [(2, PlayFinished("a", "p", True, 2 * FRAME_S))]
    assert h.of(TonesFinished) == [(1, TonesFinished("a", "t", True, 1 * FRAME_S))]
    h.engine.set_muted("a", False)
    h.engine.play("a", "q", [const(1000, N)])
    h.run(1)
    assert (h.signal("b")[-N:] == 1000).all()


def test_inbound_queue_overflow_drops_the_oldest_and_counts() -> None:
    h = Harness(MediaEngine(4, inbound_queue_frames=4))
    h.pair()
    h.listen("b")
    for value in range(1, 7):
        h.engine.push_inbound("a", const(value, N))
    assert h.engine.stats.inbound_dropped == 2
    h.engine.play("a", "p", [const(1000, 2 * N)])  # the player adds to the inbound audio
    h.run(6)
    assert h.signal("b").reshape(-1, N)[:, 0].tolist() == [1003, 1004, 5, 6, 0, 0]
    with pytest.raises(ValueError):
        h.engine.push_inbound("a", np.zeros(160, np.int16))
    with pytest.raises(ValueError):
        h.engine.push_inbound("a", np.zeros(N, np.float32))  # type: ignore[arg-type,unused-ignore]


def test_a_failing_tap_is_counted_and_does_not_stop_the_tick() -> None:
    h = Harness()
    h.pair()

    def broken(leg_id: str, frame: Samples, now: float) -> None:
        raise RuntimeError("boom")

    sub = h.engine.subscribe(Heard("a", broken))
    h.listen("b")
    h.engine.play("a", "p", [const(5, N)])
    assert h.run(1) == [PlayFinished("a", "p", True, 0.0)]
    assert h.engine.stats.tap_errors == 1 and (h.signal("b") == 5).all()
    h.engine.unsubscribe(sub)
    h.run(1)
    assert h.engine.stats.tap_errors == 1


# -- the DSP banks on a prefix of their rows ----------------------------------------------------------------------


def test_dtmf_and_vad_banks_process_a_prefix_like_the_whole() -> None:
    rng = np.random.default_rng(11)
    full_dtmf, part_dtmf = DtmfDetectorBank(64), DtmfDetectorBank(64)
    full_vad, part_vad = VadBank(64), VadBank(64)
    for bank in (full_dtmf, part_dtmf, full_vad, part_vad):
        for _ in range(3):
            bank.add_channel()
    audio = np.zeros((64, 40 * N), np.int16)
    audio[0, 1000:2600] = generate_dtmf("4", 100)
    audio[2, 3000:4600] = generate_dtmf("D", 100)
    audio[1] = speech(40 * N / 16000, seed=5)
    audio[3:] = rng.integers(-20000, 20000, size=(61, 40 * N))  # rows not in use: ignored either way
    full_keys, part_keys = [], []
    for f in range(40):
        frame = audio[:, f * N : (f + 1) * N]
        full_keys += full_dtmf.process(frame, f * FRAME_S)
        part_keys += part_dtmf.process(frame[:3], f * FRAME_S)
        full, part = full_vad.process(frame), part_vad.process(frame[:3])
        np.testing.assert_array_equal(full.active[:3], part.active)
        assert part.active.shape == (3,) and not full.active[3:].any()
    assert part_keys == full_keys and [(e.channel, e.key) for e in part_keys] == [(0, "4"), (2, "D")]
    assert part_dtmf.end == part_vad.end == 3
    with pytest.raises(ValueError):
        part_dtmf.process(audio[:2, :N], 0.0)  # row 2 is in use
    with pytest.raises(ValueError):
        part_vad.process(audio[:2, :N])
    part_dtmf.remove_channel(2)
    part_vad.remove_channel(2)
    assert part_dtmf.end == part_vad.end == 2
    assert part_dtmf.process(audio[:2, :N], 0.0) == [] and part_vad.process(audio[:2, :N]).active.shape == (2,)
    part_dtmf.remove_channel(0)
    assert part_dtmf.end == 2  # row 1 still in use
