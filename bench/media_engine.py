"""Capacity benchmark of the media engine core: service-hosted bot-to-bot legs per core within the 20 ms tick.

Run: .venv/bin/python bench/media_engine.py [--ticks N] [--no-search]. Every leg is one bot of a two-bot call
(mixes of 2), playing prompts back to back (re-queued as each ends), so every leg's INPUT is the other bot's
prompt; DTMF detection and VAD run on every leg. Measures the time of `tick()` plus the re-queueing of finished
prompts (what the engine thread would run), single thread, no network, BLAS pinned to one thread. Prints a table
and, last, one JSON line; `results_section()` runs it in a fresh process and turns that into RESULTS.md lines for
bench/run.py. Engine work only: no sockets, no node, no event loop.
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # pin BLAS before numpy loads: the figure is per core (run.py's import leaves it alone)
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import argparse
import gc
import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from opencomms.media.engine import MediaEngine, PlayFinished, ToneDetected
from opencomms.media.frames import FRAME_SAMPLES
from opencomms.media.resample import resample

HERE = Path(__file__).resolve().parent
BUDGET_MS = 20.0
SIZES = (100, 500, 1000, 2000)
_PHRASES = (
    "Thank you for calling. Your call is important to us. Please stay on the line.",
    "Please say or enter your account number, followed by the pound key.",
    "To hear these options again, press star. To speak to an agent, press zero.",
    "Your request has been recorded. Goodbye.",
    "We are experiencing a high volume of calls. The expected waiting time is four minutes.",
    "Please leave a message after the tone. When you are finished, hang up.",
)


def _espeak(text: str) -> npt.NDArray[np.int16]:
    wav = subprocess.run(["espeak-ng", "--stdout", "-v", "en-us", text], capture_output=True, check=True).stdout
    rate = int.from_bytes(wav[24:28], "little")
    body = wav[wav.index(b"data") + 8 :]
    samples = np.frombuffer(body[: len(body) // 2 * 2], dtype="<i2").astype(np.int16)
    return resample(samples, rate, 16000)


def _speechish(seconds: float, rng: np.random.Generator) -> npt.NDArray[np.int16]:
    """Harmonic syllables with pauses (when espeak-ng is missing)."""
    t = np.arange(int(seconds * 16000)) / 16000.0
    f0 = rng.uniform(90, 250)
    x = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6)) / k for k in range(1, 12))
    envelope = (np.sin(2 * np.pi * 3 * t) > -0.3).astype(np.float64)
    return np.clip(x * envelope * 3000 + rng.standard_normal(t.size) * 30, -32768, 32767).astype(np.int16)


def prompts() -> tuple[str, list[npt.NDArray[np.int16]]]:
    """A handful of prompts of a few seconds (espeak-ng speech if installed, else speech-like audio)."""
    if shutil.which("espeak-ng"):
        return "espeak-ng prompts", [_espeak(text) for text in _PHRASES]
    rng = np.random.default_rng(1)
    return "speech-like prompts", [_speechish(rng.uniform(2.5, 5.0), rng) for _ in _PHRASES]


def measure(legs: int, clips: list[npt.NDArray[np.int16]], ticks: int, warmup: int = 50) -> dict[str, float]:
    """Tick `legs` service-hosted legs (pairs in mixes of 2, all playing) and time each tick in ms."""
    engine = MediaEngine(capacity=max(4096, legs))
    names = [f"leg{i}" for i in range(legs)]
    next_clip = {}
    half = legs // 2
    for i, name in enumerate(names):  # leg i talks to leg i + half: rows of a call are not neighbours (as after churn)
        engine.add_leg(name)
        engine.join(name, f"call{i % half}")
        next_clip[name] = i % len(clips)
    start_at = {name: (i * 7) % warmup for i, name in enumerate(names)}  # calls start at different times
    durations: list[float] = []
    tones = 0
    gc.collect()
    gc.freeze()  # as a node does after start-up: long-lived objects stay out of the collector's full passes
    for k in range(warmup + ticks):
        began = time.perf_counter()
        if k < warmup:
            for name in names:
                if start_at[name] == k:
                    engine.play(name, "prompt", [clips[next_clip[name]]])
        events = engine.tick(k * 0.02)
        for event in events:
            if isinstance(event, PlayFinished):  # loop: the next prompt, back to back
                clip = next_clip[event.leg_id] = (next_clip[event.leg_id] + 1) % len(clips)
                engine.play(event.leg_id, "prompt", [clips[clip]])
            elif isinstance(event, ToneDetected):
                tones += 1
        if k >= warmup:
            durations.append((time.perf_counter() - began) * 1000.0)
    gc.unfreeze()
    ms = np.array(durations)
    assert engine.stats.dsp_rows == legs and engine.stats.playing == legs
    return {
        "legs": legs,
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
        "us_per_leg": round(float(np.percentile(ms, 50)) * 1000.0 / legs, 2),
        "false_tones": tones,
    }


def search_max(clips: list[npt.NDArray[np.int16]], ticks: int, deadline: float) -> int | None:
    """Most legs (to 500) whose p99 tick stays within 20 ms: doubling from 4000, then bisecting."""
    ok, bad = 2000, None
    size = 4000
    while bad is None and time.monotonic() < deadline:
        if measure(size, clips, ticks)["p99_ms"] <= BUDGET_MS:
            ok, size = size, size * 2
        else:
            bad = size
    while bad is not None and bad - ok > 500 and time.monotonic() < deadline:
        mid = (ok + bad) // 1000 * 500
        if measure(mid, clips, ticks)["p99_ms"] <= BUDGET_MS:
            ok = mid
        else:
            bad = mid
    return ok if bad is not None else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ticks", type=int, default=250, help="measured ticks per size (after 50 of warm-up)")
    parser.add_argument("--no-search", action="store_true", help="skip the search for the most legs within 20 ms")
    args = parser.parse_args()
    started = time.monotonic()
    kind, clips = prompts()
    seconds = [round(c.size / 16000, 1) for c in clips]
    print(f"{kind}: {seconds} s; numpy {np.__version__}; {FRAME_SAMPLES}-sample frames; BLAS threads pinned to 1")
    print(f"{'legs':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'us/leg':>8} {'false tones':>12}")
    rows = []
    for legs in SIZES:
        row = measure(legs, clips, args.ticks)
        rows.append(row)
        print(
            f"{legs:>6} {row['p50_ms']:>8} {row['p99_ms']:>8} {row['max_ms']:>8} {row['us_per_leg']:>8}"
            f" {row['false_tones']:>12}",
            flush=True,
        )
    best = None if args.no_search else search_max(clips, 100, deadline=started + 45)
    if best is not None:
        print(f"most legs within {BUDGET_MS:g} ms p99 (100 ticks each, to 500): {best}")
    print(json.dumps({"prompts": kind, "sizes": rows, "max_legs_p99_20ms": best, "seconds": seconds}))


def results_section(date: str, where: str) -> list[str]:
    """Run the benchmark in a fresh process and return its RESULTS.md section (for bench/run.py)."""
    from _common import run_json

    result = run_json("media_engine.py", timeout=600)
    print(result["_stdout"], flush=True)
    lines = [
        "## Media engine: service-hosted legs per core",
        "",
        "Bot-to-bot calls (mixes of 2, the two legs of a call in distant rows); every leg plays prompts back to",
        f"back, so every leg hears the other's prompt ({result['prompts']}), with DTMF detection and VAD on every",
        "leg. Time of one 20 ms tick of the engine plus re-queueing finished prompts; one thread, BLAS pinned to",
        "one thread, no network, long-lived objects frozen out of the garbage collector (as a node should).",
        "False DTMF = keys detected in the prompts (talk-off).",
        "",
        "| legs | tick p50 | tick p99 | tick max | per leg (p50) | false DTMF | target | command | date | machine |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["sizes"]:
        lines.append(
            f"| {row['legs']} | {row['p50_ms']} ms | {row['p99_ms']} ms | {row['max_ms']} ms | {row['us_per_leg']} us"
            f" | {row['false_tones']} | p99 < 20 ms at 2000 | `python bench/media_engine.py` | {date} | {where} |"
        )
    if result["max_legs_p99_20ms"] is not None:
        lines += ["", f"Most legs with tick p99 within 20 ms (to 500): **{result['max_legs_p99_20ms']}**."]
    return lines


if __name__ == "__main__":
    main()
