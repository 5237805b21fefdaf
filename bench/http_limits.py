"""Benchmark: huge HTTP headers against one `opencomms serve` node (issue 14 item 3).

For --seconds, attackers stream --header-mib MiB header lines (reconnecting after each refusal) while --clients
other clients fetch /healthz on fresh connections from their own loopback addresses. Reports when and after how
many bytes the node refused each header, how the other clients fared, the node's RSS growth and the media engine's
skipped ticks. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))


async def healthz(port: int) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = await reader.read()
    writer.close()
    return dict(json.loads(data.split(b"\r\n\r\n", 1)[1]))


def attack(port: int, size: int, source: str) -> tuple[float, int, int]:
    """One header of `size` bytes on a blocking socket, read by a second thread as the answer comes:
    (seconds until the answer, bytes sent before the node reset the connection, status)."""
    sock = socket.create_connection(("127.0.0.1", port), source_address=(source, 0))
    chunk = b"a" * (64 << 10)
    start = time.perf_counter()
    answer: list[tuple[float, bytes]] = []

    def read() -> None:
        try:
            data = sock.recv(4096)
        except OSError:
            data = b""
        answer.append((time.perf_counter() - start, data))

    reader = threading.Thread(target=read)
    reader.start()
    sent = 0
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        while sent < size:
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass
    reader.join(300)
    sock.close()
    took, data = answer[0] if answer else (0.0, b"")
    status = int(data.split()[1]) if data.startswith(b"HTTP/1.1 ") else 0
    return took, sent, status


async def client(port: int, source: str, until: float, latencies: list[float], failures: list[str]) -> None:
    while time.perf_counter() < until:
        start = time.perf_counter()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            if not data.startswith(b"HTTP/1.1 200"):
                failures.append(data[:40].decode(errors="replace"))
            else:
                latencies.append(time.perf_counter() - start)
        except (OSError, TimeoutError) as exc:
            failures.append(type(exc).__name__)
        await asyncio.sleep(0.05)


async def run(args: argparse.Namespace, port: int, pid: int) -> dict[str, Any]:
    before = await healthz(port)
    rss_before = rss_kib(pid)
    until = time.perf_counter() + args.seconds
    latencies: list[float] = []
    failures: list[str] = []
    clients = [
        asyncio.create_task(client(port, f"127.0.1.{i + 1}", until, latencies, failures)) for i in range(args.clients)
    ]
    results: list[tuple[float, int, int]] = []

    async def attacker(n: int) -> None:
        while time.perf_counter() < until:
            results.append(await asyncio.to_thread(attack, port, args.header_mib << 20, f"127.0.2.{n + 1}"))

    await asyncio.gather(*(attacker(n) for n in range(args.attackers)), *clients)
    after = await healthz(port)
    latencies.sort()
    refused = [r for r in results if r[2] == 431]
    return {
        "headers_sent": len(results),
        "refused_431": len(refused),
        "refused_after_ms_max": round(max((r[0] for r in results), default=0) * 1000, 1),
        "kib_sent_before_reset_max": max((r[1] for r in results), default=0) >> 10,
        "client_requests": len(latencies) + len(failures),
        "client_failures": len(failures),
        "client_p50_ms": round(latencies[len(latencies) // 2] * 1000, 1) if latencies else None,
        "client_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1) if latencies else None,
        "rss_growth_mib": round((rss_kib(pid) - rss_before) / 1024, 1),
        "skipped_ticks": after["media"]["skipped_ticks"] - before["media"]["skipped_ticks"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the attack lasts")
    parser.add_argument("--header-mib", type=int, default=64, help="size of each header line, MiB")
    parser.add_argument("--attackers", type=int, default=1, help="attacking connections at once")
    parser.add_argument("--clients", type=int, default=12, help="other clients fetching /healthz")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="opencomms-http-limits-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ready = tmp / "ready"
    env = {**os.environ, "OPENCOMMS_LOG_LEVEL": "warning", "OPENCOMMS_SIP__ENABLED": "false"}
    node_log = (tmp / "node.log").open("wb")
    cmd = [sys.executable, "-m", "opencomms.cli.main", "serve", "--store", "memory://", "--port", str(port)]
    node = subprocess.Popen([*cmd, "--ready-file", str(ready)], env=env, stderr=node_log)
    try:
        while not ready.exists():
            if node.poll() is not None:
                raise SystemExit((tmp / "node.log").read_text())
            time.sleep(0.05)
        result = asyncio.run(run(args, port, node.pid))
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(10)
        node_log.close()
    print(json.dumps({"bench": "http_limits", "header_mib": args.header_mib, **result}))


if __name__ == "__main__":
    main()
