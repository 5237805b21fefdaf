"""CPU per media tick of the RTP bank with N phone legs, as in the short-call scenario (the far end sends nothing).

Run: .venv/bin/python bench/rtp_bank_tick.py [--streams 150] [--ticks 1500] [--talking 0] [--src PATH ...]

Each leg is an engine leg with an attached RTP stream (PCMU, 20 ms) sending to one loopback sink socket; `--talking`
of them also receive a packet every tick from the sink (a far end that talks). The engine is ticked by hand (no
thread, no sleep), commands applied before each tick as the engine thread does; the figure is process CPU time per
tick (engine DSP + the bank's send, receive and play steps + every sendto). `--src PATH` (repeatable) runs the same
measurement for several source trees in turn, alternating, `--rounds` times, and prints the median of each: the way
to compare two versions of the code on a loaded machine. `--compare-compiled` does the same for this tree's compiled
media path (`make compiled`) against its pure-Python path (OPENCOMMS_COMPILED=0).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def measure(streams: int, ticks: int, talking: int, ivr: bool = False) -> float:
    """CPU microseconds per tick (this process, this source tree)."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from opencomms.media.engine import MediaEngine
    from opencomms.media.engine.commands import ConnectLeg, Play
    from opencomms.rtp.bank import RtpBank
    from opencomms.rtp.packet import pack_header
    from opencomms.rtp.stream import Stream, StreamParams

    engine = MediaEngine(2 * streams + 8)
    queue: list[Any] = []

    class Host:
        """EngineThread's command interface, run by hand before each tick."""

        def __init__(self) -> None:
            self.engine = engine

        def call(self, fn: Any) -> None:
            queue.append((fn, None))

        def call_result(self, fn: Any) -> Any:
            from concurrent.futures import Future

            future: Future[Any] = Future()
            queue.append((fn, future))
            return future

    def tick(now: float) -> None:
        todo = queue[:]
        queue.clear()
        for fn, future in todo:
            apply = getattr(fn, "apply", None)
            result = apply(engine) if apply is not None else fn(engine)
            if future is not None:
                future.set_result(result)
        engine.tick(now)

    bank = RtpBank(Host(), capacity=streams + 8, kernel_timestamps=False, paced=True)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    sink.setblocking(False)
    opened = [sink]
    targets = []
    clips: tuple[Any, ...] = ()
    if ivr:  # as bench/rtp_timing.py: each phone leg in a mix with a bot leg playing a long prompt
        sys.path.insert(0, str(ROOT / "bench"))
        import numpy as np
        from rtp_sessions import _prompt

        prompt = _prompt()
        clips = tuple(np.roll(prompt, 4000 * k) for k in range(4))
    import inspect

    phone = {"analysed": False} if "analysed" in inspect.signature(engine.add_leg).parameters else {}
    for i in range(streams):
        engine.add_leg(f"leg{i}", **phone)  # a phone's leg, as the node adds it (older trees: analysed)
        if ivr:
            phone_leg = ConnectLeg(f"leg{i}", f"c{i}", 0, False, *phone.values())
            for cmd in (ConnectLeg(f"bot{i}", f"c{i}", 0, False), phone_leg):
                cmd.apply(engine)
            Play(f"bot{i}", "prompt", (clips[i % len(clips)],)).apply(engine)
        rtp, rtcp = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
        for s in (rtp, rtcp):
            s.bind(("127.0.0.1", 0))
            opened.append(s)
        st = Stream(f"leg{i}", rtp, rtcp)
        st.apply(StreamParams(remote_rtp=sink.getsockname()))
        bank.attach(st)
        if i < talking:
            targets.append(rtp.getsockname())
    tick(0.0)
    payload = bytes([0xFF]) * 160

    def drain() -> None:
        try:
            while True:
                sink.recv(2048)
        except BlockingIOError:
            pass

    cpu = 0.0
    for k in range(1, ticks + 1):
        for j, addr in enumerate(targets):
            sink.sendto(pack_header(0, k == 1, k & 0xFFFF, 160 * k, 1000 + j) + payload, addr)
        started = time.process_time()
        tick(0.02 * k)
        cpu += time.process_time() - started
        if k % 10 == 0:
            drain()
    for s in opened:
        s.close()
    return 1e6 * cpu / ticks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=150, help="phone legs with an RTP stream")
    parser.add_argument("--ticks", type=int, default=1500, help="20 ms ticks measured")
    parser.add_argument("--talking", type=int, default=0, help="legs whose far end sends a packet every tick")
    parser.add_argument("--ivr", action="store_true", help="each leg in a mix with a bot leg playing a prompt")
    parser.add_argument("--src", action="append", default=[], help="a source tree to measure (repeatable)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per source tree (with --src)")
    parser.add_argument(
        "--compare-compiled",
        action="store_true",
        help="measure this tree compiled (make compiled) and pure (OPENCOMMS_COMPILED=0), alternating --rounds times",
    )
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compare_compiled:
        compare_compiled(args)
        return
    if args.one or not args.src:
        us = measure(args.streams, args.ticks, args.talking, args.ivr)
        if args.one:
            from opencomms._compiled import state

            print(json.dumps(us))
            print(json.dumps(state()), file=sys.stderr)
        else:
            print(f"rtp bank tick: {args.streams} streams ({args.talking} talking): {us:.0f} us CPU per tick")
        return
    results: dict[str, list[float]] = {src: [] for src in args.src}
    for _ in range(args.rounds):
        for src in args.src:
            env = {**os.environ, "PYTHONPATH": str(Path(src).resolve())}
            cmd = [sys.executable, __file__, "--one", "--streams", str(args.streams), "--ticks", str(args.ticks)]
            cmd += ["--talking", str(args.talking)] + (["--ivr"] if args.ivr else [])
            out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(out.stderr[-2000:])
            results[src].append(json.loads(out.stdout.strip().splitlines()[-1]))
    for src, values in results.items():
        rounds = ", ".join(f"{v:.0f}" for v in values)
        print(f"rtp bank tick, {src}: {statistics.median(values):.0f} us CPU per tick (median; rounds {rounds})")


def compare_compiled(args: argparse.Namespace) -> None:
    """The compiled media path against the pure-Python one, same sources, alternating subprocesses."""
    src = str(ROOT / "src")
    results: dict[str, list[float]] = {"compiled": [], "pure": []}
    for _ in range(args.rounds):
        for label, switch in (("compiled", "1"), ("pure", "0")):
            env = {**os.environ, "PYTHONPATH": src, "OPENCOMMS_COMPILED": switch}
            cmd = [sys.executable, __file__, "--one", "--streams", str(args.streams), "--ticks", str(args.ticks)]
            cmd += ["--talking", str(args.talking)] + (["--ivr"] if args.ivr else [])
            out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(out.stderr[-2000:])
            state = json.loads(out.stderr.strip().splitlines()[-1])
            if (state == "compiled") != (label == "compiled"):
                raise SystemExit(f"the {label} run ran {state}: build it with `make compiled`")
            results[label].append(json.loads(out.stdout.strip().splitlines()[-1]))
    compiled, pure = (statistics.median(results[k]) for k in ("compiled", "pure"))
    rounds = "; ".join(f"{k} " + ", ".join(f"{v:.0f}" for v in vs) for k, vs in results.items())
    print(
        f"rtp bank tick: {args.streams} streams ({args.talking} talking): compiled {compiled:.0f} us, "
        f"pure {pure:.0f} us CPU per tick (median of {args.rounds} alternating rounds; {rounds}): "
        f"compiled/pure {compiled / pure:.2f}"
    )


if __name__ == "__main__":
    main()
