"""Micro-benchmark: DTMF detection + VAD for N channels per 20 ms tick (the media engine's hot DSP path).

Run: .venv/bin/python bench/dsp_micro.py [channels] [frames]. BLAS is pinned to one thread (the figure is
per core). Prints microseconds per tick for speech-like audio on every channel (worst case: every window
is analysed), for silence, and for DTMF on every channel at once (the rare path: press state machine and
span tests; its max is the tick where all channels confirm a key together).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import statistics
import sys
import time

import numpy as np
import numpy.typing as npt

from opencomms.media.dtmf import DtmfDetectorBank, generate_dtmf
from opencomms.media.frames import FRAME_SAMPLES
from opencomms.media.vad import VadBank


def _speechish(channels: int, frames: int, rng: np.random.Generator) -> npt.NDArray[np.int16]:
    """Harmonic signals with random pitch and level per channel, plus noise: busy for the analyser."""
    t = np.arange(frames * FRAME_SAMPLES) / 16000.0
    out = np.empty((channels, t.size), dtype=np.int16)
    for c in range(channels):
        f0 = rng.uniform(90, 280)
        x = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6)) / k for k in range(1, 12))
        x = x * 3000 * rng.uniform(0.2, 1.5) + rng.standard_normal(t.size) * 300
        out[c] = np.clip(x, -32768, 32767).astype(np.int16)
    return out


def _run(label: str, audio: npt.NDArray[np.int16], channels: int, frames: int) -> float:
    dtmf, vad = DtmfDetectorBank(channels), VadBank(channels)
    for _ in range(channels):
        dtmf.add_channel()
        vad.add_channel()
    ticks = []
    detected = 0
    for i in range(frames):
        block = np.ascontiguousarray(audio[:, i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES])
        start = time.perf_counter()
        x = block.astype(np.float32)  # one conversion shared by both banks
        detected += len(dtmf.process(x, now=i * 0.02))
        vad.process(x)
        ticks.append(time.perf_counter() - start)
    ticks = ticks[5:]  # warm-up
    median, p90 = statistics.median(ticks) * 1e6, sorted(ticks)[int(0.9 * len(ticks))] * 1e6
    worst = max(ticks) * 1e6
    print(f"{label:<30} median {median:7.0f} us/tick   p90 {p90:7.0f}   max {worst:7.0f}   ({detected} keys detected)")
    return median


def main() -> None:
    channels = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    frames = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    rng = np.random.default_rng(1)
    print(f"{channels} channels, {frames} ticks of 20 ms, numpy {np.__version__}")
    _run("speech-like on all channels", _speechish(channels, frames, rng), channels, frames)
    _run("silence on all channels", np.zeros((channels, frames * FRAME_SAMPLES), np.int16), channels, frames)
    keys = np.concatenate([generate_dtmf("5", 100), np.zeros(FRAME_SAMPLES * 5, np.int16)])
    tones = np.tile(keys, frames * FRAME_SAMPLES // keys.size + 1)[: frames * FRAME_SAMPLES]
    _run("DTMF on all channels", np.tile(tones, (channels, 1)), channels, frames)


if __name__ == "__main__":
    main()
