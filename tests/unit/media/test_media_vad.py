"""Voice activity: onset, hangover, adaptive noise floor, batching and slots."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from media_signals import speech_like, to_int16

from opencomms.media import BankFullError, VadBank, VadConfig


def noise(seconds: float, dbfs: float, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    return rng.standard_normal(int(seconds * 16000)) * 32767 * 10 ** (dbfs / 20) * np.sqrt(2)


def run(bank: VadBank, signal: npt.NDArray[np.int16]) -> npt.NDArray[np.bool_]:
    """Active flag per frame of a single-channel bank."""
    out = [bank.process(signal[i : i + 320].reshape(1, -1)).active[0] for i in range(0, signal.size - 319, 320)]
    return np.array(out)


def single(config: VadConfig | None = None) -> VadBank:
    bank = VadBank(1, config)
    bank.add_channel()
    return bank


def test_silence_and_steady_noise_are_not_speech() -> None:
    rng = np.random.default_rng(1)
    assert not run(single(), np.zeros(16000, np.int16)).any()
    assert not run(single(), to_int16(noise(5, -45, rng))).any()


def test_speech_over_noise_is_detected_with_onset_and_hangover() -> None:
    rng = np.random.default_rng(2)
    burst = np.sin(2 * np.pi * 200 * np.arange(16000) / 16000) * 3000
    x = noise(4, -60, rng)
    x[32000:48000] += burst  # 1 s of "speech" from 2 s to 3 s
    active = run(single(), to_int16(x))
    first = int(np.argmax(active))
    assert first == 100 + 1  # onset: 40 ms = 2 loud frames
    last = len(active) - 1 - int(np.argmax(active[::-1]))
    assert last == 150 - 1 + 15  # hangover: 300 ms = 15 frames after the last loud one
    assert active[first : last + 1].all()


def test_noise_floor_adapts_to_louder_noise_within_the_window() -> None:
    rng = np.random.default_rng(3)
    x = np.concatenate([noise(3, -70, rng), noise(6, -40, rng)])
    bank = single()
    levels = []
    for i in range(0, x.size - 319, 320):
        result = bank.process(to_int16(x[i : i + 320]).reshape(1, -1))
        levels.append((result.active[0], result.noise_floor_dbfs[0]))
    active = np.array([a for a, _ in levels])
    assert active[150:160].any()  # the step up looks like speech at first...
    assert not active[-100:].any()  # ...until the floor has followed it (2 s window)
    assert levels[-1][1] > -43


def test_speech_like_audio_is_mostly_active() -> None:
    rng = np.random.default_rng(4)
    speech = speech_like(10, rng).astype(np.float64)
    x = np.concatenate([noise(2, -65, rng), speech + noise(10, -65, rng), noise(2, -65, rng)])
    active = run(single(), to_int16(x))
    assert not active[:100].any()
    assert active[100:600].mean() > 0.8
    assert not active[-80:].any()


def test_results_flag_changes_and_levels() -> None:
    bank = single(VadConfig(onset_ms=20, hangover_ms=0))
    loud = np.full((1, 320), 10000, np.int16)
    quiet = np.zeros((1, 320), np.int16)
    r1 = bank.process(quiet)
    assert not r1.active[0] and not r1.changed[0] and r1.level_dbfs[0] == -120.0
    r2 = bank.process(loud)
    assert r2.active[0] and r2.changed[0]
    assert abs(float(r2.level_dbfs[0]) - (20 * np.log10(10000 / 32767) + 3.01)) < 0.05
    r3 = bank.process(quiet)
    assert not r3.active[0] and r3.changed[0]


def test_bank_matches_single_channels_and_ignores_free_rows() -> None:
    rng = np.random.default_rng(5)
    n = 40
    signals = [
        to_int16(speech_like(3, rng).astype(np.float64) * rng.uniform(0.1, 1.0) + noise(3, -60, rng)) for _ in range(n)
    ]
    bank = VadBank(n + 2)
    for _ in range(n):
        bank.add_channel()
    singles = [single() for _ in range(n)]
    batch = np.zeros((n + 2, 320), np.float32)
    for f in range(150):
        for c in range(n):
            batch[c] = signals[c][f * 320 : (f + 1) * 320]
        batch[n:] = 20000 * rng.standard_normal((2, 320))  # free rows carry loud noise
        got = bank.process(batch)
        want = [s.process(signals[c][f * 320 : (f + 1) * 320].reshape(1, -1)).active[0] for c, s in enumerate(singles)]
        np.testing.assert_array_equal(got.active[:n], want)
        assert not got.active[n:].any()


def test_slots() -> None:
    bank = VadBank(2)
    assert bank.add_channel() == 0 and bank.add_channel() == 1
    try:
        bank.add_channel()
    except BankFullError:
        pass
    else:
        raise AssertionError("expected BankFullError")
    bank.remove_channel(0)
    assert bank.add_channel() == 0
