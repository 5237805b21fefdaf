"""SIP gateway benchmark: calls per second from SIPp into an IVR bot, through one `opencomms serve` node.

Run: .venv/bin/python bench/sip_calls.py [--rate 200] [--seconds 60] [--hold-ms 1500] [--bot auto|ivr|builtin|CMD]
     [--profile .venv/bin/py-spy] [--cprofile node.prof]

One call: SIPp's INVITE (bench/sipp/uac_ivr.xml) to the bot's number -> the node rings the bot (incoming-call
notification over its webhook) -> the bot answers with serviceHostedMediaConfig -> 200 OK -> ACK -> the bot
plays its prompt (the IVR its menu's welcome, text-to-speech; the built-in bot a WAV it serves; either way the
node makes it once and caches it) -> after --hold-ms SIPp hangs up (BYE -> 200). Three processes on loopback:
the node (SQLite store, SIP on a free UDP port), the bot (a webhook validating every callback JWT against the
node's JWKS, its own REST client) and SIPp (-r rate, -m rate*seconds calls). INVITE -> 200 OK is SIPp's
response-time measurement (`rtd`, -trace_rtt, 1 ms resolution).

The bot is pluggable (--bot): `ivr` is the example IVR (`python -m examples.ivr`: answers, speaks its menu with
text-to-speech prompts, waits for keys); `builtin` is the minimal bot in this file (answers, plays a 0.6 s WAV
it serves); any other value is a shell command template for a bot of your own ({python} {node} {tenant}
{client_id} {port} {workdir} substituted, the secret in BOT_SECRET; it must serve
http://127.0.0.1:{port}/api/calls). `auto` (default): `ivr` when examples/ivr exists, else `builtin`. Bots other
than `builtin` report no counts, only their CPU. Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NUMBER = "+14255550100"
SCENARIO = HERE / "sipp" / "uac_ivr.xml"
PERMISSIONS = ["Calls.Initiate.All", "Calls.AccessMedia.All"]
SERVICE_HOSTED = {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def free_port() -> int:
    """A port free on 127.0.0.1 for UDP and TCP (the node's SIP listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise SystemExit("no free port on 127.0.0.1")


def wait_ready(node: subprocess.Popen[bytes], ready: Path, log: Path) -> None:
    """Wait for the node's --ready-file; exit with its log when it dies first."""
    while not ready.exists():
        if node.poll() is not None:
            raise SystemExit(log.read_text())
        time.sleep(0.05)


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process (Linux /proc), 0 when unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the built-in bot (its own process) ---------------------------------------------------------------------------


def _prompt_wav(seconds: float = 0.6) -> bytes:
    """A short prompt: two tones, 16 kHz mono, as a WAV file."""
    import numpy as np

    t = np.arange(int(16000 * seconds)) / 16000
    audio = 6000 * np.sin(2 * np.pi * 440 * t) * (t < seconds / 2) + 6000 * np.sin(2 * np.pi * 660 * t) * (
        t >= seconds / 2
    )
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(audio.astype(np.int16).tobytes())
    return buf.getvalue()


class Bot:
    """A minimal IVR bot: answers every incoming call (service-hosted media), plays one prompt once the call is
    established, and counts what happened. Every callback's JWT is validated (RS256, audience = the app, issuer,
    tid) against the node's JWKS, as a real bot must."""

    def __init__(self, node: str, tenant: str, client_id: str, secret: str) -> None:
        self.node, self.tenant, self.client_id, self.secret = node, tenant, client_id, secret
        self.url = ""
        self.prompt_url = ""
        self.token = ""
        self.keys: dict[str, Any] = {}
        self.counts = {
            "notifications": 0,
            "rejected_tokens": 0,
            "incoming": 0,
            "answered": 0,
            "answer_errors": 0,
            "established": 0,
            "prompts": 0,
            "prompt_errors": 0,
            "prompts_completed": 0,
            "terminated": 0,
        }
        self.answer_ms: list[float] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.wav = _prompt_wav()

    async def start(self, port: int) -> None:
        import aiohttp
        from aiohttp import web

        app = web.Application()
        app.router.add_post("/api/calls", self.handle)
        app.router.add_get("/prompt.wav", self.prompt)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port, backlog=1024)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/api/calls"
        self.prompt_url = f"http://127.0.0.1:{port}/prompt.wav"
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def login(self) -> None:
        import jwt

        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.secret,
            "scope": f"{self.node}/.default",
        }
        async with self.session.post(f"{self.node}/{self.tenant}/oauth2/v2.0/token", data=form) as resp:
            self.token = (await resp.json())["access_token"]
        async with self.session.get(f"{self.node}/common/discovery/v2.0/keys") as resp:
            for key in (await resp.json())["keys"]:
                self.keys[key["kid"]] = jwt.PyJWK(key).key

    async def prompt(self, _request: Any) -> Any:
        from aiohttp import web

        return web.Response(body=self.wav, content_type="audio/wav")

    def _valid(self, auth: str) -> bool:
        import jwt

        token = auth.removeprefix("Bearer ")
        try:
            key = self.keys[jwt.get_unverified_header(token)["kid"]]
            claims = jwt.decode(
                token, key, algorithms=["RS256"], audience=self.client_id, issuer="https://api.botframework.com"
            )
        except (jwt.InvalidTokenError, KeyError):
            return False
        return "tid" in claims

    async def handle(self, request: Any) -> Any:
        from aiohttp import web

        if not self._valid(request.headers.get("Authorization", "")):
            self.counts["rejected_tokens"] += 1
            return web.Response(status=401)
        body = await request.json()
        for item in body.get("value", []):
            self.counts["notifications"] += 1
            url: str = item.get("resourceUrl", "")
            data = item.get("resourceData") or {}
            parts = url.split("/")
            call_id = parts[3] if len(parts) > 3 else ""
            if "/operations/" in url:
                if data.get("status") == "completed":
                    self.counts["prompts_completed"] += 1
                    self.prompt_completed(call_id)
                continue
            state = data.get("state")
            if item.get("changeType") == "created" and state == "incoming":
                self.counts["incoming"] += 1
                self._spawn(self.answer(call_id))
            elif state == "established":
                self.counts["established"] += 1
                self._spawn(self.play(call_id))
            elif item.get("changeType") == "deleted":
                self.counts["terminated"] += 1
        return web.Response(status=202)

    def prompt_completed(self, call_id: str) -> None:
        """A prompt of the call has played (a subclass may act on it)."""

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _post(self, path: str, body: dict[str, Any]) -> int:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.session.post(f"{self.node}/v1.0/communications/calls/{path}", json=body, headers=headers) as r:
            await r.read()
            return r.status

    async def stop(self) -> None:
        """Let the requests under way finish (5 s at most), then close the client and the webhook server."""
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=5)
        await self.session.close()
        await self.runner.cleanup()

    async def answer(self, call_id: str) -> None:
        t0 = time.perf_counter()
        body = {"callbackUri": self.url, "acceptedModalities": ["audio"], "mediaConfig": SERVICE_HOSTED}
        status = await self._post(f"{call_id}/answer", body)
        self.answer_ms.append((time.perf_counter() - t0) * 1000.0)
        self.counts["answered" if status == 202 else "answer_errors"] += 1

    async def play(self, call_id: str) -> None:
        media = {"@odata.type": "#microsoft.graph.mediaInfo", "uri": self.prompt_url, "resourceId": "welcome"}
        body = {
            "clientContext": "bench",
            "prompts": [{"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": media}],
        }
        status = await self._post(f"{call_id}/playPrompt", body)
        # 404: the caller hung up first (the call is gone); anything else is an error
        self.counts["prompts" if status in (200, 201, 202) else "prompt_errors"] += 1


