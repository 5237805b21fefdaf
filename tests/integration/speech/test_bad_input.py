"""Bad input never stalls the transcription pool nor grows its memory: noise, music, silence and a minute of
speech without a pause go through the real VAD and model, and a sentence spoken afterwards is still captioned."""

from __future__ import annotations

import time

import numpy as np
import pytest

from opencomms.speech.pool import Caption, PoolConfig, TranscriptionPool
from opencomms.speech.segmenter import SAMPLE_RATE, SegmenterConfig
from opencomms.speech.silero import SileroVad
from opencomms.speech.wer import word_error_rate
from opencomms.speech.whisper import WhisperTranscriber
from opencomms.testing.speech import SENTENCES, synthesize

pytestmark = pytest.mark.slow


def music(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    notes = 220.0 * 2 ** (np.floor(t * 4) % 12 / 12)  # a scale, four notes a second, with a fifth above
    return (3000 * (np.sin(2 * np.pi * notes * t) + 0.5 * np.sin(3 * np.pi * notes * t))).astype(np.int16)


def test_noise_music_silence_and_endless_speech_do_not_stall_or_grow() -> None:
    captions: list[Caption] = []
    cfg = SegmenterConfig(max_seconds=8.0)
    pool = TranscriptionPool(
        WhisperTranscriber(), SileroVad(), captions.append, config=PoolConfig(max_wait=30), segmenter=cfg
    )
    pool.start()
    rng = np.random.default_rng(7)
    endless = np.concatenate([synthesize(s, "en-us+m3") for s in SENTENCES[:14]])  # ~45 s, no pause
    parts = {
        "noise": rng.normal(0, 3000, 20 * SAMPLE_RATE).clip(-32768, 32767).astype(np.int16),
        "music": music(20),
        "silence": np.zeros(10 * SAMPLE_RATE, dtype=np.int16),
        "endless": endless,
    }
    peak = 0
    try:
        at = 0.0
        for name, signal in parts.items():
            for i in range(0, signal.size - 319, 320):
                pool.feed(name, signal[i : i + 320], at)
                at += 0.02
                if i % 32_000 == 0:
                    time.sleep(0.002)
                    peak = max(peak, pool.held_samples)
            pool.end(name)
        last = synthesize("Thank you for waiting, your call is important to us.", "en+f2")
        silence = np.zeros(SAMPLE_RATE, dtype=np.int16)
        for i, j in enumerate(range(0, last.size + silence.size - 319, 320)):
            pool.feed("last", np.concatenate([last, silence])[j : j + 320], at + i * 0.02)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(c.key == "last" for c in captions):
            time.sleep(0.05)
        by = {name: [c for c in captions if c.key == name] for name in (*parts, "last")}
        assert by["last"] and word_error_rate([(SENTENCES[19], by["last"][0].text)]) <= 0.3, by["last"]
        assert not by["silence"]
        assert len(by["noise"]) + len(by["music"]) <= 2, (by["noise"], by["music"])  # no stream of hallucinations
        assert len(by["endless"]) >= 5 and all(c.end - c.start <= 8.1 for c in by["endless"])
        assert peak <= (8.0 + 0.5) * SAMPLE_RATE
        assert pool.stats.frames_dropped == 0 and pool.queued == 0
    finally:
        pool.close()
