"""Short calls, node vs the Asterisk anchor: CPU per call and the ratio, measured in one run, alternating.

Run: .venv/bin/python bench/asterisk_ratio.py [--rate 100] [--seconds 10] [--rounds 2]
     [--node-src NAME=PATH ...] [--skip-asterisk] [--profile .venv/bin/py-spy]

The scenario is the anchor's (../shared/anchors/asterisk/: bench_cps.sh, sipp/uac_short.xml): SIPp sends INVITE
-> the server answers -> ACK -> the server plays a 1 s prompt and sends BYE -> 200. Asterisk runs it from its
dialplan (context `short`: Answer, Playback, Hangup). The node runs it through an outside bot in its own process,
written against Graph's JSON only (aiohttp webhook validating every callback JWT against the node's JWKS + REST
client): on the incoming-call notification it answers (serviceHostedMediaConfig), on `established` it posts
playPrompt of a 1 s WAV it serves, and when that operation's `completed` notification arrives it DELETEs the call,
so the node sends the BYE. The same bench_cps.sh drives both servers (TARGET_PORT/TARGET_PID/SERVICE for the
node); rounds alternate Asterisk, node(s), Asterisk, node(s)... so that both see the same machine load.

The anchor is installed from ../shared/anchors/asterisk/install.sh when /opt/asterisk-anchor is missing; it runs
with a private run dir and SIP port. --node-src NAME=PATH (repeatable) runs one node per source tree (PYTHONPATH)
to compare two versions of the node in the same run (default: this checkout's src); --node-python NAME=PATH runs
node NAME on another interpreter (a venv made from another CPython build; its compiled path is built by it first,
into build/compiled-NAME); --node-env NAME=VARIABLE=VALUE gives node NAME a setting (OPENCOMMS_...), to compare
settings. CPU is utime+stime from /proc: the node's process and its descendants (all threads), the
bot's process apart, Asterisk's process.
Prints one line per round, then one summary line per server, the ratio, and one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from _common import ANCHOR, run_json  # noqa: E402
from sip_calls import PERMISSIONS, Bot, _cpu_seconds, _prompt_wav, free_port, stdin_reader  # noqa: E402

PREFIX = Path("/opt/asterisk-anchor")
NUMBER = "+14255550100"


# -- the bot (its own process) ------------------------------------------------------------------------------------


class ShortBot(Bot):
    """Answers, plays a 1 s prompt once established, hangs up (DELETE) when the prompt completes."""

    def __init__(self, node: str, tenant: str, client_id: str, secret: str) -> None:
        super().__init__(node, tenant, client_id, secret)
        self.wav = _prompt_wav(1.0)
        self.counts.update({"deleted": 0, "delete_errors": 0})

    def prompt_completed(self, call_id: str) -> None:
        self._spawn(self.hang_up(call_id))

    async def hang_up(self, call_id: str) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.session.delete(f"{self.node}/v1.0/communications/calls/{call_id}", headers=headers) as r:
            await r.read()
            self.counts["deleted" if r.status in (200, 202, 204, 404) else "delete_errors"] += 1


async def bot_main(node: str, tenant: str, client_id: str, secret: str, port: int) -> None:
    await serve_bot(ShortBot(node, tenant, client_id, secret), port)


async def serve_bot(bot: Bot, port: int) -> None:
    """Serve until stdin says "stop"; "counts" prints the counts so far (one JSON line). NodeUnderTest's side."""
    await bot.start(port)
    print(json.dumps({"url": bot.url}), flush=True)
    reader = await stdin_reader()
    await reader.readline()  # "go": the node is up
    await bot.login()
    print(json.dumps({"ready": True}), flush=True)
    while (await reader.readline()).strip() == b"counts":
        print(json.dumps(bot.counts), flush=True)
    await bot.stop()
    print(json.dumps(bot.counts), flush=True)


def sipp_counts(rounds: list[dict[str, Any]]) -> dict[str, int]:
    """SIPp's calls, successful, failed and retransmissions summed over a server's rounds."""
    return {
        "calls": sum(r["total"] for r in rounds),
        "ok": sum(r["successful"] for r in rounds),
        "failed": sum(r["failed"] for r in rounds),
        "retransmissions": sum(r["retransmissions"] for r in rounds),
    }


