"""Long fuzz run of the SIP parser and SDP offer/answer: N randomly mutated messages through the same targets as
tests/fuzz (RFC 4475 torture messages and our own as SIP seeds; SDP offers as SDP seeds); prints
"N messages, 0 unhandled exceptions" and the rate, and writes each failing input to --out (exit 1 if any).

Run: python bench/fuzz_sip.py [--sip 1000000] [--sdp 100000] [--seed 1]   (`make fuzz` runs the full size)
Defaults finish in well under a minute.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "src")]

from tests.fuzz.targets import SDP_SEEDS, run, sdp_target, sip_seeds, sip_target  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sip", type=int, default=100_000, help="mutated SIP messages")
    parser.add_argument("--sdp", type=int, default=20_000, help="mutated SDP bodies")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: time)")
    parser.add_argument("--out", type=Path, default=Path("var/fuzz"), help="where failing inputs are written")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else int(time.time())
    rng = random.Random(seed)
    total_failures = 0
    for name, target, seeds, count in (
        ("SIP", sip_target, sip_seeds(), args.sip),
        ("SDP", sdp_target, SDP_SEEDS, args.sdp),
    ):
        if count <= 0:
            continue
        start = time.perf_counter()
        failures = []
        done = 0
        while done < count:  # in chunks, to show progress on long runs
            chunk = min(50_000, count - done)
            failures += run(target, seeds, chunk, rng)
            done += chunk
            if count > 50_000:
                print(f"  {name}: {done}/{count}", file=sys.stderr, flush=True)
        elapsed = time.perf_counter() - start
        for i, (data, exc) in enumerate(failures[:100]):
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / f"{name.lower()}-{seed}-{i}.bin").write_bytes(data)
            print("".join(traceback.format_exception(exc)), file=sys.stderr)
        total_failures += len(failures)
        print(
            f"{name}: {count} messages, {len(failures)} unhandled exceptions "
            f"({count / elapsed:,.0f}/s, {elapsed:.1f} s, seed {seed})"
        )
    return 1 if total_failures else 0


if __name__ == "__main__":
    sys.exit(main())
