"""Out-of-band DTMF in the media engine: a leg marked `set_out_of_band_dtmf` (an RFC 4733 phone) gets one
OutOfBandKey event per key another member of its mix sends, in order and at the tone's start, and does not hear
the tones; the other members hear them in-band as before. Pure: tick(now) in a loop."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from opencomms.media.dtmf import detect_keys
from opencomms.media.engine import Batch, Heard, MediaEngine, MediaEvent, OutOfBandKey, ToneDetected, TonesFinished
from opencomms.media.frames import FRAME_SAMPLES

N = FRAME_SAMPLES
Samples = npt.NDArray[np.int16]


class Harness:
    """Ticks an engine with now = k * 20 ms, keeping every event with its tick and what each leg hears."""

    def __init__(self, engine: MediaEngine, legs: str, mix: str = "m") -> None:
        self.engine = engine
        self.heard: dict[str, list[Samples]] = {}
        self.events: list[tuple[int, MediaEvent]] = []
        self.keys_in_taps: list[OutOfBandKey] = []
        self.k = 0
        for leg in legs:
            engine.add_leg(leg)
            engine.join(leg, mix)
            self.heard[leg] = []
            engine.subscribe(Heard(leg, lambda leg_id, frame, _now: self.heard[leg_id].append(frame.copy())))
        engine.subscribe(Batch(lambda _inp, _now: self.keys_in_taps.extend(engine.out_of_band_keys)))

    def run(self, ticks: int) -> None:
        for _ in range(ticks):
            self.events.extend((self.k, e) for e in self.engine.tick(self.k * 0.02))
            self.k += 1

    def audio(self, leg: str) -> Samples:
        return np.concatenate(self.heard[leg])

    def oob(self) -> list[tuple[int, OutOfBandKey]]:
        return [(k, e) for k, e in self.events if isinstance(e, OutOfBandKey)]

    def detected(self, leg: str) -> str:
        return "".join(e.key for _, e in self.events if isinstance(e, ToneDetected) and e.leg_id == leg)


def test_out_of_band_leg_gets_one_event_per_key_in_order_and_hears_no_tone_others_hear_them() -> None:
    h = Harness(MediaEngine(8), "abc")
    h.engine.set_out_of_band_dtmf("b", True)
    h.engine.send_tones("a", "t", "12#", tone_ms=100, gap_ms=70)
    h.run(30)
    # keys start at 0, 170 and 340 ms: reported in the ticks whose frame holds their first sample (0, 8, 17)
    assert h.oob() == [
        (0, OutOfBandKey("b", "1", 100, 0.0, "a")),
        (8, OutOfBandKey("b", "2", 100, 0.17, "a")),
        (17, OutOfBandKey("b", "#", 100, 0.34, "a")),
    ]
    assert h.keys_in_taps == [e for _, e in h.oob()]  # the RTP bank reads them during the same tick
    assert not h.audio("b").any()  # a sends nothing but the tones: b hears pure silence
    assert [d.key for d in detect_keys(h.audio("c"))] == ["1", "2", "#"] and h.detected("c") == "12#"
    assert h.detected("b") == "" and h.detected("a") == ""
    assert [e for _, e in h.events if isinstance(e, TonesFinished)] == [TonesFinished("a", "t", True, 25 * 0.02)]


def test_only_the_tone_is_kept_out_when_tones_add_to_a_prompt_and_other_members_still_reach_the_leg() -> None:
    h = Harness(MediaEngine(8, tones_replace_output=False), "abd")
    h.engine.set_out_of_band_dtmf("b", True)
    rng = np.random.default_rng(7)
    prompt = (rng.standard_normal(40 * N) * 1500).astype(np.int16)
    voice = (rng.standard_normal(40 * N) * 1500).astype(np.int16)
    h.engine.play("a", "p", [prompt])
    h.engine.play("d", "v", [voice])
    h.engine.send_tones("a", "t", "5", tone_ms=200, gap_ms=0)
    h.run(20)
    np.testing.assert_array_equal(h.audio("b"), (prompt[: 20 * N].astype(np.int32) + voice[: 20 * N]).astype(np.int16))
    assert [e.key for _, e in h.oob()] == ["5"]
    assert [d.key for d in detect_keys(h.audio("d"))] == ["5"]


def test_switching_off_brings_tones_back_in_band_and_a_muted_sender_reaches_no_one() -> None:
    h = Harness(MediaEngine(8), "ab")
    h.engine.set_out_of_band_dtmf("b", True)
    h.engine.send_tones("a", "t", "4", tone_ms=100, gap_ms=100)
    h.run(10)
    h.engine.set_out_of_band_dtmf("b", False)
    h.engine.send_tones("a", "t", "7", tone_ms=100, gap_ms=100)
    h.run(10)
    assert [e.key for _, e in h.oob()] == ["4"] and h.detected("b") == "7"
    h.engine.set_out_of_band_dtmf("b", True)
    h.engine.set_muted("a", True)
    h.engine.send_tones("a", "t", "9!", tone_ms=100, gap_ms=100)
    h.run(20)
    assert [e.key for _, e in h.oob()] == ["4"] and h.detected("b") == "7"
    h.engine.set_muted("a", False)
    h.engine.send_tones("a", "t", "!", tone_ms=100, gap_ms=100)  # hook flash: out of band only
    h.run(10)
    assert [e.key for _, e in h.oob()] == ["4", "!"]


def test_no_events_without_out_of_band_legs_and_a_removed_leg_stops_them() -> None:
    h = Harness(MediaEngine(8), "abc")
    h.engine.send_tones("a", "t", "12", tone_ms=100, gap_ms=100)
    h.run(20)
    assert h.oob() == [] and h.detected("b") == "12" and h.detected("c") == "12"
    h.engine.set_out_of_band_dtmf("c", True)
    h.engine.send_tones("a", "t", "3", tone_ms=100, gap_ms=100)
    h.run(3)
    h.engine.remove_leg("c")
    h.engine.send_tones("a", "t", "6", tone_ms=100, gap_ms=100)
    h.run(20)
    assert [(e.leg_id, e.key) for _, e in h.oob()] == [("c", "3")]
    assert h.detected("b") == "1236"
