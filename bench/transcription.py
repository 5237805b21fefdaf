"""Benchmark: live transcription (issue 15, benchmark (a) and (b)).

(a) Talkers per core. `--talkers` speakers talk at once, each saying the test sentences one after another
(the voices of opencomms.testing.speech: flite slt/rms/awb and festival's HTS slt, 0.6 to 1.2 s pauses), fed in
real time as 20 ms frames to the transcription pool (Silero VAD segmenter thread + `--workers` Whisper tiny.en
decoder threads), the whole process pinned to `--cores` CPUs. Latency: when the caption is ready minus the end of
the utterance's speech. A count passes when the p95 latency is within `--target` seconds and no utterance was
reported overloaded.
(b) Word error rate of the pipeline as bots receive it (VAD-cut utterances) on the 30 sentences of each voice (none
is a voice the prompts use), at 16 kHz and through G.711 (µ-law at 8 kHz), next to the model alone on the whole
utterances; the mean over the voices, and each voice's figures.

Prints one JSON object per run and a last line with the result.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from opencomms.speech.pool import OVERLOADED, Caption, PoolConfig, TranscriptionPool
from opencomms.speech.silero import SileroVad
from opencomms.speech.wer import word_error_rate
from opencomms.speech.whisper import WhisperConfig, WhisperTranscriber
from opencomms.testing.speech import SENTENCES, VOICES, phone_line, synthesize

FRAME = 320


def talker_signal(utterances: list[np.ndarray], seed: int, seconds: float) -> np.ndarray:
    rng = random.Random(seed)
    parts: list[np.ndarray] = [np.zeros(rng.randrange(0, 16_000), dtype=np.int16)]  # talkers start apart
    total = parts[0].size
    order = list(range(len(utterances)))
    rng.shuffle(order)
    i = 0
    while total < seconds * 16_000:
        u = utterances[order[i % len(order)]]
        gap = np.zeros(int(rng.uniform(0.6, 1.2) * 16_000), dtype=np.int16)
        parts += [u, gap]
        total += u.size + gap.size
        i += 1
    return np.concatenate(parts)


def load_run(
    whisper: WhisperTranscriber, spoken: list[list[np.ndarray]], talkers: int, seconds: float, args: argparse.Namespace
) -> dict[str, object]:
    captions: list[Caption] = []
    lock = threading.Lock()

    def got(c: Caption) -> None:
        with lock:
            captions.append(c)

    pool = TranscriptionPool(
        whisper,
        SileroVad(),
        got,
        config=PoolConfig(workers=args.workers, max_batch=args.batch, max_queued=args.max_queued, max_wait=3.0),
    )
    pool.start()
    signals = [talker_signal(spoken[t % len(spoken)], seed=t, seconds=seconds) for t in range(talkers)]
    frames = min(s.size for s in signals) // FRAME
    busy0 = machine_busy()
    cpu0 = time.process_time()
    t0 = time.monotonic()
    for k in range(frames):  # the engine's 20 ms clock, on an absolute schedule
        due = t0 + k * 0.02
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        at = t0 + k * 0.02
        for t, signal in enumerate(signals):
            pool.feed(t, signal[k * FRAME : (k + 1) * FRAME], at)
    for t in range(talkers):
        pool.end(t)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (pool.queued or pool.stats.utterances > len(captions) + pool.stats.empty):
        time.sleep(0.05)
    wall = time.monotonic() - t0
    cpu = time.process_time() - cpu0
    busy1 = machine_busy()
    others = max(0.0, (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]) * os.cpu_count() - cpu / wall)
    pool.close()
    final = [c for c in captions if c.status != OVERLOADED]
    latency = np.array([c.ready_at - c.speech_end for c in final]) if final else np.array([np.inf])
    p95 = float(np.percentile(latency, 95))
    overloaded = sum(1 for c in captions if c.status == OVERLOADED)
    return {
        "talkers": talkers,
        "utterances": pool.stats.utterances,
        "captions": len(final),
        "overloaded": overloaded,
        "p50_s": round(float(np.percentile(latency, 50)), 3),
        "p95_s": round(p95, 3),
        "max_s": round(float(latency.max()), 3),
        "cpu_share": round(cpu / wall, 2),
        "cpu_per_talker": round(cpu / wall / talkers, 4),
        "other_processes_cores": round(others, 2),
        "mean_batch": round(pool.stats.utterances / max(1, pool.stats.batches), 2),
        "ok": p95 <= args.target and overloaded == 0,
    }


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat (0, 1 where there is none)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 1
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def pipeline_texts(whisper: WhisperTranscriber, utterances: list[np.ndarray]) -> list[str]:
    captions: list[Caption] = []
    pool = TranscriptionPool(whisper, SileroVad(), captions.append, config=PoolConfig(max_queued=256, max_wait=600))
    pool.start()
    gap = np.zeros(12_000, dtype=np.int16)
    signal = np.concatenate([np.concatenate([u, gap]) for u in utterances])
    for i in range(0, signal.size - FRAME + 1, FRAME):
        pool.feed("s", signal[i : i + FRAME], i / 16_000)
        if i % 16_000 == 0:
            time.sleep(0.001)
    pool.end("s")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (
        pool.stats.utterances < len(utterances) or pool.stats.utterances > len(captions) + pool.stats.empty
    ):
        time.sleep(0.05)
    pool.close()
    return [c.text for c in sorted(captions, key=lambda c: c.start)]


def model_texts(whisper: WhisperTranscriber, utterances: list[np.ndarray]) -> list[str]:
    """The model alone on the whole utterances, four at a time (the pool's batch)."""
    return [r.text for i in range(0, len(utterances), 4) for r in whisper.transcribe(utterances[i : i + 4])]


def wer_run(whisper: WhisperTranscriber, spoken: dict[str, list[np.ndarray]]) -> dict[str, object]:
    out: dict[str, object] = {}
    reference = " ".join(SENTENCES)
    per_voice: dict[str, dict[str, float]] = {voice: {} for voice in spoken}
    for line in ("16k", "g711"):
        live, offline = [], []
        for voice, utterances in spoken.items():
            audio = utterances if line == "16k" else [phone_line(u) for u in utterances]
            offline.append(word_error_rate(zip(SENTENCES, model_texts(whisper, audio), strict=True)))
            live.append(word_error_rate([(reference, " ".join(pipeline_texts(whisper, audio)))]))
            per_voice[voice][f"{line}_pipeline"] = round(live[-1], 4)
            per_voice[voice][f"{line}_model_alone"] = round(offline[-1], 4)
        out[f"wer_{line}_pipeline"] = round(float(np.mean(live)), 4)
        out[f"wer_{line}_model_alone"] = round(float(np.mean(offline)), 4)
    out["wer_per_voice"] = per_voice
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--talkers", default="8,16,24", help="comma-separated counts of concurrent talkers to try")
    parser.add_argument("--seconds", type=float, default=12.0, help="seconds of talking per count")
    parser.add_argument("--cores", type=int, default=1, help="CPUs the process is pinned to")
    parser.add_argument("--workers", type=int, default=1, help="decoder threads")
    parser.add_argument("--batch", type=int, default=4, help="utterances decoded together")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--max-queued", type=int, default=32)
    parser.add_argument("--target", type=float, default=1.5, help="p95 caption latency to meet (s)")
    parser.add_argument("--no-wer", action="store_true", help="skip (b)")
    parser.add_argument("--no-load", action="store_true", help="skip (a)")
    parser.add_argument("--voices", default=",".join(VOICES), help="comma-separated voices (testing/speech.py)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])
    whisper = WhisperTranscriber(WhisperConfig(beam_size=args.beam, workers=args.workers))
    voices = args.voices.split(",")
    with ThreadPoolExecutor(2) as render:  # the synthesizers are subprocesses
        spoken = {voice: list(render.map(lambda s, v=voice: synthesize(s, v), SENTENCES)) for voice in voices}
    best = 0
    costs = []
    for talkers in [] if args.no_load else [int(t) for t in args.talkers.split(",")]:
        result = load_run(whisper, list(spoken.values()), talkers, args.seconds, args)
        print(json.dumps(result), flush=True)
        if result["ok"]:
            best = max(best, talkers)
            costs.append(float(result["cpu_per_talker"]))  # type: ignore[arg-type]
    summary: dict[str, object] = {}
    if not args.no_load:
        summary.update(talkers_per_core=round(best / args.cores, 1), target_p95_s=args.target)
    if costs:  # what a core would carry at 70 % load, from the CPU a talker cost in the runs that passed
        summary["talkers_per_core_at_70pct_cpu"] = round(0.7 / max(costs), 1)
    if not args.no_wer:
        summary.update(wer_run(whisper, spoken))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
