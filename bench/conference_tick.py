"""Benchmark (b) of issue 17: one meeting of 1000 participants with 4 talkers, the engine tick p99 (target < 10 ms).

Run: .venv/bin/python bench/conference_tick.py [--members 1000] [--talkers 4] [--ticks 500]. One MediaEngine (the
node's: DTMF and VAD on every leg, K = 3 loudest talkers mixed), every member in one mix. Each tick every member's
far end sends a frame (as phones do: the talkers speech, the others low background noise, pushed by row as the
RTP bank does), an app-hosted bot's `HeardTalkers` listener copies the talkers' frames, and the time of
push + `tick()` is measured, single thread, BLAS pinned to one thread. Prints one result line.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import argparse
import gc
import time

import numpy as np
import numpy.typing as npt

from opencomms.media.engine import DominantSpeakerChanged, HeardTalkers, MediaEngine, TalkerConfig
from opencomms.media.frames import FRAME_SAMPLES

N = FRAME_SAMPLES


def speech(seconds: float, seed: int) -> npt.NDArray[np.int16]:
    """Harmonic syllables with pauses (speech-like, about -20 dBFS while voiced)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000.0
    f0 = rng.uniform(90, 250)
    x = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6)) / k for k in range(1, 12))
    envelope = (np.sin(2 * np.pi * rng.uniform(2.5, 4) * t) > -0.5).astype(np.float64)
    return np.clip(x * envelope * 1500 + rng.standard_normal(t.size) * 20, -32768, 32767).astype(np.int16)


def measure(members: int, talking: int, ticks: int, k: int, warmup: int = 50) -> dict[str, float]:
    engine = MediaEngine(capacity=members, talkers=TalkerConfig(talkers=k))
    names = [f"p{i}" for i in range(members)]
    for i, name in enumerate(names):
        engine.add_leg(name)
        engine.join(name, "meeting")
        engine.set_source_id(name, 1000 + i)
    rows = np.array([engine.leg_key(name)[0] for name in names], dtype=np.intp)
    talkers = np.linspace(0, members - 1, talking).astype(np.intp)
    voices = [speech(6.0, seed) for seed in range(talking)]
    rng = np.random.default_rng(7)
    noise = rng.integers(-30, 30, size=(16, members, N)).astype(np.int16)  # background, about -60 dBFS
    frames = np.zeros((members, N), dtype=np.int16)
    heard: list[int] = []
    engine.subscribe(HeardTalkers(names[1], lambda _leg, _heard, parts, _now: heard.append(len(parts))))
    durations: list[float] = []
    changes = 0
    gc.collect()
    gc.freeze()
    for tick in range(warmup + ticks):
        began = time.perf_counter()
        frames[:] = noise[tick % 16]
        for i, row in enumerate(talkers.tolist()):
            voice = voices[i]
            at = (tick * N) % (voice.size - N)
            frames[row] = voice[at : at + N]
        engine.push_inbound_rows(rows, frames)
        events = engine.tick(tick * 0.02)
        changes += sum(isinstance(e, DominantSpeakerChanged) for e in events)
        if tick >= warmup:
            durations.append((time.perf_counter() - began) * 1000.0)
    gc.unfreeze()
    ms = np.array(durations)
    return {
        "members": members,
        "talking": talking,
        "k": k,
        "mean_ms": round(float(ms.mean()), 2),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
        "dominant_changes": changes,
        "bot_parts_max": max(heard) if heard else 0,
        "dsp_rows": engine.stats.dsp_rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--talkers", type=int, default=4, help="members speaking at once")
    parser.add_argument("--k", type=int, default=3, help="loudest talkers mixed ([media] conference_talkers)")
    parser.add_argument("--ticks", type=int, default=500, help="measured ticks (after 50 of warm-up)")
    args = parser.parse_args()
    r = measure(args.members, args.talkers, args.ticks, args.k)
    print(
        f"conference_tick: {r['members']} members, {r['talking']} talking, K={r['k']}: engine tick mean"
        f" {r['mean_ms']} ms, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms (target < 10 ms), max {r['max_ms']} ms;"
        f" dominant-speaker changes {r['dominant_changes']}, bot got <= {r['bot_parts_max']} talker frames/tick"
    )


if __name__ == "__main__":
    main()
