"""The utterance segmenter, sans-I/O, with an energy detector: utterances are cut at pauses, pauses shorter than
min_silence stay inside, long speech is cut at max_seconds with bounded memory, and noise bursts too short to be
speech give nothing."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from opencomms.speech.segmenter import CHUNK, SAMPLE_RATE, Segmenter, SegmenterConfig


class EnergyDetector:
    """Speech where the chunk's RMS exceeds 500 (tests only)."""

    def new_state(self) -> object:
        return None

    def probabilities(self, state: object, chunks: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        rms = np.sqrt(np.mean((chunks * 32768.0) ** 2, axis=1))
        return (rms > 500).astype(np.float32)


def tone(seconds: float) -> npt.NDArray[np.int16]:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (4000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16)


def quiet(seconds: float) -> npt.NDArray[np.int16]:
    return np.zeros(int(seconds * SAMPLE_RATE), dtype=np.int16)


def feed(seg: Segmenter, signal: npt.NDArray[np.int16]) -> list:
    out = []
    for i in range(0, signal.size, 320):  # 20 ms frames, as the engine hands them over
        out.extend(seg.push(signal[i : i + 320]))
    return out


def test_two_utterances_split_at_the_pause_and_a_short_pause_stays_inside() -> None:
    seg = Segmenter(EnergyDetector(), SegmenterConfig(min_silence=0.3, pre_roll=0.1))
    signal = np.concatenate([quiet(0.5), tone(1.0), quiet(0.15), tone(0.5), quiet(0.6), tone(0.8), quiet(0.6)])
    got = feed(seg, signal)
    assert len(got) == 2
    first, second = got
    assert first.start == pytest.approx(0.5 - 0.1, abs=0.04) and first.speech_end == pytest.approx(2.15, abs=0.04)
    assert second.start == pytest.approx(2.75 - 0.1, abs=0.04) and second.speech_end == pytest.approx(3.55, abs=0.04)
    assert first.audio.size == pytest.approx((first.end - first.start) * SAMPLE_RATE, abs=CHUNK)
    assert not seg.in_speech and seg.flush() == []


def test_long_speech_is_cut_at_max_seconds_and_memory_stays_bounded() -> None:
    cfg = SegmenterConfig(max_seconds=4.0, cut_window=1.0)
    seg = Segmenter(EnergyDetector(), cfg)
    peak = 0
    got = []
    for _ in range(30):  # 30 s of speech without a pause
        got.extend(seg.push(tone(1.0)))
        peak = max(peak, seg.held_samples)
    assert len(got) >= 7 and all(u.cut for u in got)
    assert all(u.end - u.start <= 4.0 + 0.05 for u in got)
    assert peak <= (4.0 + cfg.pre_roll) * SAMPLE_RATE + 2 * CHUNK
    rest = seg.flush()
    assert len(rest) == 1 and not rest[0].cut


def test_a_click_is_not_an_utterance_and_a_gap_closes_the_open_one() -> None:
    seg = Segmenter(EnergyDetector(), SegmenterConfig(min_speech=0.25))
    assert feed(seg, np.concatenate([quiet(0.3), tone(0.1), quiet(1.0)])) == []
    seg.push(tone(1.0)[:320], at=10.0)
    for i in range(1, 50):
        seg.push(tone(1.0)[:320], at=10.0 + 0.02 * i)
    assert seg.in_speech
    closed = seg.push(quiet(0.02), at=20.0)  # the stream jumped: what was open is done
    assert len(closed) == 1 and closed[0].start == pytest.approx(10.0, abs=0.05)


def test_config_is_checked() -> None:
    with pytest.raises(ValueError):
        SegmenterConfig(threshold=0.3, neg_threshold=0.5)
    with pytest.raises(ValueError):
        SegmenterConfig(max_seconds=0.5)
