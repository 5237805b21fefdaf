"""Legitimate calls during an INVITE flood: what share of a quiet caller's calls still succeed.

Run: .venv/bin/python bench/sip_flood.py [--flood-rate 1000] [--seconds 20] [--rate 2] [--target ivr|silent]
     [--bot auto|ivr|builtin|CMD] [--max-calls 1000]

One `opencomms serve` node (SQLite store, SIP on UDP loopback) and the example IVR bot (as bench/sip_calls.py runs
them). From 127.0.0.2 a raw UDP sender sends new INVITEs at --flood-rate per second for --seconds and never reads
an answer, never ACKs, never hangs up; --target says whose number it floods: `ivr` (the answering bot, so each
admitted flood call is answered and then left unacknowledged) or `silent` (a second bot that takes notifications
and never answers, so admitted flood calls ring until the answer timeout). Meanwhile SIPp from 127.0.0.3 calls the
IVR at --rate calls/s (bench/sipp/uac_ivr.xml: INVITE, 200, ACK, 1 s hold, BYE). Prints the legitimate success
percentage (target >= 99 %) and the node's admission counters, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT), str(ROOT / "src")]

from sip_calls import NUMBER, PERMISSIONS, SCENARIO, BotProcess, _resolve_bot, free_port, wait_ready  # noqa: E402

SILENT_NUMBER = "+14255550199"
FLOOD_SOURCE = "127.0.0.2"
LEGIT_SOURCE = "127.0.0.3"
SDP = (
    b"v=0\r\no=flood 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
    b"m=audio 7078 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


class _Silent(BaseHTTPRequestHandler):
    """A bot that accepts every notification (202) and never answers a call."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


