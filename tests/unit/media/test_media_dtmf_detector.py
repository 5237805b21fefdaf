"""In-band DTMF detection: every key, codecs, noise, twist, level, frequency, timing, debounce, the bank."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from media_signals import place, to_int16, tone_pair, white_noise_for_snr

from opencomms.media import g711
from opencomms.media.dtmf import (
    KEYS,
    DtmfDetector,
    DtmfDetectorBank,
    DtmfDetectorConfig,
    DtmfKeyDetected,
    detect_keys,
    generate_dtmf,
    key_frequencies,
)
from opencomms.media.dtmf.goertzel import ToneAnalyzer, goertzel_power
from opencomms.media.dtmf.tones import DBM0_IN_DBFS
from opencomms.media.resample import Resampler
from opencomms.media.slots import BankFullError

RATE = 16000


def keys_of(events: list[DtmfKeyDetected]) -> str:
    return "".join(e.key for e in events)


def padded(
    tone: npt.NDArray[np.float64] | npt.NDArray[np.int16], lead: int = 1000, total: int = 6400
) -> npt.NDArray[np.int16]:
    return to_int16(place([(lead, tone)], max(total, lead + tone.size + 3200)))


@pytest.mark.parametrize("key", list(KEYS))
def test_every_key_is_detected_once_with_its_start_time(key: str) -> None:
    events = detect_keys(padded(generate_dtmf(key, 100), lead=1000), start_time=10.0)
    assert keys_of(events) == key
    assert events[0].channel == 0
    assert events[0].start_time == pytest.approx(10.0 + 1000 / RATE, abs=0.003)


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_every_key_survives_a_g711_round_trip_at_8khz(law: str) -> None:
    encode, decode = (g711.ulaw_encode, g711.ulaw_decode) if law == "ulaw" else (g711.alaw_encode, g711.alaw_decode)
    signal = np.concatenate([np.concatenate([generate_dtmf(k, 80), np.zeros(1120, np.int16)]) for k in KEYS])
    down, up = Resampler(16000, 8000), Resampler(8000, 16000)
    out = []
    for i in range(0, signal.size, 320):
        narrow = down.process(signal[i : i + 320])
        out.append(up.process(decode(encode(narrow))))
    assert keys_of(detect_keys(np.concatenate(out))) == KEYS


def test_every_key_with_white_noise_at_15_db_snr() -> None:
    rng = np.random.default_rng(11)
    for key in KEYS:
        tone = generate_dtmf(key, 100).astype(np.float64)
        x = place([(1000, tone)], 6400)
        x += white_noise_for_snr(tone, 15.0, x.size, rng)
        assert keys_of(detect_keys(to_int16(x))) == key, key


def test_every_key_at_8khz() -> None:
    for key in KEYS:
        x = to_int16(place([(500, generate_dtmf(key, 60, rate=8000))], 3200))
        events = detect_keys(x, sample_rate=8000)
        assert keys_of(events) == key
        assert events[0].start_time == pytest.approx(500 / 8000, abs=0.003)


@pytest.mark.parametrize(
    ("low_db", "high_db", "accepted"),
    [
        (-8.0, -16.0, True),  # normal twist 8 dB: accept
        (-8.0, -20.0, False),  # normal twist 12 dB: reject
        (-12.0, -8.0, True),  # reverse twist 4 dB: accept
        (-20.0, -8.0, False),  # reverse twist 12 dB: reject
    ],
)
def test_twist_limits(low_db: float, high_db: float, accepted: bool) -> None:
    for key in "1590D":
        f_low, f_high = key_frequencies(key)
        x = padded(tone_pair(f_low, f_high, 100, low_db, high_db))
        assert keys_of(detect_keys(x)) == (key if accepted else ""), key


@pytest.mark.parametrize(("dbm0", "accepted"), [(-6.0, True), (-36.0, True), (-55.0, False)])
def test_signal_level_limits(dbm0: float, accepted: bool) -> None:
    level = dbm0 + DBM0_IN_DBFS
    for key in "3*":
        f_low, f_high = key_frequencies(key)
        x = padded(tone_pair(f_low, f_high, 100, level, level))
        assert keys_of(detect_keys(x)) == (key if accepted else "")


@pytest.mark.parametrize(("deviation", "accepted"), [(-0.015, True), (0.015, True), (-0.035, False), (0.035, False)])
def test_frequency_deviation(deviation: float, accepted: bool) -> None:
    for key in KEYS:
        f_low, f_high = key_frequencies(key)
        both = padded(tone_pair(f_low * (1 + deviation), f_high * (1 + deviation), 100))
        assert keys_of(detect_keys(both)) == (key if accepted else ""), key
        if not accepted:  # one tone off is enough to reject
            row_off = padded(tone_pair(f_low * (1 + deviation), f_high, 100))
            assert keys_of(detect_keys(row_off)) == "", key


def test_duration_30_ms_rejected_40_and_50_ms_accepted_at_any_alignment() -> None:
    rng = np.random.default_rng(5)
    for offset in range(0, 80, 9):
        phases = (rng.uniform(0, 6.3), rng.uniform(0, 6.3))
        for key in "1470":
            f_low, f_high = key_frequencies(key)
            for ms, expected in ((30, ""), (40, key), (50, key)):
                x = padded(tone_pair(f_low, f_high, ms, phases=phases), lead=1000 + offset)
                assert keys_of(detect_keys(x)) == expected, (key, ms, offset)


def test_short_blips_are_rejected() -> None:
    for ms in (10, 20, 23, 25):
        assert detect_keys(padded(generate_dtmf("8", ms))) == []


def test_held_key_counts_once() -> None:
    events = detect_keys(padded(generate_dtmf("7", 2000)))
    assert keys_of(events) == "7"


def test_held_key_with_short_dropouts_counts_once() -> None:
    tone = generate_dtmf("6", 600)
    for at in (2000, 4800, 7000):
        tone[at : at + 160] = 0  # 10 ms holes
    assert keys_of(detect_keys(padded(tone))) == "6"


def test_two_quick_presses_with_50_ms_gap_count_twice() -> None:
    press = generate_dtmf("2", 60)
    x = to_int16(place([(1000, press), (1000 + press.size + 800, press)], 8000))
    events = detect_keys(x)
    assert keys_of(events) == "22"
    assert events[1].start_time - events[0].start_time == pytest.approx(0.110, abs=0.004)


def test_ten_digits_per_second() -> None:
    digits = "0123456789ABCD*#"
    x = np.concatenate([np.concatenate([generate_dtmf(k, 50), np.zeros(800, np.int16)]) for k in digits])
    assert keys_of(detect_keys(x)) == digits


def test_different_key_without_gap_is_reported_after_the_first() -> None:
    x = padded(np.concatenate([generate_dtmf("4", 100), generate_dtmf("9", 150)]))
    assert keys_of(detect_keys(x)) == "49"


def test_config_changes_minimum_duration() -> None:
    x = padded(generate_dtmf("5", 60))
    assert keys_of(detect_keys(x)) == "5"
    assert detect_keys(x, config=DtmfDetectorConfig(min_duration_ms=80)) == []


def test_bank_of_2000_channels_agrees_with_single_channel_detection() -> None:
    n, frames = 2000, 25
    rng = np.random.default_rng(42)
    audio = np.zeros((n, frames * 320))
    for c in range(n):
        kind = c % 4
        if kind == 0:  # two keys at random times
            for lo in (0, 4000):
                key = KEYS[rng.integers(16)]
                at = lo + int(rng.integers(0, 2500))
                audio[c, at : at + 1200] += generate_dtmf(key, 75)
        elif kind == 1:  # a short blip that must be ignored, plus noise
            audio[c, 800:1200] += generate_dtmf("5", 25)
            audio[c] += rng.standard_normal(frames * 320) * 100
        elif kind == 2:  # a held key with noise
            audio[c, 500:5500] += generate_dtmf(KEYS[c % 16], 312.5)
            audio[c] += rng.standard_normal(frames * 320) * 300
        # kind 3: silence
    audio_i16 = to_int16(audio)
    bank = DtmfDetectorBank(n)
    assert [bank.add_channel() for _ in range(n)] == list(range(n))
    events = []
    for f in range(frames):
        events += bank.process(audio_i16[:, f * 320 : (f + 1) * 320], now=f * 0.02)
    by_channel: dict[int, list[tuple[str, float]]] = {}
    for e in events:
        by_channel.setdefault(e.channel, []).append((e.key, e.start_time))
    assert all(len(by_channel[c]) == 2 for c in range(0, n, 4))
    assert all(len(by_channel[c]) == 1 for c in range(2, n, 4))
    assert not any(c % 4 in (1, 3) for c in by_channel)
    for c in rng.choice(n, size=120, replace=False):
        single = [(e.key, e.start_time) for e in detect_keys(audio_i16[c])]
        got = by_channel.get(int(c), [])
        assert [k for k, _ in got] == [k for k, _ in single], c
        np.testing.assert_allclose([t for _, t in got], [t for _, t in single], atol=1e-6)


def test_bank_slots_inactive_rows_and_reuse() -> None:
    bank = DtmfDetectorBank(3)
    a, b = bank.add_channel(), bank.add_channel()
    assert (a, b) == (0, 1)
    frames = np.zeros((3, 320), np.int16)
    tone = generate_dtmf("9", 100)
    events = []
    for f in range(8):
        frames[:] = 0
        chunk = tone[f * 320 : (f + 1) * 320]
        frames[:, : chunk.size] = chunk  # same tone on every row, including the free row 2
        events += bank.process(frames, now=f * 0.02)
    assert sorted((e.channel, e.key) for e in events) == [(0, "9"), (1, "9")]
    bank.remove_channel(a)
    with pytest.raises(KeyError):
        bank.remove_channel(a)
    assert bank.add_channel() == 0
    assert bank.add_channel() == 2
    with pytest.raises(BankFullError):
        bank.add_channel()
    with pytest.raises(ValueError):
        bank.process(np.zeros((2, 320), np.int16), now=0.0)


def test_float32_input_and_single_channel_wrapper() -> None:
    det = DtmfDetector()
    x = padded(generate_dtmf("C", 100)).astype(np.float32)
    events = []
    for f in range(x.size // 320):
        events += det.process(x[f * 320 : (f + 1) * 320], now=f * 0.02)
    assert keys_of(events) == "C"


def test_batched_windows_equal_goertzel_across_frame_boundaries() -> None:
    """The sub-block matrix products, re-phased across frames, give exactly each window's Goertzel output."""
    rng = np.random.default_rng(9)
    f_low, f_high = key_frequencies("8")
    x = tone_pair(f_low, f_high, 80, -12, -14, phases=(0.7, 2.1)) + rng.standard_normal(1280) * 200 + 300
    x = x.astype(np.float32)
    analyzer = ToneAnalyzer(1, RATE, DtmfDetectorConfig())
    shares = []
    for f in range(4):
        keys, fraction = analyzer.analyse(x[f * 320 : (f + 1) * 320].reshape(1, -1))
        assert (keys[:, 0] == 9).all() or f == 0  # row 2 (852 Hz), column 1 (1336 Hz): key "8"
        shares += fraction[:, 0].tolist()
    for i in range(4, 16):  # every window ending from the second frame on, including those that straddle
        window = x[(i - 2) * 80 : (i + 1) * 80].astype(np.float64)
        tone = goertzel_power(window, f_low, RATE) + goertzel_power(window, f_high, RATE)
        ac = window - window.mean()  # the energy is taken without DC, the tone bins as they are
        expected = tone / (float(ac @ ac) * window.size / 2)
        assert shares[i] == pytest.approx(min(expected, 1.0), rel=1e-3)