# -- the servers -------------------------------------------------------------------------------------------------


class NodeUnderTest:
    """One `opencomms serve` (SQLite store, SIP on a free loopback port) from a source tree, plus its bot: by default
    ShortBot; `bot_script` names another script whose `--bot-process SPEC *bot_args` runs `serve_bot` with its own
    bot. `settings` adds OPENCOMMS_... variables to the node's environment."""

    def __init__(
        self,
        name: str,
        src: Path,
        workdir: Path,
        max_calls: int,
        *,
        bot_script: Path | None = None,
        bot_args: Sequence[str] = (),
        settings: Mapping[str, str] | None = None,
        python: str = sys.executable,
    ) -> None:
        self.name, self.src, self.workdir = name, src, workdir
        workdir.mkdir(parents=True)
        env = {**os.environ, "PYTHONPATH": str(src)}
        node_env = dict(env)
        if python != sys.executable:  # its compiled media path built by that interpreter, in a directory of its own
            node_env["OPENCOMMS_COMPILED_DIR"] = str(ROOT / "build" / f"compiled-{name}")
            subprocess.run([python, "-m", "opencomms._compiled.build"], env=node_env, check=True, cwd=ROOT)
        store_url = f"sqlite:///{workdir / 'node.db'}"
        self.http_port, self.sip_port = free_port(), free_port()
        node_url = f"http://127.0.0.1:{self.http_port}"
        setup = subprocess.run(
            [sys.executable, __file__, "--setup-store", json.dumps([store_url, NUMBER])],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        tenant, client_id, secret = json.loads(setup.stdout.strip().splitlines()[-1])
        bot_port = free_port()
        spec = json.dumps([node_url, tenant, client_id, secret, bot_port])
        self.bot = subprocess.Popen(
            [sys.executable, str(bot_script or __file__), "--bot-process", spec, *bot_args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self.bot.stdout is not None and self.bot.stdin is not None
        bot_url = json.loads(self.bot.stdout.readline())["url"]
        subprocess.run(
            [sys.executable, __file__, "--set-callback", json.dumps([store_url, client_id, bot_url])],
            env=env,
            check=True,
            cwd=ROOT,
        )
        ready = workdir / "ready"
        node_env = {
            **node_env,
            "OPENCOMMS_LOG_LEVEL": "warning",
            "OPENCOMMS_SIP__PORT": str(self.sip_port),
            "OPENCOMMS_SIP__HOST": "127.0.0.1",
            "OPENCOMMS_SIP__MAX_CALLS": str(max_calls),
            "OPENCOMMS_EGRESS__ALLOW": "127.0.0.1,::1",  # the bot's prompt on loopback
            **(settings or {}),
        }
        self.log = (workdir / "node.log").open("wb")
        cmd = [python, "-m", "opencomms.cli.main", "serve", "--store", store_url, "--port", str(self.http_port)]
        self.proc = subprocess.Popen([*cmd, "--ready-file", str(ready)], env=node_env, stderr=self.log, cwd=ROOT)
        deadline = time.monotonic() + 60
        while not ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"node {name} did not start: {(workdir / 'node.log').read_text()[-2000:]}")
            time.sleep(0.05)
        self.bot.stdin.write("go\n")
        self.bot.stdin.flush()
        json.loads(self.bot.stdout.readline())  # logged in

    def bot_counts(self) -> dict[str, int]:
        assert self.bot.stdin is not None and self.bot.stdout is not None
        self.bot.stdin.write("counts\n")
        self.bot.stdin.flush()
        counts: dict[str, int] = json.loads(self.bot.stdout.readline())
        return counts

    def errors_logged(self) -> int:
        text = (self.workdir / "node.log").read_text(errors="replace")
        return sum(1 for line in text.splitlines() if '"error"' in line or "Traceback" in line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        if self.bot.poll() is None:
            try:
                self.bot.communicate("stop\n", timeout=30)
            except subprocess.TimeoutExpired:
                self.bot.kill()
                self.bot.wait()


def ensure_anchor() -> None:
    """Install the anchor (Asterisk and the tools its scripts run: SIPp, sox, espeak-ng, tcpdump) when missing."""
    tools = ("sipp", "sox", "espeak-ng", "tcpdump")
    if not (PREFIX / "sbin" / "asterisk").exists() or not all(shutil.which(t) for t in tools):
        subprocess.run([str(ANCHOR / "install.sh")], check=True)


class Asterisk:
    """The anchor, started once with a private run dir and SIP port (anchor run.sh)."""

    def __init__(self, workdir: Path) -> None:
        ensure_anchor()
        self.env = {**os.environ, "RUN_DIR": str(workdir / "asterisk-run"), "SIP_PORT": str(free_port())}
        self.env["RTP_START"], self.env["RTP_END"] = "40000", "44999"
        self.port = int(self.env["SIP_PORT"])
        out = subprocess.run(
            [str(ANCHOR / "run.sh"), "start"], env=self.env, capture_output=True, text=True, check=True
        ).stdout
        self.pid = int(out.strip().splitlines()[-1])

    def stop(self) -> None:
        subprocess.run([str(ANCHOR / "run.sh"), "stop"], env=self.env, capture_output=True, check=False)


def tree_cpu(pid: int) -> float:
    """CPU seconds (utime+stime) of `pid` and its live descendants (a node may run media in child processes)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += _cpu_seconds(p)
        todo += children.get(p, [])
    return total


def cps_round(port: int, pid: int, service: str, rate: int, seconds: int, out: Path) -> dict[str, Any]:
    """One bench_cps.sh run against a running server; its result.json."""
    env = {**os.environ, "TARGET_PORT": str(port), "TARGET_PID": str(pid), "SERVICE": service, "OUT_DIR": str(out)}
    proc = subprocess.run(
        [str(ANCHOR / "bench_cps.sh"), str(rate), str(seconds)], env=env, capture_output=True, text=True, check=False
    )
    try:
        result: dict[str, Any] = json.loads((out / "result.json").read_text())
    except (OSError, ValueError):
        raise SystemExit(f"bench_cps.sh failed ({proc.returncode}): {proc.stderr[-2000:]}") from None
    return result


def _p99(r: dict[str, Any]) -> float:
    inv = r.get("response_ms", {}).get("invite")
    return float(inv["p99"]) if inv else float("nan")


def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="opencomms-astratio-"))
    srcs = [s.split("=", 1) for s in args.node_src] or [["node", str(ROOT / "src")]]
    pythons = dict(s.split("=", 1) for s in args.node_python)
    envs = [tuple(s.split("=", 2)) for s in args.node_env]
    if any(len(e) != 3 for e in envs):
        raise SystemExit("--node-env takes NAME=VARIABLE=VALUE")
    nodes: list[NodeUnderTest] = []
    ast: Asterisk | None = None
    rounds: dict[str, list[dict[str, Any]]] = {}
    try:
        if not args.skip_asterisk:
            ast = Asterisk(tmp)
        for name, src in srcs:
            python = pythons.get(name, sys.executable)
            settings = {key: value for node, key, value in envs if node == name}
            nodes.append(
                NodeUnderTest(name, Path(src).resolve(), tmp / name, args.rate * 10, settings=settings, python=python)
            )
        time.sleep(1)
        for i in range(args.rounds):
            targets: list[tuple[str, int, int, str, NodeUnderTest | None]] = []
            if ast is not None:
                targets.append(("asterisk", ast.port, ast.pid, "short", None))
            order = nodes if i % 2 == 0 else nodes[::-1]
            targets += [(n.name, n.sip_port, n.proc.pid, NUMBER.lstrip("+"), n) for n in order]
            for name, port, pid, service, node in targets:
                bot0 = _cpu_seconds(node.bot.pid) if node else 0.0
                cpu0 = tree_cpu(pid)
                counts0 = node.bot_counts() if node else {}
                prof = None
                if node and args.profile:
                    path = tmp / f"profile-{name}-{i}.txt"
                    cmd = [args.profile, "record", "--pid", str(pid), "--format", "raw", "--nonblocking"]
                    cmd += ["-r", "100", "-o", str(path), "-d", str(args.seconds)]
                    prof = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                r = cps_round(port, pid, service, args.rate, args.seconds, tmp / f"{name}-{i}")
                cpu = tree_cpu(pid) - cpu0  # bench_cps.sh counts the server's own process only
                if prof:
                    prof.wait(60)
                r["name"] = name
                r["server_cpu_s"] = round(cpu, 3)
                if node:
                    time.sleep(0.5)  # the last BYEs' notifications reach the bot
                    r["bot_cpu_s"] = round(_cpu_seconds(node.bot.pid) - bot0, 3)
                    counts = node.bot_counts()
                    r["bot"] = {k: v - counts0.get(k, 0) for k, v in counts.items()}
                ok = max(1, r["successful"])
                r["cpu_ms_per_call"] = 1000 * (r["server_cpu_s"] or 0) / ok
                r["bot_ms_per_call"] = 1000 * r.get("bot_cpu_s", 0) / ok
                rounds.setdefault(name, []).append(r)
                bot = f", bot {r['bot_ms_per_call']:.2f} ms/call" if node else ""
                print(
                    f"round {i + 1} {name}: {r['successful']}/{r['total']} ok, {r['failed']} failed, "
                    f"{r['retransmissions']} retrans, {r['cpu_ms_per_call']:.2f} ms CPU/call{bot}, "
                    f"INVITE->200 p99 {_p99(r):.0f} ms, other load {r['other_processes_cores']:.2f} cores",
                    flush=True,
                )
    finally:
        for n in nodes:
            n.stop()
        if ast is not None:
            ast.stop()
    summary: dict[str, Any] = {"bench": "asterisk_ratio", "rate": args.rate, "seconds": args.seconds, "servers": {}}
    for name, rs in rounds.items():
        s = {
            **sipp_counts(rs),
            "cpu_ms_per_call": round(statistics.median(r["cpu_ms_per_call"] for r in rs), 2),
            "cpu_ms_per_call_rounds": [round(r["cpu_ms_per_call"], 2) for r in rs],
            "invite_200_p99_ms": max(_p99(r) for r in rs),
        }
        if name != "asterisk":
            s["bot_ms_per_call"] = round(statistics.median(r["bot_ms_per_call"] for r in rs), 2)
            s["node_errors_logged"] = next(n.errors_logged() for n in nodes if n.name == name)
            s["bot_counts"] = {k: sum(r["bot"].get(k, 0) for r in rs) for k in rs[0]["bot"]}
        summary["servers"][name] = s
    ast_s = summary["servers"].get("asterisk")
    for name, s in summary["servers"].items():
        line = (
            f"{name}: {s['cpu_ms_per_call']:.2f} ms CPU/call (rounds {s['cpu_ms_per_call_rounds']}), "
            f"{s['ok']}/{s['calls']} ok, {s['failed']} failed, INVITE->200 p99 {s['invite_200_p99_ms']:.0f} ms"
        )
        if "bot_ms_per_call" in s:
            line += f"; bot {s['bot_ms_per_call']:.2f} ms/call apart"
        if ast_s and name != "asterisk":
            s["ratio"] = round(s["cpu_ms_per_call"] / max(1e-9, ast_s["cpu_ms_per_call"]), 2)
            line += f"; ratio node/Asterisk {s['ratio']:.2f}"
        print(line, flush=True)
    summary["workdir"] = str(tmp)
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


# -- make bench ---------------------------------------------------------------------------------------------------


def results_section(date: str, where: str) -> list[str]:
    """RESULTS.md lines (for bench/run.py): 100 calls/s for 20 s, 3 rounds each, alternating."""
    shown = "python bench/asterisk_ratio.py --rate 100 --seconds 20 --rounds 3"
    result = run_json("asterisk_ratio.py", *shown.split()[2:], timeout=1800)
    a, n = result["servers"]["asterisk"], result["servers"]["node"]
    rows = [
        ("node CPU per call / Asterisk's", f"{n['ratio']:.2f}", "<= 1.0 (moonshot 0.5)", ""),
        (
            "CPU per call: node / Asterisk",
            f"{n['cpu_ms_per_call']:.2f} / {a['cpu_ms_per_call']:.2f} ms",
            "-",
            f"bot {n['bot_ms_per_call']:.2f} ms per call apart (its own process)",
        ),
        (
            "calls ok / failed: node / Asterisk",
            f"{n['ok']}/{n['failed']} / {a['ok']}/{a['failed']}",
            "0 failed",
            f"retransmissions {n['retransmissions']} / {a['retransmissions']}",
        ),
        ("INVITE->200 p99: node / Asterisk", f"{n['invite_200_p99_ms']:.0f} / {a['invite_200_p99_ms']:.0f} ms", "", ""),
    ]
    return [
        "## Short calls against the Asterisk anchor (issue 16)",
        "",
        "The anchor's scenario (sipp/uac_short.xml via its bench_cps.sh): INVITE -> answer -> 1 s prompt -> the",
        "server's BYE. Asterisk 20 (chan_sip, dialplan Answer/Playback/Hangup) and the node (`opencomms serve`,",
        "SQLite)",
        "driven by an outside bot in its own process (Graph JSON only: answer, playPrompt of a 1 s WAV, DELETE on",
        "completion), alternating rounds in one run; CPU from /proc (median of the rounds), the bot's apart.",
        "",
        "| figure | value | target | notes | command | date | machine |",
        "|---|---|---|---|---|---|---|",
        *[f"| {f} | {v} | {t} | {notes} | `{shown}` | {date} | {where} |" for f, v, t, notes in rows],
    ]


# -- helpers run in the node's source tree (--node-src) -----------------------------------------------------------


def _setup_store(store_url: str, number: str) -> None:
    from opencomms.directory import Directory
    from opencomms.store import open_store

    store = open_store(store_url)
    directory = Directory(store)
    tenant = directory.create_tenant("Bench", "bench.example")
    app, secret = directory.create_app(tenant.id, "short", permissions=PERMISSIONS)
    directory.create_instance(app.id, "Short", phone_number=number)
    store.close()
    print(json.dumps([tenant.id, app.id, secret]))


def _set_callback(store_url: str, app_id: str, url: str) -> None:
    from opencomms.directory import Directory
    from opencomms.store import open_store

    store = open_store(store_url)
    directory = Directory(store)
    directory.update_app(replace(directory.require_app(app_id), callback_url=url))
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=100, help="calls per second offered by SIPp")
    parser.add_argument("--seconds", type=int, default=10, help="how long calls are started, per round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per server, alternating")
    parser.add_argument("--node-src", action="append", default=[], help="NAME=PATH of a src tree (repeatable)")
    parser.add_argument(
        "--node-python",
        action="append",
        default=[],
        help="NAME=PATH: the interpreter (of a venv with the server extras) that runs node NAME (default: this one)",
    )
    parser.add_argument(
        "--node-env",
        action="append",
        default=[],
        help="NAME=VARIABLE=VALUE: a setting for node NAME's environment, e.g. a=OPENCOMMS_LEDGER__GROUP_COMMIT=0.01",
    )
    parser.add_argument("--skip-asterisk", action="store_true", help="only the node(s), e.g. to compare two trees")
    parser.add_argument("--profile", default="", help="py-spy path: record each node round (raw) in the workdir")
    parser.add_argument("--keep", action="store_true", help="keep the workdir (SIPp logs, node logs, profiles)")
    parser.add_argument("--bot-process", help=argparse.SUPPRESS)
    parser.add_argument("--setup-store", help=argparse.SUPPRESS)
    parser.add_argument("--set-callback", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.setup_store:
        _setup_store(*json.loads(args.setup_store))
        return
    if args.set_callback:
        _set_callback(*json.loads(args.set_callback))
        return
    if args.bot_process:
        node, tenant, client_id, secret, port = json.loads(args.bot_process)
        import uvloop

        uvloop.run(bot_main(node, tenant, client_id, secret, int(port)))
        return
    if args.profile:
        args.keep = True
    print(json.dumps(run(args)))


if __name__ == "__main__":
    main()
