"""The DTMF analyser (dtmf/goertzel) and the VAD rows (vadrows), compiled with Cython or, on the pure pass, the numpy
reference, against the numpy reference executed from its .py source: the same exports, the same key decisions and
VAD verdicts, and the same fractions, levels and floors up to float rounding, on every key, levels and twists near
the limits, noise, speech-like audio, silence, prefixes of the rows and resets."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from media_signals import speech_like, tone_pair

from opencomms._compiled import reference
from opencomms.media.dtmf import DtmfDetectorConfig, key_frequencies
from opencomms.media.dtmf import goertzel as goertzel_module
from opencomms.media.dtmf.tones import DBM0_IN_DBFS, KEYS
from opencomms.media.vadrows import VadRows

RATE = 16000
FRAME = 320
CONFIG = DtmfDetectorConfig()
FLOOR_DBFS = CONFIG.min_tone_dbm0 + DBM0_IN_DBFS  # each tone's lowest accepted level
VAD_ARGS = {"onset": 2, "hangover": 15, "sub_len": 3, "threshold": 9.0, "min_speech": -50.0, "min_floor": -80.0}


def analysers(capacity: int, rate: int = RATE) -> tuple[Any, Any]:
    ref = reference("opencomms.media.dtmf.goertzel")
    return goertzel_module.ToneAnalyzer(capacity, rate, CONFIG), ref.ToneAnalyzer(capacity, rate, CONFIG)


def frames_of(signal: npt.NDArray[np.float64], frame: int = FRAME) -> Iterator[npt.NDArray[np.float32]]:
    """(channels, samples) -> one (channels, frame) float32 block per frame."""
    x = signal.astype(np.float32)
    for start in range(0, x.shape[1] - frame + 1, frame):
        yield np.ascontiguousarray(x[:, start : start + frame])


def same_analysis(signal: npt.NDArray[np.float64], rate: int = RATE) -> npt.NDArray[np.int8]:
    """Both analysers over a (channels, samples) signal: the same keys, fractions within 1e-4; the keys."""
    compiled, ref = analysers(signal.shape[0], rate)
    keys = []
    for x in frames_of(signal, rate // 50):
        got, want = compiled.analyse(x), ref.analyse(x)
        np.testing.assert_array_equal(got[0], want[0])
        assert got[1].dtype == np.float32 and got[0].dtype == np.int8
        np.testing.assert_allclose(got[1], want[1], rtol=1e-4, atol=1e-7)
        keys.append(want[0])
    return np.concatenate(keys, axis=0)


def dtmf_rows(levels: list[tuple[float, float]], ms: float = 120.0, rate: int = RATE) -> npt.NDArray[np.float64]:
    """One channel per (key, (low dBFS, high dBFS)) pair: 30 ms of silence, the key, silence; every key in turn."""
    rows = []
    rng = np.random.default_rng(5)
    for i, (low, high) in enumerate(levels):
        f_low, f_high = key_frequencies(KEYS[i % 16])
        tone = tone_pair(f_low, f_high, ms, low, high, rate, phases=(rng.uniform(0, 6.3), rng.uniform(0, 6.3)))
        lead = round(0.03 * rate) + int(rng.integers(0, rate // 100))
        row = np.zeros(round(0.3 * rate))
        row[lead : lead + tone.size] = tone
        rows.append(row)
    return np.array(rows)


def test_the_twins_export_the_references_names_and_constants() -> None:
    for name in ("opencomms.media.dtmf.goertzel", "opencomms.media.vadrows"):
        module, ref = importlib.import_module(name), reference(name)
        assert sorted(module.__all__) == sorted(ref.__all__)
        for public in ref.__all__:
            value, want = getattr(module, public), getattr(ref, public)
            if isinstance(want, np.ndarray):
                np.testing.assert_array_equal(value, want)
            elif isinstance(want, int | float):
                assert value == want
    ref = reference("opencomms.media.dtmf.goertzel")
    block = np.sin(np.arange(240) * 0.3) * 1000
    assert goertzel_module.goertzel_power(block, 697.0, RATE) == ref.goertzel_power(block, 697.0, RATE)


@pytest.mark.parametrize("rate", [16000, 8000, 12000, 8200])  # 12 kHz: a remainder of pairs; 8.2 kHz: odd hops
def test_every_key_at_levels_around_the_floor_gives_the_same_windows(rate: int) -> None:
    steps = [-1.0, -0.3, 0.3, 1.0, 20.0, 42.0]
    levels = [(FLOOR_DBFS + step, FLOOR_DBFS + step) for step in steps for _key in range(16)]
    keys = same_analysis(dtmf_rows(levels, rate=rate), rate)
    found = (keys >= 0).any(axis=0).reshape(len(steps), 16)
    assert not found[0].any() and found[3:].all()  # 1 dB under the floor: nothing; from 1 dB over: every key
    for i in range(keys.shape[1]):
        assert set(keys[:, i].tolist()) <= {-1, _index(i % 16)}


def _index(key_position: int) -> int:
    """The analyser's key index (row * 4 + column) of the key KEYS[key_position]."""
    f_low, f_high = key_frequencies(KEYS[key_position])
    rows, cols = (697.0, 770.0, 852.0, 941.0), (1209.0, 1336.0, 1477.0, 1633.0)
    return rows.index(f_low) * 4 + cols.index(f_high)


