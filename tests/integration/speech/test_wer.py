"""Word error rate of the live pipeline (Silero VAD cuts, Whisper tiny.en decodes, as bots receive it) on sentences
spoken by voices the prompts never use (flite's slt, rms and awb, festival's HTS slt: opencomms.testing.speech), at
16 kHz and through G.711 as the node hears a phone. The test computes the WER itself (speech/wer.py) and compares
it with the model alone on the whole utterances; bench/transcription.py measures the whole set of 30 sentences."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from opencomms.speech.pool import Caption, PoolConfig, TranscriptionPool
from opencomms.speech.silero import SileroVad
from opencomms.speech.wer import word_error_rate
from opencomms.speech.whisper import WhisperTranscriber
from opencomms.testing.speech import SENTENCES, VOICES, phone_line, synthesize

pytestmark = pytest.mark.slow

SET = SENTENCES[::5]  # six sentences, fixed
GAP = np.zeros(12_000, dtype=np.int16)  # 0.75 s between sentences
LIMITS = {"16k": 0.06, "g711": 0.08}
"""The issue's targets for the live pipeline (this set: about 2 % and 6 %; the 30 sentences: bench (b))."""


@pytest.fixture(scope="module")
def whisper() -> WhisperTranscriber:
    return WhisperTranscriber()


@pytest.fixture(scope="module")
def spoken() -> dict[str, list[np.ndarray]]:
    with ThreadPoolExecutor(2) as render:  # flite and festival are subprocesses
        return {voice: list(render.map(lambda s, v=voice: synthesize(s, v), SET)) for voice in VOICES}


def pipeline(whisper: WhisperTranscriber, utterances: list[np.ndarray]) -> list[str]:
    """Feed the sentences with pauses as 20 ms frames of one speaker; the captions in order."""
    captions: list[Caption] = []
    done = threading.Event()
    pool = TranscriptionPool(
        whisper, SileroVad(), lambda c: (captions.append(c), done.set()), config=PoolConfig(max_queued=64, max_wait=60)
    )
    pool.start()
    try:
        signal = np.concatenate([np.concatenate([u, GAP]) for u in utterances])
        for i in range(0, signal.size - 319, 320):
            pool.feed("speaker", signal[i : i + 320], i / 16_000)
            if i % 16_000 == 0:
                time.sleep(0.001)  # let the segmenter thread run, as a real-time source would
        pool.end("speaker")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (
            pool.stats.utterances < len(utterances) or pool.queued or pool.stats.batches == 0
        ):
            time.sleep(0.05)
        settled = len(captions) + pool.stats.empty
        while time.monotonic() < deadline and settled < pool.stats.utterances:
            time.sleep(0.05)
            settled = len(captions) + pool.stats.empty
    finally:
        pool.close()
    return [c.text for c in sorted(captions, key=lambda c: c.start)]


@pytest.mark.parametrize("line", ["16k", "g711"])
def test_pipeline_word_error_rate(whisper: WhisperTranscriber, spoken: dict[str, list[np.ndarray]], line: str) -> None:
    reference = " ".join(SET)
    rates = {}
    for voice, utterances in spoken.items():
        audio = utterances if line == "16k" else [phone_line(u) for u in utterances]
        offline = [r.text for i in range(0, len(audio), 4) for r in whisper.transcribe(audio[i : i + 4])]
        live = pipeline(whisper, audio)
        rates[voice] = (word_error_rate(zip(SET, offline, strict=True)), word_error_rate([(reference, " ".join(live))]))
    offline_wer = sum(r[0] for r in rates.values()) / len(rates)
    live_wer = sum(r[1] for r in rates.values()) / len(rates)
    assert live_wer <= LIMITS[line], rates
    assert live_wer <= offline_wer + 0.02, rates  # cutting by VAD loses (almost) nothing
