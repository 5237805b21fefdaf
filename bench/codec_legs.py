"""Micro-benchmark: the RTP bank's codec work per SIP leg and 20 ms tick, G.722 (16 kHz straight, one C coder per
leg and direction) against PCMU (the batched 16 kHz -> 8 kHz conversion, G.711 tables, 8 kHz -> 16 kHz back).

Run: .venv/bin/python bench/codec_legs.py [--legs 100] [--ticks 200] [--rounds 3]. Rounds alternate the two codecs
(fair on a busy machine); BLAS is pinned to one thread. Prints microseconds per leg per tick (send + receive) and
the share of one core that is per leg, for each codec, and their ratio. Socket I/O, jitter buffers and RTCP cost the
same for both codecs and are not included.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import statistics
import time

import numpy as np
import numpy.typing as npt

from opencomms.media.g711 import ulaw_decode, ulaw_encode
from opencomms.media.g722 import G722Decoder, G722Encoder
from opencomms.rtp.transcode import FrameConverter


def _audio(legs: int, ticks: int, rng: np.random.Generator) -> npt.NDArray[np.int16]:
    """Speech-like 16 kHz frames, (ticks, legs, 320)."""
    t = np.arange(ticks * 320) / 16000.0
    out = np.empty((legs, t.size), dtype=np.int16)
    for c in range(legs):
        f0 = rng.uniform(90, 280)
        x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 12)) * 3000 + rng.standard_normal(t.size) * 300
        out[c] = np.clip(x, -32768, 32767).astype(np.int16)
    return np.ascontiguousarray(out.reshape(legs, ticks, 320).transpose(1, 0, 2))


def _pcmu(frames: npt.NDArray[np.int16], legs: int) -> float:
    down, up = FrameConverter(legs, 16000, 8000), FrameConverter(legs, 8000, 16000)
    start = time.perf_counter()
    for frame in frames:
        codes = ulaw_encode(down.process(frame))  # send
        up.process(ulaw_decode(codes))  # receive (the peer's packets: here our own)
    return time.perf_counter() - start


def _g722(frames: npt.NDArray[np.int16], legs: int) -> float:
    coders = [(G722Encoder(), G722Decoder()) for _ in range(legs)]
    sent = np.zeros((legs, 160), dtype=np.uint8)
    heard = np.zeros((legs, 320), dtype=np.int16)
    start = time.perf_counter()
    for frame in frames:
        for row, (enc, dec) in enumerate(coders):  # as RtpBank._send and _play_wide do, row by row
            sent[row] = np.frombuffer(enc.encode(frame[row]), dtype=np.uint8)
            heard[row] = dec.decode(sent[row].tobytes())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--legs", type=int, default=100)
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    frames = _audio(args.legs, args.ticks, np.random.default_rng(1))
    results: dict[str, list[float]] = {"PCMU": [], "G.722": []}
    for _ in range(args.rounds):
        results["PCMU"].append(_pcmu(frames, args.legs))
        results["G.722"].append(_g722(frames, args.legs))
    per_leg = {k: statistics.median(v) / (args.ticks * args.legs) * 1e6 for k, v in results.items()}
    for name, us in per_leg.items():
        print(f"{name:<6} {us:6.2f} us per leg per tick (send + receive) = {us / 200:.3f} % of a core per leg")
    print(
        f"codec_legs: {args.legs} legs, G.722 {per_leg['G.722']:.2f} us vs PCMU {per_leg['PCMU']:.2f} us per leg per"
        f" tick ({per_leg['G.722'] / per_leg['PCMU']:.1f}x; {per_leg['G.722'] / 200:.3f} vs"
        f" {per_leg['PCMU'] / 200:.3f} % of a core per leg)"
    )


if __name__ == "__main__":
    main()