async def stdin_reader() -> asyncio.StreamReader:
    """The bot process's stdin, read on the event loop (the driver's "go" / "stop" lines)."""
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def bot_main(node: str, tenant: str, client_id: str, secret: str, port: int) -> None:
    """Run the built-in bot until stdin closes or says "stop"; print its URL first and its counts last."""
    bot = Bot(node, tenant, client_id, secret)
    await bot.start(port)
    print(json.dumps({"url": bot.url, "prompt": bot.prompt_url}), flush=True)
    reader = await stdin_reader()
    await reader.readline()  # "go": the node is up
    await bot.login()
    await reader.readline()  # "stop" (or EOF)
    await bot.stop()
    print(
        json.dumps(
            {
                **bot.counts,
                "answer_rest_p50_ms": round(pct(bot.answer_ms, 0.5), 2),
                "answer_rest_p99_ms": round(pct(bot.answer_ms, 0.99), 2),
                "bot_cpu_s": round(time.process_time(), 2),
            }
        ),
        flush=True,
    )


# -- the driver ------------------------------------------------------------------------------------------------


BOT_NAMES = {
    "ivr": "the example IVR (`python -m examples.ivr`, speaks its menu.yaml welcome with text-to-speech)",
    "builtin": "bench/sip_calls.py's minimal bot (answers, plays a 0.6 s WAV)",
}
IVR_BOT = (
    "{python} -m examples.ivr --node {node} --tenant {tenant} --app-id {client_id} --listen 127.0.0.1:{port}"
    " --voicemail-dir {workdir}/voicemail"
)
"""The example IVR (examples/ivr): answers, speaks its menu (text-to-speech prompts), waits for keys."""