class Flooder(threading.Thread):
    """New INVITEs from FLOOD_SOURCE at `rate`/s to `number`; the answers are never read."""

    def __init__(self, port: int, number: str, rate: float, seconds: float) -> None:
        super().__init__(daemon=True)
        self.target = ("127.0.0.1", port)
        self.user = number.lstrip("+")
        self.rate = rate
        self.seconds = seconds
        self.sent = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((FLOOD_SOURCE, 0))
        self.port = int(self.sock.getsockname()[1])
        self.halt = threading.Event()

    def invite(self, n: int) -> bytes:
        tag = os.urandom(6).hex()
        head = (
            f"INVITE sip:{self.user}@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {FLOOD_SOURCE}:{self.port};branch=z9hG4bK{tag}{n};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:flood@{FLOOD_SOURCE}:{self.port}>;tag={tag}\r\n"
            f"To: <sip:{self.user}@127.0.0.1>\r\nCall-ID: flood-{tag}-{n}\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:flood@{FLOOD_SOURCE}:{self.port}>\r\nContent-Type: application/sdp\r\n"
            f"Content-Length: {len(SDP)}\r\n\r\n"
        )
        return head.encode() + SDP

    def run(self) -> None:
        start = time.monotonic()
        while not self.halt.is_set() and (elapsed := time.monotonic() - start) < self.seconds:
            due = int(elapsed * self.rate)
            while self.sent < due:
                self.sock.sendto(self.invite(self.sent), self.target)
                self.sent += 1
            time.sleep(0.001)
        self.sock.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    from tests.sipp.sipp import run_sipp

    from opencomms.directory import Directory
    from opencomms.store import open_store

    tmp = Path(tempfile.mkdtemp(prefix="opencomms-sipflood-"))
    store_url = f"sqlite:///{tmp / 'node.db'}"
    store = open_store(store_url)
    directory = Directory(store)
    tenant = directory.create_tenant("Bench", "bench.example")
    app, secret = directory.create_app(tenant.id, "ivr", permissions=PERMISSIONS)
    directory.create_instance(app.id, "Reception", phone_number=NUMBER)
    silent_server = ThreadingHTTPServer(("127.0.0.1", 0), _Silent)
    threading.Thread(target=silent_server.serve_forever, daemon=True).start()
    silent_url = f"http://127.0.0.1:{silent_server.server_address[1]}/silent"
    silent_app, _ = directory.create_app(tenant.id, "silent", permissions=PERMISSIONS, callback_url=silent_url)
    directory.create_instance(silent_app.id, "Silent", phone_number=SILENT_NUMBER)
    http_port, sip_port = free_port(), free_port()
    node_url = f"http://127.0.0.1:{http_port}"
    bot = BotProcess(_resolve_bot(args.bot), node_url, tenant.id, app.id, secret, tmp)
    directory.update_app(replace(directory.require_app(app.id), callback_url=bot.url))
    store.close()
    ready = tmp / "ready"
    env = {
        **os.environ,
        "OPENCOMMS_LOG_LEVEL": "warning",
        "OPENCOMMS_SIP__PORT": str(sip_port),
        "OPENCOMMS_SIP__HOST": "127.0.0.1",
        "OPENCOMMS_SIP__MAX_CALLS": str(args.max_calls),
        "OPENCOMMS_EGRESS__ALLOW": "127.0.0.1",  # the bots run on this host
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
    }
    node_log = (tmp / "node.log").open("wb")
    cmd = [sys.executable, "-m", "opencomms.cli.main", "serve", "--store", store_url, "--port", str(http_port)]
    node = subprocess.Popen([*cmd, "--ready-file", str(ready)], env=env, stderr=node_log, cwd=ROOT)
    flooder = Flooder(sip_port, NUMBER if args.target == "ivr" else SILENT_NUMBER, args.flood_rate, args.seconds)
    try:
        wait_ready(node, ready, tmp / "node.log")
        bot.go()
        time.sleep(0.5)
        flooder.start()
        time.sleep(1.0)  # the flood is on before the first legitimate call
        calls = int(args.rate * (args.seconds - 1.0))
        result = run_sipp(
            SCENARIO,
            "127.0.0.1",
            sip_port,
            calls=calls,
            rate=args.rate,
            service=NUMBER.lstrip("+"),
            call_duration_ms=1000,
            recv_timeout_ms=10_000,
            timeout=args.seconds + 60,
            workdir=tmp / "sipp",
            extra_args=["-i", LEGIT_SOURCE],
        )
        flooder.halt.set()
        flooder.join(5)
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(30)
        node_log.close()
        bot.stop()
        silent_server.shutdown()
    ok = result.successful
    return {
        "bench": "sip_flood",
        "flood_rate": args.flood_rate,
        "flood_target": args.target,
        "flood_sent": flooder.sent,
        "seconds": args.seconds,
        "legit_rate": args.rate,
        "legit_calls": calls,
        "legit_ok": ok,
        "legit_failed": result.failed,
        "legit_success_pct": round(100.0 * ok / calls, 2) if calls else 0.0,
        "invite_p50_ms": _pct(result.response_times_ms.get("invite", []), 0.5),
        "invite_p99_ms": _pct(result.response_times_ms.get("invite", []), 0.99),
    }


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flood-rate", type=float, default=1000.0, help="INVITEs per second from 127.0.0.2")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the flood lasts")
    parser.add_argument("--rate", type=float, default=2.0, help="legitimate calls per second from 127.0.0.3")
    parser.add_argument("--target", choices=("ivr", "silent"), default="ivr", help="whose number is flooded")
    parser.add_argument("--bot", default="auto", help="the answering bot (see bench/sip_calls.py)")
    parser.add_argument("--max-calls", type=int, default=1000, help="node's sip.max_calls")
    r = run(parser.parse_args())
    print(
        f"legitimate calls: {r['legit_ok']} of {r['legit_calls']} succeeded ({r['legit_success_pct']:g} %) during a "
        f"{r['flood_rate']:g} INVITE/s flood ({r['flood_sent']} sent, to the {r['flood_target']} bot) from another "
        f"address; INVITE->200 p50/p99 {r['invite_p50_ms']}/{r['invite_p99_ms']} ms"
    )
    print(json.dumps(r))


if __name__ == "__main__":
    main()
