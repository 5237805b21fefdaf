"""RFC 4733 keys in the media engine: a key pushed by a listener (the RTP bank) is ToneDetected on the legs that
hear its sender, in the tick it arrives, once per press, and stops their recordings; it is then played in-band
for the members that hear DTMF in-band (never re-detected) and reaches out-of-band members as OutOfBandKey, as
before. Pure: tick(now) by hand, no Goertzel involved in the report."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from opencomms.domain.media import RecordStop
from opencomms.media.dtmf import detect_keys
from opencomms.media.engine import (
    Batch,
    Heard,
    MediaEngine,
    MediaEvent,
    OutOfBandKey,
    RecordingFinished,
    ToneDetected,
)

Samples = npt.NDArray[np.int16]


def keys_in(frames: list[Samples]) -> str:
    """The keys a standalone detector finds in what a leg heard."""
    return "".join(k.key for k in detect_keys(np.concatenate(frames), 16000))


class Call:
    """A phone (whose far end sends RFC 4733) with the bot, an in-band peer and an out-of-band peer in one mix."""

    def __init__(self, *legs: str) -> None:
        self.engine = MediaEngine(8)
        self.heard: dict[str, list[Samples]] = {}
        self.events: list[tuple[int, MediaEvent]] = []
        self.arrivals: list[tuple[str, str, float]] = []  # keys the "bank" receives during the next tick
        self.k = 0
        for leg in legs:
            self.engine.add_leg(leg)
            self.engine.join(leg, "m")
            self.heard[leg] = []
            self.engine.subscribe(Heard(leg, lambda leg_id, f, _now: self.heard[leg_id].append(f.copy())))
        self.engine.subscribe(Batch(self._bank))

    def _bank(self, _inp: npt.NDArray[np.int32], _now: float) -> None:
        for leg, key, at in self.arrivals:
            self.engine.push_key(leg, key, at)
        self.arrivals.clear()

    def run(self, ticks: int) -> None:
        for _ in range(ticks):
            self.events.extend((self.k, e) for e in self.engine.tick(self.k * 0.02))
            self.k += 1

    def tones(self, leg: str) -> list[tuple[int, ToneDetected]]:
        return [(k, e) for k, e in self.events if isinstance(e, ToneDetected) and e.leg_id == leg]


def test_a_received_key_is_a_tone_event_in_the_tick_it_arrives_once_and_others_hear_it_in_band() -> None:
    c = Call("phone", "bot", "carol", "dave")
    c.engine.set_out_of_band_dtmf("dave", True)  # an RFC 4733 peer
    c.run(3)
    c.arrivals.append(("phone", "5", 0.045))
    c.run(1)  # tick 3 (now 0.06): the bank receives the key during it
    assert c.tones("bot") == [(3, ToneDetected("bot", "5", 0.045))]
    assert c.tones("carol") == [(3, ToneDetected("carol", "5", 0.045))]
    assert not any(c.engine.out_of_band_keys)  # nothing sounds yet: the tone starts with the next tick
    c.run(20)
    # reported once: the in-band tone that follows is kept out of the detectors of the legs already told
    assert len(c.tones("bot")) == 1 and len(c.tones("carol")) == 1 and c.tones("dave") == []
    assert c.tones("phone") == []
    # carol (no telephone-event) hears it in-band for 100 ms; dave gets it out of band, not in his audio
    assert keys_in(c.heard["carol"]) == "5"
    assert keys_in(c.heard["dave"]) == ""
    oob = [(k, e) for k, e in c.events if isinstance(e, OutOfBandKey)]
    assert oob == [(4, OutOfBandKey("dave", "5", 100, 0.08, "phone"))]


def test_one_event_per_press_even_for_the_same_key_back_to_back() -> None:
    c = Call("phone", "bot")
    c.arrivals.append(("phone", "1", 0.0))
    c.run(1)
    c.arrivals.append(("phone", "1", 0.02))  # a second press while the first still sounds in-band
    c.run(1)
    c.arrivals.append(("phone", "#", 0.04))
    c.run(30)
    assert [(k, e.key) for k, e in c.tones("bot")] == [(0, "1"), (1, "1"), (2, "#")]


def test_a_received_stop_key_ends_the_recording_in_the_same_tick() -> None:
    c = Call("phone", "bot")
    c.engine.record("bot", "r", max_seconds=10, initial_silence_seconds=0, max_silence_seconds=0, stop_keys="#")
    c.run(10)
    c.arrivals.append(("phone", "#", 0.15))
    c.run(1)
    (k, done), *_ = [(k, e) for k, e in c.events if isinstance(e, RecordingFinished)]
    assert k == 10 and done.reason is RecordStop.STOP_TONE
    assert done.samples.size == round(0.15 * 16000)  # up to the key's start


def test_keys_of_a_muted_leg_flash_and_unknown_legs_reach_no_one() -> None:
    c = Call("phone", "bot")
    c.engine.set_muted("phone", True)
    c.arrivals.append(("phone", "7", 0.0))
    c.run(1)
    c.engine.set_muted("phone", False)
    c.arrivals.extend([("phone", "!", 0.02), ("nobody", "1", 0.02)])
    c.run(10)
    assert c.tones("bot") == [] and keys_in(c.heard["bot"]) == ""


def test_a_key_pushed_between_ticks_is_reported_by_the_next_tick() -> None:
    c = Call("phone", "bot")
    c.run(1)
    c.engine.push_key("phone", "9", 0.03)  # e.g. an engine command
    c.run(1)
    assert c.tones("bot") == [(1, ToneDetected("bot", "9", 0.03))]


def test_a_flood_of_keys_is_bounded() -> None:
    c = Call("phone", "bot")
    for k in range(50):  # 50 presses in one tick: far more than can sound in-band
        c.arrivals.append(("phone", "123"[k % 3], 0.0))
    c.run(1)
    assert len(c.tones("bot")) == 16 and c.engine.stats.keys_dropped == 34
    c.run(85)  # 1.6 s later they have sounded: keys are taken again
    c.arrivals.append(("phone", "9", 1.72))
    c.run(1)
    assert c.tones("bot")[-1][1].key == "9" and len(c.tones("bot")) == 17
