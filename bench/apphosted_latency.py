"""Application-hosted media latency: N concurrent calls, each a service-hosted bot playing a prompt to an app-hosted
bot that echoes every frame back through the SDK's AudioSocket.

Run: .venv/bin/python bench/apphosted_latency.py [--calls 50] [--seconds 8] [--warmup 1]

Two processes, as in production: this one runs the node (in-process, uvloop) with the two bots' webhooks; a child
(`--bot`) runs the app-hosted bot: one LocalMediaSession serving every call, echoing each frame as it arrives.
Every 20 ms frame of the prompt is marked (sample 0 = a magic value, sample 1 = the frame number), so each frame
is followed precisely:

* node -> bot: from the frame entering the node (the engine tick that makes it, i.e. the timestamp the node puts
  in the frame) to the bot's AudioSocket yielding it (time.monotonic in the child: the same system clock);
* bot -> node: from the bot's `send` to the engine tick that mixes the echoed frame into the caller's leg (a tap
  on that leg, on the engine thread). This includes waiting for the next tick (up to one 20 ms frame).

Target: p99 < 25 ms each way on loopback. Prints a table and, last, one JSON line; `results_section()` runs it and
returns RESULTS.md lines (hooked into bench/run.py).
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # one core's worth of BLAS, as the node pins it
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import argparse
import asyncio
import gc
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
MAGIC = 14940
FRAME = 320
RATE = 16_000


def marked_prompt(seconds: float) -> bytes:
    """A WAV of a quiet 300 Hz tone whose frame k starts with (MAGIC, k)."""
    from opencomms.media.wav import encode_wav

    frames = int(seconds * 50)
    t = np.arange(frames * FRAME) / RATE
    audio = (1500 * np.sin(2 * np.pi * 300 * t)).astype(np.int16).reshape(frames, FRAME)
    audio[:, 0] = MAGIC
    audio[:, 1] = np.arange(frames)
    return encode_wav(audio.reshape(-1))


def _pct(values: Any) -> dict[str, float | int]:
    measured = np.asarray(values, dtype=np.float64)
    measured = measured[~np.isnan(measured)]
    arr = measured * 1000.0 if measured.size else np.zeros(1)
    return {
        "p50_ms": round(float(np.percentile(arr, 50)), 2),
        "p99_ms": round(float(np.percentile(arr, 99)), 2),
        "max_ms": round(float(arr.max()), 2),
        "frames": int(measured.size),
    }


# -- the app-hosted bot (a child process) ----------------------------------------------------------------------


async def bot() -> None:
    """Read the call keys and the prompt's frame count (one JSON line), print the media configs, echo every call
    until "report", then print what was measured (numpy arrays, so that measuring adds no garbage to collect)."""
    from opencomms.sdk.media import AudioSocket, LocalMediaSession

    loop = asyncio.get_running_loop()
    setup = json.loads(await loop.run_in_executor(None, sys.stdin.readline))
    keys: list[str] = setup["keys"]
    forward = np.full((len(keys), setup["frames"]), np.nan)
    sent_at = np.full((len(keys), setup["frames"]), np.nan)

    async def echo(index: int, sock: AudioSocket) -> None:
        async for frame in sock:
            now = time.monotonic()
            head = np.frombuffer(frame.pcm[:4], dtype="<i2")
            k = int(head[1])
            if int(head[0]) == MAGIC and k < sent_at.shape[1]:
                forward[index, k] = now - frame.timestamp / 1e7
                sent_at[index, k] = time.monotonic()
            await sock.send(frame.pcm)

    async with LocalMediaSession() as session:
        configs = {key: session.media_config(key) for key in keys}
        print(json.dumps(configs), flush=True)
        tasks = [asyncio.create_task(echo(i, await session.audio_socket(key))) for i, key in enumerate(keys)]
        gc.freeze()  # as a long-running bot process would have its start-up objects out of the collector's way
        await loop.run_in_executor(None, sys.stdin.readline)  # "report"
        stats = [session.socket(key).stats for key in keys]
        for task in tasks:
            task.cancel()
    print(
        json.dumps(
            {
                "forward": forward.tolist(),
                "sent_at": sent_at.tolist(),
                "bot_frames_dropped": sum(s.frames_dropped for s in stats),
                "bot_sends_dropped": sum(s.sends_dropped for s in stats),
            }
        ),
        flush=True,
    )


# -- the node and the service-hosted bots (this process) ----------------------------------------------------------


async def node(calls: int, seconds: float, warmup: float) -> dict[str, Any]:
    from aiohttp import web

    from opencomms.config import EgressConfig, NodeConfig, SipConfig, ThrottleSettings
    from opencomms.media.engine import Heard
    from opencomms.testing import GraphClient, RecordingBot, running_node
    from opencomms.testing.harness import app_target

    wav = marked_prompt(seconds + warmup + 2.0)

    async def serve(_: web.Request) -> web.Response:
        return web.Response(body=wav, content_type="audio/wav")

    app = web.Application()
    app.router.add_get("/marked.wav", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    prompt_url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/marked.wav"  # type: ignore[union-attr]

    config = NodeConfig(
        host="127.0.0.1",
        port=0,
        store_url="memory://",
        log_level="warning",
        throttle=ThrottleSettings(enabled=False),
        sip=SipConfig(enabled=False, port=0),
        egress=EgressConfig(allow=("127.0.0.1", "::1")),  # bot, prompt server and media socket on loopback
    )
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__)),
        "--bot",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=HERE.parent,
        limit=1 << 26,  # the report is one long line
    )
    assert child.stdin is not None and child.stdout is not None
    perms = ["Calls.Initiate.All", "Calls.AccessMedia.All"]
    try:
        async with running_node(config) as n:
            tenant = n.directory.create_tenant("Bench", "bench.example")
            handles = {}
            for name in ("alice", "bob"):
                hook = RecordingBot(app_id="", jwks_url=f"{n.public_url}/common/discovery/v2.0/keys")
                await hook.start(f"/{name}/calls")
                registered, secret = n.directory.create_app(tenant.id, name, permissions=perms, callback_url=hook.url)
                hook.app_id = registered.id
                client = GraphClient(n.public_url, tenant.id, registered.id, secret)
                await client.__aenter__()
                handles[name] = (hook, client, registered.id)
            alice, a_client, _ = handles["alice"]
            bob, b_client, bob_id = handles["bob"]

            keys = [f"call{i}" for i in range(calls)]
            frames = int((seconds + warmup + 2.0) * 50)
            child.stdin.write(json.dumps({"keys": keys, "frames": frames}).encode() + b"\n")
            await child.stdin.drain()
            configs = json.loads(await child.stdout.readline())
            a_ids: dict[str, int] = {}
            for i, key in enumerate(keys):
                status, call = await a_client.create_call(alice.url, [app_target(bob_id)])
                assert status == 201, call
                incoming = await bob.incoming(index=i, timeout=10)
                body = {"acceptedModalities": ["audio"], "mediaConfig": configs[key]}
                status, data, _ = await b_client.request(
                    "POST", f"/communications/calls/{incoming.call_id}/answer", body
                )
                assert status == 202, data
                a_ids[call["id"]] = i
            for a_id in a_ids:
                await alice.wait_state(a_id, "established", timeout=10)
            for _ in range(300):
                if n.app_hosted.stats.connections >= calls:
                    break
                await asyncio.sleep(0.05)

            out_at = np.full((calls, frames), np.nan)

            def tap(leg: str, frame: Any, _now: float) -> None:
                k = int(frame[1])
                if int(frame[0]) == MAGIC and k < frames:
                    out_at[a_ids[leg], k] = time.monotonic()

            def install(engine: Any) -> None:
                for a_id in a_ids:
                    engine.subscribe(Heard(a_id, tap))

            n.engine.call(install)
            prompt = {"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": {"uri": prompt_url}}
            await asyncio.gather(
                *(
                    a_client.request("POST", f"/communications/calls/{a}/playPrompt", {"prompts": [prompt]})
                    for a in a_ids
                )
            )
            gc.freeze()  # as the node does after start-up (the set-up above made many objects)
            await asyncio.sleep(warmup)
            before = n.engine.stats()
            await asyncio.sleep(seconds)
            engine_stats = n.engine.stats()
            app_stats = dict(vars(n.app_hosted.stats))
            child.stdin.write(b"report\n")
            await child.stdin.drain()
            report = json.loads(await child.stdout.readline())
            await asyncio.gather(*(a_client.hang_up(a) for a in a_ids))
            for hook, client, _ in handles.values():
                await client.__aexit__(None, None, None)
                await hook.stop()
    finally:
        await asyncio.wait_for(child.wait(), 10)
        await runner.cleanup()

    warm = int(warmup * 50)
    back = (out_at - np.array(report["sent_at"]))[:, warm:]
    expected = calls * int(seconds * 50)
    return {
        "calls": calls,
        "seconds": seconds,
        "node_to_bot": _pct(np.array(report["forward"])[:, warm:]),
        "bot_to_node": _pct(back),
        "expected_frames_each_way": expected,
        "late_ticks": engine_stats["late_ticks"] - before["late_ticks"],
        "skipped_ticks": engine_stats["skipped_ticks"] - before["skipped_ticks"],
        "tick_p99_ms": engine_stats["tick_p99_ms"],
        "node_frames_unsent": app_stats["frames_unsent"],
        "node_frames_trimmed": app_stats["frames_trimmed"],
        "bot_frames_dropped": report["bot_frames_dropped"],
        "reconnects": app_stats["reconnects"],
    }


def table(r: dict[str, Any]) -> str:
    lines = [
        f"{r['calls']} concurrent app-hosted calls, {r['seconds']:.0f} s measured, every frame echoed",
        f"{'direction':<44}{'p50':>9}{'p99':>9}{'max':>9}{'frames':>9}",
    ]
    for label, key in (
        ("node -> bot (tick to AudioSocket yield)", "node_to_bot"),
        ("bot -> node (send to mixed into caller)", "bot_to_node"),
    ):
        d = r[key]
        lines.append(f"{label:<44}{d['p50_ms']:>7.2f}ms{d['p99_ms']:>7.2f}ms{d['max_ms']:>7.2f}ms{d['frames']:>9}")
    lines.append(
        f"expected frames each way {r['expected_frames_each_way']}; late/skipped ticks {r['late_ticks']}/"
        f"{r['skipped_ticks']}; engine tick p99 {r['tick_p99_ms']} ms; reconnects {r['reconnects']}"
    )
    lines.append(
        f"frames dropped: to the bot {r['node_frames_unsent']}, from the bot (backlog trims) "
        f"{r['node_frames_trimmed']}, by the bot {r['bot_frames_dropped']}"
    )
    return "\n".join(lines)


def results_section(date: str, where: str) -> list[str]:
    """RESULTS.md lines (runs the benchmark in fresh processes)."""
    cmd = [sys.executable, str(Path(__file__))]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True, cwd=HERE.parent).stdout
    body = out.strip().splitlines()
    result = json.loads(body[-1])
    ok = all(result[k]["p99_ms"] < 25.0 for k in ("node_to_bot", "bot_to_node"))
    return [
        "## Application-hosted media latency (target p99 < 25 ms each way)",
        "",
        f"`python bench/apphosted_latency.py` — {date} — {where} — {'meets' if ok else 'MISSES'} the target",
        "",
        "```",
        *body[:-1],
        "```",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--bot", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    try:
        import uvloop

        run = uvloop.run
    except ImportError:  # pragma: no cover
        run = asyncio.run
    if args.bot:
        run(bot())
        return
    result = run(node(args.calls, args.seconds, args.warmup))
    print(table(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
