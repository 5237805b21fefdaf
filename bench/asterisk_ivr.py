"""Concurrent IVR calls, node vs the Asterisk anchor: CPU over a window with every call up, RTP timing, the ratio.

Run: .venv/bin/python bench/asterisk_ivr.py [--calls 300] [--hold 30] [--capture 15] [--rounds 1]
     [--only node|asterisk] [--media-process] [--keep]

The scenario is the anchor's (../shared/anchors/asterisk/: bench_concurrent.sh, sipp/uac_ivr_rtp.xml): SIPp brings
up N calls (RAMP/s), PCMU both ways (it plays espeak-ng speech to the server), and holds them all; over a window of
--hold seconds with every call up it takes the server's CPU, and from a tcpdump of --capture seconds inside it the
% of the server's RTP packets sent within 5 ms of their 20 ms schedule (tools/rtp_gaps.py); then SIPp hangs up
(BYE). Asterisk runs it from its dialplan (context `ivr`: Answer, then Read() looping a 10 s spoken menu while it
listens for one digit). The node (`opencomms serve`, SQLite, SIP on a free loopback port, RTP ports 10000-19998)
runs it through an outside bot in its own process, written against Graph's JSON only (every callback JWT validated
against the node's JWKS): on the incoming call it answers (serviceHostedMediaConfig); on `established` it does what
Read() does: subscribeToTone (DTMF reported to it) and playPrompt of the same 10 s spoken menu (a WAV it serves),
posted again each time that operation completes, so the menu loops; it never hangs up. Both servers are external
to bench_concurrent.sh (TARGET_PORT/TARGET_PID/SERVICE), unpinned, normal priority; rounds alternate Asterisk/node.

CPU is utime+stime from /proc over the window (all calls up, after SETTLE_S): the server's process and its
descendants (the node's media process with --media-process, i.e. OPENCOMMS_MEDIA__PROCESS=true), the bot's
process apart. bench_concurrent.sh's own figure (the one pid it is given) is kept as a cross-check. Prints one line
per round, one summary line per server, the ratio node/Asterisk of CPU per call-second, a `RESULT asterisk_ivr`
line and one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from _common import run_json  # noqa: E402
from asterisk_ratio import (  # noqa: E402
    ANCHOR,
    NUMBER,
    Asterisk,
    NodeUnderTest,
    ensure_anchor,
    serve_bot,
    sipp_counts,
    tree_cpu,
)
from sip_calls import Bot, _cpu_seconds, _prompt_wav  # noqa: E402

MENU_TEXT = (
    "Welcome. For sales, press one. For support, press two. For billing, press three. "
    "To hear this menu again, stay on the line."
)
"""The anchor's 10 s menu (run.sh `sounds`), spoken by espeak-ng: both servers loop the same words."""
SETTLE_S = 5
NODE_RTP_PORTS = ("10000", "19998")


# -- the bot (its own process) ------------------------------------------------------------------------------------


class IvrBot(Bot):
    """Answers; once established subscribes to tones and plays the menu, again each time it completes (Read())."""

    def __init__(self, node: str, tenant: str, client_id: str, secret: str, wav: bytes) -> None:
        super().__init__(node, tenant, client_id, secret)
        self.wav = wav
        self.counts.update({"tones_subscribed": 0, "tone_errors": 0, "menus_started": 0, "prompts_gone": 0})

    async def play(self, call_id: str) -> None:  # on `established`
        status = await self._post(f"{call_id}/subscribeToTone", {"clientContext": "bench"})
        self.counts["tones_subscribed" if status in (200, 201, 202) else "tone_errors"] += 1
        self.counts["menus_started"] += 1
        await self.replay(call_id)

    def prompt_completed(self, call_id: str) -> None:
        self._spawn(self.replay(call_id))

    async def replay(self, call_id: str) -> None:
        media = {"@odata.type": "#microsoft.graph.mediaInfo", "uri": self.prompt_url, "resourceId": "menu"}
        body = {
            "clientContext": "bench",
            "prompts": [{"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": media}],
        }
        status = await self._post(f"{call_id}/playPrompt", body)
        # 404: SIPp's BYE ended the call in between (not an error); anything else but 2xx is one
        key = "prompts" if status in (200, 201, 202) else "prompts_gone" if status == 404 else "prompt_errors"
        self.counts[key] += 1


