"""Talk-off: speech must never be reported as a key (synthetic speech-like audio and espeak-ng speech)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from media_signals import espeak, espeak_available, speech_like

from opencomms.media import g711
from opencomms.media.dtmf import DtmfDetectorBank, detect_keys, generate_dtmf
from opencomms.media.resample import Resampler, resample

TEXT = (
    "Thank you for calling. Please listen carefully, as our menu options have changed. "
    "For billing questions, press one. To report an outage, press two. For anything else, stay on the line. "
    "Seven hundred seventy, eight hundred fifty two, nine hundred forty one, twelve oh nine. "
    "She sells sea shells by the sea shore, and the shells she sells are surely seashells. "
    "How much wood would a woodchuck chuck if a woodchuck could chuck wood? "
    "Whistling wind, singing birds, humming engines and beeping phones fill the morning air. "
    "Meet me at the station at nine forty five; bring the blue umbrella and the yellow notebook."
)
# (voice, words per minute, pitch 0-99): low and high, male and female, several languages.
VOICES = [
    ("en-us", 160, 50),
    ("en+f3", 175, 80),
    ("en-us+f4", 190, 99),
    ("de", 160, 60),
    ("fr+f2", 170, 70),
    ("en+m3", 140, 20),
]


def through_g711(x: npt.NDArray[np.int16], law: str) -> npt.NDArray[np.int16]:
    encode, decode = (g711.ulaw_encode, g711.ulaw_decode) if law == "ulaw" else (g711.alaw_encode, g711.alaw_decode)
    down, up = Resampler(16000, 8000), Resampler(8000, 16000)
    frames = x[: x.size // 320 * 320].reshape(-1, 320)
    return np.concatenate([up.process(decode(encode(down.process(f)))) for f in frames])


def detect_in_parallel(signals: list[npt.NDArray[np.int16]]) -> list[tuple[int, str, float]]:
    """Run several signals through one bank (one channel each), as the media engine would."""
    length = max(s.size for s in signals)
    length = -(-length // 320) * 320
    audio = np.zeros((len(signals), length), np.int16)
    for i, s in enumerate(signals):
        audio[i, : s.size] = s
    bank = DtmfDetectorBank(len(signals))
    for _ in signals:
        bank.add_channel()
    found = []
    for f in range(length // 320):
        found += [(e.channel, e.key, e.start_time) for e in bank.process(audio[:, f * 320 : (f + 1) * 320], f * 0.02)]
    return found


def test_no_talk_off_on_a_minute_of_speech_like_audio() -> None:
    speech = speech_like(60.0, np.random.default_rng(2024))
    assert speech.size == 60 * 16000
    assert detect_keys(speech) == []
    assert detect_in_parallel([through_g711(speech, "ulaw")]) == []
    # Control: the same channel still hears a real key right after the speech.
    with_key = np.concatenate([speech, generate_dtmf("5", 60), np.zeros(1600, np.int16)])
    assert [e.key for e in detect_keys(with_key)] == ["5"]


def test_no_talk_off_on_two_minutes_of_espeak_speech() -> None:
    if not espeak_available():
        pytest.fail(
            "espeak-ng is required for the talk-off test: install it (apt-get install espeak-ng); "
            "`make test` does so through scripts/system-packages.txt"
        )
    signals = []
    for voice, speed, pitch in VOICES:
        samples, rate = espeak(TEXT, voice, speed, pitch)
        signals.append(resample(samples, rate, 16000))
    total_seconds = sum(s.size for s in signals) / 16000
    assert total_seconds >= 120.0
    assert detect_in_parallel(signals) == []
    assert detect_in_parallel([through_g711(s, "alaw") for s in signals]) == []