def test_twists_around_both_limits_give_the_same_windows() -> None:
    level = -12.0
    normal, reverse = CONFIG.normal_twist_db, CONFIG.reverse_twist_db
    twists = [normal - 0.5, normal + 0.5, -(reverse - 0.5), -(reverse + 0.5), normal + 3, -(reverse + 3)]
    levels = [(level, level - twist) for twist in twists for _key in range(16)]
    keys = same_analysis(dtmf_rows(levels))
    found = (keys >= 0).any(axis=0).reshape(len(twists), 16)
    assert found[0].all() and found[2].all() and not found[4:].any()


def test_noise_speech_silence_and_tones_in_noise_give_the_same_windows() -> None:
    rng = np.random.default_rng(7)
    samples = 40 * FRAME
    rows = [np.zeros(samples), np.full(samples, 3000.0)]  # silence, DC
    rows += [rng.standard_normal(samples) * 32767 * 10 ** (db / 20) for db in (-70, -45, -30, -10)]
    rows += [speech_like(samples / RATE, np.random.default_rng(seed)).astype(np.float64) for seed in range(6)]
    for snr in (20.0, 10.0, 3.0, 0.0):
        f_low, f_high = key_frequencies("5")
        tone = tone_pair(f_low, f_high, samples * 1000 / RATE, -20, -22)
        rows.append(tone + rng.standard_normal(samples) * np.sqrt(np.mean(tone**2) / 10 ** (snr / 10)))
    speech = speech_like(samples / RATE, np.random.default_rng(99)).astype(np.float64)
    f_low, f_high = key_frequencies("#")
    rows.append(speech + tone_pair(f_low, f_high, samples * 1000 / RATE, -15, -15))  # a key over speech
    rows.append(np.clip(rng.standard_normal(samples) * 40000, -32768, 32767))  # clipped, full scale
    keys = same_analysis(np.array(rows))
    assert (keys[:, -6] == _index(KEYS.index("5"))).mean() > 0.9 and (keys[:, :6] < 0).all()


def test_a_prefix_of_rows_leaves_the_others_and_resets_forget() -> None:
    rng = np.random.default_rng(8)
    capacity = 24
    compiled, ref = analysers(capacity)
    levels = [(-10.0 - i, -12.0 - i) for i in range(capacity)]
    signal = dtmf_rows(levels, ms=200) + rng.standard_normal((capacity, round(0.3 * RATE))) * 100
    for f, x in enumerate(frames_of(signal)):
        n = (capacity, 10, 17, capacity, 1, 0, capacity)[f % 7]
        if f == 6:
            for analyser in (compiled, ref):
                analyser.reset(3)
                analyser.reset(np.array([0, 5, 20], dtype=np.intp))
        got, want = compiled.analyse(x[:n]), ref.analyse(x[:n])
        assert got[0].shape == want[0].shape == (4, n)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_allclose(got[1], want[1], rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError):
        compiled.analyse(np.zeros((capacity + 1, FRAME), dtype=np.float32))


def vad_pair(capacity: int, **args: float) -> tuple[Any, Any]:
    ref = reference("opencomms.media.vadrows")
    merged: dict[str, Any] = {**VAD_ARGS, **args}
    return VadRows(capacity, **merged), ref.VadRows(capacity, **merged)


def same_vad(rows: tuple[Any, Any], x: npt.NDArray[np.float32], live: npt.NDArray[np.bool_]) -> list[Any]:
    got, want = rows[0].process(x, live), rows[1].process(x, live)
    for g, w in zip(got[:2], want[:2], strict=True):
        assert g.dtype == np.bool_ and g.shape == (x.shape[0],)
        np.testing.assert_array_equal(g, w)
    for g, w in zip(got[2:], want[2:], strict=True):
        assert g.dtype == np.float32 and g.shape == (x.shape[0],)
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)  # dB: absolute near 0 dBFS
    return list(want)


def test_vad_rows_on_noise_bursts_silence_and_speech() -> None:
    rng = np.random.default_rng(12)
    capacity = 64
    rows = vad_pair(capacity)
    amp = 32767 * 10 ** (rng.uniform(-85, -10, capacity) / 20)
    speech = [speech_like(8, np.random.default_rng(seed)).astype(np.float32) for seed in range(4)]
    live = rng.random(capacity) < 0.9
    active = 0
    for f in range(400):
        burst = np.where(rng.random((capacity, 1)) < 0.2, 20.0, 1.0)
        x = (rng.standard_normal((capacity, FRAME)) * amp[:, None] * burst).astype(np.float32)
        x[f % capacity] = 0.0  # digital silence
        x[-1] = 0.0
        for i, s in enumerate(speech):
            x[i] = s[f * FRAME : (f + 1) * FRAME] + x[i] * 0.01
        active += int(same_vad(rows, x, live)[0].sum())
    assert active > 1000  # speech and bursts were heard


def test_vad_rows_prefixes_resets_and_the_floor_windows() -> None:
    rng = np.random.default_rng(13)
    capacity = 16
    rows = vad_pair(capacity, onset=1, hangover=3, sub_len=2)
    live = np.ones(capacity, dtype=np.bool_)
    live[7] = False
    for f in range(300):
        n = (capacity, 9, 0, 12, capacity, 3)[f % 6]
        level = 10 ** ((-70 + 50 * (f // 40 % 2) + rng.uniform(0, 30, n)) / 20) * 32767
        x = (rng.standard_normal((n, FRAME)) * level[:, None]).astype(np.float32)
        if f % 50 == 49:
            for pair in rows:
                pair.reset(f % capacity)
        same_vad(rows, x, live[:n])
    with pytest.raises(ValueError):
        rows[0].process(np.zeros((capacity + 1, FRAME), dtype=np.float32), np.ones(capacity + 1, dtype=np.bool_))