def _resolve_bot(choice: str) -> str:
    if choice == "auto":
        return "ivr" if (ROOT / "examples" / "ivr" / "__main__.py").is_file() else "builtin"
    return choice


class BotProcess:
    """The bot in its own process: the built-in one (JSON over stdin/stdout) or a command (`ivr` or a template
    with {python} {node} {tenant} {client_id} {port} {workdir}; the secret is in BOT_SECRET, as the examples
    read it, with OPENCOMMS_URL, BOT_TENANT, BOT_APP_ID and IVR_OPERATOR_APP_ID)."""

    def __init__(
        self,
        choice: str,
        node: str,
        tenant: str,
        client_id: str,
        secret: str,
        workdir: Path,
        *,
        new_session: bool = False,
    ) -> None:
        """`new_session`: the built-in bot in a session (so a scheduling autogroup) of its own."""
        self.builtin = choice == "builtin"
        port = free_port()
        self.port = port
        self.url = f"http://127.0.0.1:{port}/api/calls"
        self.proc: subprocess.Popen[str] | None = None
        if self.builtin:
            spec = json.dumps([node, tenant, client_id, secret, port])  # one argument: a secret may start with "-"
            cmd = [sys.executable, __file__, "--bot-process", spec]
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=new_session
            )
            assert self.proc.stdout is not None
            self.url = json.loads(self.proc.stdout.readline())["url"]
            return
        template = IVR_BOT if choice == "ivr" else choice
        self.cmd = "exec " + template.format(
            python=shlex.quote(sys.executable),
            node=node,
            tenant=tenant,
            client_id=client_id,
            port=port,
            workdir=shlex.quote(str(workdir)),
        )
        self.env = {
            **os.environ,
            "OPENCOMMS_URL": node,
            "BOT_TENANT": tenant,
            "BOT_APP_ID": client_id,
            "BOT_SECRET": secret,
            "IVR_OPERATOR_APP_ID": client_id,
        }

    def go(self) -> None:
        """The node is up: the built-in bot logs in; a command bot starts (and is waited for until it listens)."""
        if self.builtin:
            assert self.proc is not None and self.proc.stdin is not None
            self.proc.stdin.write("go\n")
            self.proc.stdin.flush()
            return
        log = open(os.devnull, "w")  # noqa: SIM115 - the bot's own logging is not part of the figures
        self.proc = subprocess.Popen(
            self.cmd, shell=True, cwd=ROOT, env=self.env, start_new_session=True, stdout=log, stderr=log, text=True
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait until its webhook listens
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise SystemExit(f"the bot did not listen on port {self.port}: {self.cmd}")

    def stop(self) -> dict[str, Any]:
        assert self.proc is not None
        if self.builtin:
            out, _ = self.proc.communicate("stop\n", timeout=30)
            result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
            return result
        cpu = _cpu_seconds(self.proc.pid)
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(10)
        return {"bot_cpu_s": round(cpu, 2)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from tests.sipp.sipp import run_sipp

    from opencomms.directory import Directory
    from opencomms.store import open_store

    tmp = Path(tempfile.mkdtemp(prefix="opencomms-sipbench-"))
    store_url = f"sqlite:///{tmp / 'node.db'}"
    store = open_store(store_url)
    directory = Directory(store)
    tenant = directory.create_tenant("Bench", "bench.example")
    app, secret = directory.create_app(tenant.id, "ivr", permissions=PERMISSIONS)
    directory.create_instance(app.id, "Reception", phone_number=NUMBER)
    http_port, sip_port = free_port(), free_port()
    node_url = f"http://127.0.0.1:{http_port}"
    bot = BotProcess(_resolve_bot(args.bot), node_url, tenant.id, app.id, secret, tmp)
    from dataclasses import replace

    directory.update_app(replace(directory.require_app(app.id), callback_url=bot.url))
    store.close()
    ready = tmp / "ready"
    env = {
        **os.environ,
        "OPENCOMMS_LOG_LEVEL": "warning",
        "OPENCOMMS_SIP__PORT": str(sip_port),
        "OPENCOMMS_SIP__HOST": "127.0.0.1",
        "OPENCOMMS_SIP__MAX_CALLS": str(args.max_calls),
        "OPENCOMMS_EGRESS__ALLOW": "127.0.0.1,::1",  # the IVR bot and its prompts on loopback
    }
    node_log = (tmp / "node.log").open("wb")
    cmd = [sys.executable, "-m", "opencomms.cli.main", "serve", "--store", store_url, "--port", str(http_port)]
    if args.cprofile:  # deterministic profile of the whole node run (written when it exits)
        cmd[1:2] = ["-m", "cProfile", "-o", args.cprofile, "-m"]
    node = subprocess.Popen([*cmd, "--ready-file", str(ready)], env=env, stderr=node_log, cwd=ROOT)
    try:
        wait_ready(node, ready, tmp / "node.log")
        bot.go()
        time.sleep(0.5)
        if args.profile:
            prof = subprocess.Popen(
                [
                    args.profile,
                    "record",
                    "-p",
                    str(node.pid),
                    "-o",
                    str(tmp / "profile.txt"),
                    "-f",
                    "raw",
                    "-r",
                    "50",
                    "-d",
                    str(int(args.seconds)),
                    "--threads",
                ]
            )
        cpu0, wall0 = _cpu_seconds(node.pid), time.monotonic()
        calls = int(args.rate * args.seconds)
        result = run_sipp(
            SCENARIO,
            "127.0.0.1",
            sip_port,
            calls=calls,
            rate=args.rate,
            service=NUMBER.lstrip("+"),
            call_duration_ms=args.hold_ms,
            recv_timeout_ms=10000,
            max_concurrent=args.max_calls,
            timeout=args.seconds + 60,
            workdir=tmp / "sipp",
        )
        wall = time.monotonic() - wall0
        node_cpu = _cpu_seconds(node.pid) - cpu0
        if args.profile:
            prof.wait(30)
    finally:
        # uvicorn re-raises SIGTERM after shutting down; under cProfile, SIGINT lets the profile be written
        node.send_signal(signal.SIGINT if args.cprofile else signal.SIGTERM)
        node.wait(30)
        node_log.close()
    bot_stats = bot.stop()
    invite = result.response_times_ms.get("invite", [])
    return {
        "bench": "sip_calls",
        "offered_rate": args.rate,
        "seconds": args.seconds,
        "hold_ms": args.hold_ms,
        "calls": calls,
        "successful": result.successful,
        "failed": result.failed,
        "sipp_returncode": result.returncode,
        "completed_per_s": round(result.successful / args.seconds, 1),  # calls started per second that succeeded
        "invite_200_p50_ms": pct(invite, 0.5),
        "invite_200_p99_ms": pct(invite, 0.99),
        "invite_200_max_ms": max(invite) if invite else float("nan"),
        "invite_samples": len(invite),
        "retransmissions": result.counter("Retransmissions"),
        "failed_timeouts": result.counter("FailedTimeoutOnRecv"),
        "unexpected": result.counter("FailedUnexpectedMessage"),
        "node_cpu_cores": round(node_cpu / wall, 3),
        "wall_s": round(wall, 1),
        "bot": _resolve_bot(args.bot),
        **bot_stats,
        "node_log_errors": sum(1 for line in (tmp / "node.log").read_text().splitlines() if '"error"' in line),
        "workdir": str(tmp),
        "command": " ".join(result.command),
    }


FALLBACK_RATES = (175, 150, 125, 100, 75, 50, 25)
"""Rates tried (20 s each) when the target rate has failures, to report the highest one with none."""


def _run_cli(args: list[str]) -> dict[str, Any]:
    from _common import run_json

    result = run_json("sip_calls.py", *args, timeout=900)
    print({k: v for k, v in result.items() if k not in ("command", "workdir", "_stdout")}, flush=True)
    return result


def _row(r: dict[str, Any], shown: str, date: str, where: str) -> str:
    ok = r["failed"] == 0 and r["successful"] == r["calls"]
    figure = f"{r['offered_rate']:g} calls/s for {r['seconds']:g} s" + ("" if ok else " (NOT sustained)")
    notes = (
        f"{r['successful']} of {r['calls']} calls ok, {r['failed']} failed, {r['retransmissions']} retransmissions; "
        f"node CPU {r['node_cpu_cores']} cores"
    )
    if "incoming" in r:
        notes += f"; bot: {r['incoming']} incoming, {r['answered']} answered, {r['prompts_completed']} prompts done"
    latency = f"{r['invite_200_p50_ms']:.0f} / {r['invite_200_p99_ms']:.0f} ms"
    return f"| {figure} | {latency} | >= 200 calls/s, 0 failed | {notes} | `{shown}` | {date} | {where} |"


def results_section(date: str, where: str) -> list[str]:
    """RESULTS.md lines (for bench/run.py): 60 s at 200 calls/s; if that has failures, the highest of
    FALLBACK_RATES with none in 20 s, then that rate for 60 s."""
    rows = []
    target = _run_cli(["--rate", "200", "--seconds", "60"])
    rows.append(_row(target, "python bench/sip_calls.py --rate 200 --seconds 60", date, where))
    if target["failed"] or target["successful"] != target["calls"]:
        for rate in FALLBACK_RATES:
            probe = _run_cli(["--rate", str(rate), "--seconds", "20"])
            if probe["failed"] == 0 and probe["successful"] == probe["calls"]:
                sustained = _run_cli(["--rate", str(rate), "--seconds", "60"])
                rows.append(_row(sustained, f"python bench/sip_calls.py --rate {rate} --seconds 60", date, where))
                break
            rows.append(_row(probe, f"python bench/sip_calls.py --rate {rate} --seconds 20", date, where))
    return [
        "## SIP gateway: calls per second from SIPp into an IVR bot",
        "",
        "One call: SIPp INVITE (bench/sipp/uac_ivr.xml) -> the node rings the bot (incoming notification over its",
        "webhook) -> the bot answers (serviceHostedMediaConfig) -> 200 OK -> ACK -> the bot plays its prompt",
        "-> 1.5 s hold -> BYE. Node = `opencomms serve` (SQLite store, SIP on UDP loopback, RTP to SIPp) in its own",
        f"process; bot = {BOT_NAMES.get(target['bot'], target['bot'])} in a second (validates every callback JWT);",
        "SIPp in a third; all on the same 2 shared cores. INVITE -> 200 OK is SIPp's response time (1 ms resolution).",
        "Rows after the first: the highest rate without failures (20 s probes), then that rate for 60 s.",
        "",
        "| figure | INVITE -> 200 p50 / p99 | target | notes | command | date | machine |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="calls per second offered by SIPp")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long calls are started")
    parser.add_argument("--hold-ms", type=int, default=1500, help="time between ACK and BYE")
    parser.add_argument("--max-calls", type=int, default=1000, help="node's sip.max_calls and SIPp's -l")
    parser.add_argument("--bot", default="auto", help="auto, builtin or a command template (see the docstring)")
    parser.add_argument(
        "--profile", default="", help="path of py-spy: record the node (collapsed stacks, profile.txt in the workdir)"
    )
    parser.add_argument("--cprofile", default="", help="run the node under cProfile, writing this file")
    parser.add_argument("--bot-process", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bot_process:
        node, tenant, client_id, secret, port = json.loads(args.bot_process)
        try:
            import uvloop

            uvloop.run(bot_main(node, tenant, client_id, secret, int(port)))
        except ImportError:  # pragma: no cover
            asyncio.run(bot_main(node, tenant, client_id, secret, int(port)))
        return
    print(json.dumps(run(args)))


if __name__ == "__main__":
    main()