def menu_wav(path: Path) -> Path:
    """The anchor's menu as an 8 kHz 16-bit WAV of exactly 10 s (espeak-ng + sox as run.sh makes it); a 10 s
    two-tone WAV when either tool is missing."""
    if not path.exists():
        if shutil.which("espeak-ng") and shutil.which("sox"):
            src = path.with_suffix(".src.wav")
            subprocess.run(["espeak-ng", "-s", "160", "-w", str(src), MENU_TEXT], check=True)
            cmd = ["sox", "-V1", str(src), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", str(path)]
            subprocess.run([*cmd, "trim", "0", "10", "pad", "0", "10", "trim", "0", "10"], check=True)
            src.unlink()
        else:
            path.write_bytes(_prompt_wav(10.0))
    return path


def child_pids(pid: int) -> list[int]:
    """The live children of a process (/proc/PID/task/*/children)."""
    pids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            pids += [int(x) for x in task.read_text().split()]
        except OSError:
            continue
    return pids


# -- one round ----------------------------------------------------------------------------------------------------


class WindowSampler:
    """CPU snapshots over bench_concurrent.sh's window: it logs "all calls up", sleeps SETTLE_S, then measures for
    HOLD_S; we take the same two instants (the server's process tree, its own process, the bot)."""

    def __init__(self, pid: int, bot_pid: int | None, hold: int) -> None:
        self.pid, self.bot_pid, self.hold = pid, bot_pid, hold
        self.snaps: list[tuple[float, float, float, float]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _snap(self) -> None:
        bot = _cpu_seconds(self.bot_pid) if self.bot_pid else 0.0
        self.snaps.append((time.time(), tree_cpu(self.pid), _cpu_seconds(self.pid), bot))

    def _run(self) -> None:
        time.sleep(SETTLE_S)
        self._snap()
        time.sleep(self.hold)
        self._snap()

    def cores(self) -> dict[str, float]:
        """Cores over the window: server (tree), its main process, its descendants, the bot."""
        self.thread.join()
        if len(self.snaps) < 2:
            return {}
        (t0, tree0, main0, bot0), (t1, tree1, main1, bot1) = self.snaps
        dt = t1 - t0
        return {
            "server": (tree1 - tree0) / dt,
            "main": (main1 - main0) / dt,
            "children": (tree1 - tree0 - (main1 - main0)) / dt,
            "bot": (bot1 - bot0) / dt,
            "seconds": dt,
        }


def concurrent_round(
    port: int, pid: int, service: str, bot_pid: int | None, args: argparse.Namespace, out: Path
) -> dict[str, Any]:
    """One bench_concurrent.sh run against a running server, unpinned; its result.json plus our CPU window."""
    env = {k: v for k, v in os.environ.items() if k not in ("PIN", "SERVER_CPUS", "LOAD_CPUS", "RT", "NO_CAPTURE")}
    env.update(
        TARGET_PORT=str(port),
        TARGET_PID=str(pid),
        SERVICE=service,
        OUT_DIR=str(out),
        HOLD_S=str(args.hold),
        CAPTURE_S=str(args.capture),
        RAMP=str(args.ramp),
        SETTLE_S=str(SETTLE_S),
    )
    sampler = WindowSampler(pid, bot_pid, args.hold)
    proc = subprocess.Popen(
        [str(ANCHOR / "bench_concurrent.sh"), str(args.calls)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    log: list[str] = []
    for line in proc.stderr:
        log.append(line)
        if "all calls up after" in line and not sampler.thread.is_alive() and not sampler.snaps:
            sampler.start()
    proc.wait()
    cores = sampler.cores() if sampler.snaps else {}
    try:
        result: dict[str, Any] = json.loads((out / "result.json").read_text())
    except (OSError, ValueError):
        raise SystemExit(f"bench_concurrent.sh failed ({proc.returncode}): {''.join(log)[-3000:]}") from None
    result["report"] = (out / "result.txt").read_text(errors="replace").strip() if (out / "result.txt").exists() else ""
    result["log"] = "".join(log)
    result["cores"] = cores
    return result


def _held(r: dict[str, Any], n: int) -> int:
    """Calls up at the window's start (SIPp's answered count), N when unknown."""
    m = re.match(r"(\d+)", str(r.get("holding_window_start_end", "")))
    return int(m.group(1)) if m and int(m.group(1)) > 0 else n


def _rtp(r: dict[str, Any], key: str) -> float:
    value = (r.get("rtp") or {}).get(key)
    return float(value) if value is not None else float("nan")


def _other(r: dict[str, Any]) -> float:
    """Cores the rest of the machine used in the window: busy minus SIPp, the server and the bot (tcpdump in it)."""
    return float(r["machine_busy_cores_window"] - r["sipp_cores_window"] - r["server_cores"] - r.get("bot_cores", 0))


def pooled_pct(gaps: list[dict[str, Any]]) -> float:
    """% of packets within 5 ms over several captures (rtp_gaps.py outputs), weighted by their packet counts."""
    packets = sum(int(g.get("packets", 0)) for g in gaps if g.get("within_5ms_pct") is not None)
    if not packets:
        return float("nan")
    within = sum(float(g["within_5ms_pct"]) * int(g["packets"]) for g in gaps if g.get("within_5ms_pct") is not None)
    return round(within / packets, 3)


def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="opencomms-astivr-"))
    node: NodeUnderTest | None = None
    ast: Asterisk | None = None
    rounds: dict[str, list[dict[str, Any]]] = {}
    try:
        ensure_anchor()  # its bench_concurrent.sh drives both servers
        if args.only != "node":
            ast = Asterisk(tmp)
        if args.only != "asterisk":
            env = {"OPENCOMMS_SIP__RTP_PORT_MIN": NODE_RTP_PORTS[0], "OPENCOMMS_SIP__RTP_PORT_MAX": NODE_RTP_PORTS[1]}
            if args.media_process:
                env["OPENCOMMS_MEDIA__PROCESS"] = "true"
            wav = menu_wav(tmp / "menu.wav")
            node = NodeUnderTest(
                "node",
                ROOT / "src",
                tmp / "node",
                2 * args.calls + 50,
                bot_script=Path(__file__),
                bot_args=["--prompt", str(wav)],
                settings=env,
            )
            children = child_pids(node.proc.pid)
            if args.media_process and not children:
                raise SystemExit("--media-process: the node started no media process")
            print(f"node pid {node.proc.pid}, child processes {children}", file=sys.stderr, flush=True)
        time.sleep(1)
        for i in range(args.rounds):
            targets: list[tuple[str, int, int, str]] = []
            if ast is not None:
                targets.append(("asterisk", ast.port, ast.pid, "ivr"))
            if node is not None:
                targets.append(("node", node.sip_port, node.proc.pid, NUMBER.lstrip("+")))
            if i % 2:
                targets.reverse()
            for name, port, pid, service in targets:
                bot = node if name == "node" else None
                counts0 = bot.bot_counts() if bot else {}
                r = concurrent_round(port, pid, service, bot.bot.pid if bot else None, args, tmp / f"{name}-{i}")
                c = r["cores"]
                held = _held(r, args.calls)
                r["name"] = name
                r["held"] = held
                r["server_cores"] = c.get("server", float("nan"))
                r["ms_per_call_second"] = 1000 * r["server_cores"] / held
                if bot:
                    time.sleep(2)  # the BYEs' notifications reach the bot
                    counts = bot.bot_counts()
                    r["bot"] = {k: v - counts0.get(k, 0) for k, v in counts.items()}
                    r["bot_cores"] = c.get("bot", float("nan"))
                rounds.setdefault(name, []).append(r)
                extra = ""
                if bot:
                    b = r["bot"]
                    extra = (
                        f", media child {c.get('children', 0):.3f}; bot {r['bot_cores']:.3f} cores apart "
                        f"({b['answered']} answered, {b['prompts']} prompts started, "
                        f"{b['answer_errors'] + b['prompt_errors'] + b['tone_errors']} errors)"
                    )
                print(
                    f"round {i + 1} {name}: {r['successful']}/{r['total']} ok, {r['failed']} failed, "
                    f"{held} up in the window; CPU {r['server_cores']:.3f} cores = {r['ms_per_call_second']:.2f} ms "
                    f"per call-second (the script's, main pid only: {r['cpu_cores_window'] or 0:.3f}){extra}; "
                    f"RTP within 5 ms {_rtp(r, 'within_5ms_pct')} % (p99 lateness {_rtp(r, 'lateness_ms_p99')} ms, "
                    f"worst stream {_rtp(r, 'worst_stream_within_5ms_pct')} %), other processes "
                    f"{_other(r):.2f} cores (tcpdump included)",
                    flush=True,
                )
                time.sleep(2)
    finally:
        if node is not None:
            node.stop()
        if ast is not None:
            ast.stop()
    summary = summarize(rounds, args, node.errors_logged() if node else 0)
    failed = any(s["failed"] for s in summary["servers"].values())
    summary["workdir"] = str(tmp)
    if not args.keep and not failed:
        shutil.rmtree(tmp, ignore_errors=True)
    elif failed:
        print(f"calls failed: logs kept in {tmp}", file=sys.stderr)
    return summary


def summarize(rounds: dict[str, list[dict[str, Any]]], args: argparse.Namespace, node_errors: int) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "bench": "asterisk_ivr",
        "calls": args.calls,
        "hold_s": args.hold,
        "capture_s": args.capture,
        "rounds": args.rounds,
        "media_process": args.media_process,
        "servers": {},
    }
    for name, rs in rounds.items():
        s: dict[str, Any] = {
            **sipp_counts(rs),
            "cores": round(statistics.median(r["server_cores"] for r in rs), 3),
            "cores_rounds": [round(r["server_cores"], 3) for r in rs],
            "ms_per_call_second": round(statistics.median(r["ms_per_call_second"] for r in rs), 3),
            "rtp_within_5ms_pct": pooled_pct([r.get("rtp") or {} for r in rs]),
            "rtp_within_5ms_pct_rounds": [_rtp(r, "within_5ms_pct") for r in rs],
            "rtp_lateness_p99_ms": max(_rtp(r, "lateness_ms_p99") for r in rs),  # the worst round's
            "rtp_packets": sum(int((r.get("rtp") or {}).get("packets", 0)) for r in rs),
            "other_load_cores": round(statistics.median(_other(r) for r in rs), 2),
        }
        if name == "node":
            s["media_child_cores"] = round(statistics.median(r["cores"].get("children", 0.0) for r in rs), 3)
            s["bot_cores"] = round(statistics.median(r["bot_cores"] for r in rs), 3)
            s["bot_counts"] = {k: sum(r["bot"].get(k, 0) for r in rs) for k in rs[0]["bot"]}
            s["node_errors_logged"] = node_errors
        summary["servers"][name] = s
    a, n = summary["servers"].get("asterisk"), summary["servers"].get("node")
    for name, s in summary["servers"].items():
        line = (
            f"{name}: {s['cores']:.3f} cores (rounds {s['cores_rounds']}) = {s['ms_per_call_second']:.2f} ms CPU per "
            f"call-second, {s['ok']}/{s['calls']} ok, {s['failed']} failed; RTP within 5 ms {s['rtp_within_5ms_pct']} "
            f"% of {s['rtp_packets']} packets (rounds {s['rtp_within_5ms_pct_rounds']}), p99 lateness "
            f"{s['rtp_lateness_p99_ms']} ms (worst round)"
        )
        if name == "node":
            bc = s["bot_counts"]
            line += (
                f"; media process {'on' if args.media_process else 'off'} ({s['media_child_cores']:.3f} cores in it);"
                f" bot {s['bot_cores']:.3f} cores apart, {bc['answered']} answered, {bc['prompts']} prompts started,"
                f" {bc['answer_errors'] + bc['prompt_errors'] + bc['tone_errors']} bot errors,"
                f" {s['node_errors_logged']} node errors logged"
            )
        print(line, flush=True)
    if a and n:
        n["ratio"] = round(n["ms_per_call_second"] / max(1e-9, a["ms_per_call_second"]), 2)
        print(f"ratio node/Asterisk CPU per call-second: {n['ratio']:.2f} (target <= 0.5)", flush=True)
    parts = [f"calls={args.calls}", f"media_process={int(args.media_process)}"]
    for name, s in summary["servers"].items():
        parts += [
            f"{name}_cores={s['cores']:.3f}",
            f"{name}_ms_per_call_s={s['ms_per_call_second']:.2f}",
            f"{name}_rtp5={s['rtp_within_5ms_pct']}",
            f"{name}_ok={s['ok']}/{s['calls']}",
        ]
    if n:
        parts.append(f"bot_cores={n['bot_cores']:.3f}")
        if "ratio" in n:
            parts.append(f"ratio={n['ratio']:.2f}")
    print("RESULT asterisk_ivr " + " ".join(parts), flush=True)
    return summary


# -- make bench ---------------------------------------------------------------------------------------------------


def results_section(date: str, where: str) -> list[str]:
    """RESULTS.md lines (for bench/run.py): 300 calls, 30 s window, 2 rounds each, alternating."""
    shown = "python bench/asterisk_ivr.py --calls 300 --hold 30 --capture 15 --rounds 2"
    result = run_json("asterisk_ivr.py", *shown.split()[2:], timeout=2400)
    a, n = result["servers"]["asterisk"], result["servers"]["node"]
    mode = "media process" if result["media_process"] else "media thread (default)"
    rows = [
        ("node CPU / Asterisk's at 300 calls", f"{n['ratio']:.2f}", "<= 0.5", f"per call-second; {mode}"),
        (
            "CPU: node / Asterisk",
            f"{n['cores']:.3f} / {a['cores']:.3f} cores ({n['ms_per_call_second']:.2f} / "
            f"{a['ms_per_call_second']:.2f} ms per call-second)",
            "-",
            f"bot {n['bot_cores']:.3f} cores apart (its own process)",
        ),
        (
            "RTP within 5 ms of schedule: node / Asterisk",
            f"{n['rtp_within_5ms_pct']} / {a['rtp_within_5ms_pct']} %",
            ">= 99.9 %",
            f"p99 lateness {n['rtp_lateness_p99_ms']} / {a['rtp_lateness_p99_ms']} ms; no pinning, no RT priority",
        ),
        ("calls ok / failed: node / Asterisk", f"{n['ok']}/{n['failed']} / {a['ok']}/{a['failed']}", "0 failed", ""),
    ]
    return [
        "## Concurrent IVR calls against the Asterisk anchor (issue 16)",
        "",
        "The anchor's scenario (sipp/uac_ivr_rtp.xml via its bench_concurrent.sh): 300 calls up at once, PCMU both",
        "ways, CPU over a 30 s window with every call up, RTP timing from a 15 s tcpdump in it. Asterisk 20 (chan_sip,",
        "dialplan Answer + Read() looping a 10 s spoken menu) and the node (`opencomms serve`, SQLite) driven by an",
        "outside bot in its own process (Graph JSON only: answer, subscribeToTone, playPrompt of the same menu again",
        "on each completion), alternating rounds in one run, no pinning, no RT priority; CPU from /proc (the node's",
        "process and its descendants, median of the rounds), the bot's apart.",
        "",
        "| figure | value | target | notes | command | date | machine |",
        "|---|---|---|---|---|---|---|",
        *[f"| {f} | {v} | {t} | {notes} | `{shown}` | {date} | {where} |" for f, v, t, notes in rows],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="concurrent calls (bench_concurrent.sh N)")
    parser.add_argument("--hold", type=int, default=30, help="measured window with every call up, seconds (HOLD_S)")
    parser.add_argument("--capture", type=int, default=15, help="tcpdump of the server's RTP inside it (CAPTURE_S)")
    parser.add_argument("--ramp", type=int, default=30, help="calls per second while bringing them up (RAMP)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds per server, alternating")
    parser.add_argument("--only", choices=("node", "asterisk"), help="measure one server only (no ratio)")
    parser.add_argument("--media-process", action="store_true", help="the node with OPENCOMMS_MEDIA__PROCESS=true")
    parser.add_argument("--keep", action="store_true", help="keep the workdir (SIPp output, pcaps, node log)")
    parser.add_argument("--bot-process", help=argparse.SUPPRESS)
    parser.add_argument("--prompt", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bot_process:
        node, tenant, client_id, secret, port = json.loads(args.bot_process)
        import uvloop

        bot = IvrBot(node, tenant, client_id, secret, Path(args.prompt).read_bytes())
        uvloop.run(serve_bot(bot, int(port)))
        return
    if args.capture > args.hold:
        parser.error("--capture must fit in --hold")
    print(json.dumps(run(args)))


if __name__ == "__main__":
    main()
