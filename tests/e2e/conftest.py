"""Helpers to run `opencomms` as real processes: the CLI and `opencomms serve` on a SQLite store."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CLI = [sys.executable, "-m", "opencomms.cli.main"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(store: str, *args: str) -> Any:
    out = subprocess.run([*CLI, *args, "--store", store, "--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@contextmanager
def serve(
    store: str, port: int, tmp: Path, *extra: str, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """`opencomms serve` as a child process; yields once it listens, kills it (if still alive) on exit."""
    ready = tmp / f"ready-{port}-{time.monotonic_ns()}"
    log = open(tmp / f"node-{port}.log", "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [*CLI, "serve", "--store", store, "--port", str(port), "--ready-file", str(ready), *extra],
        stdout=log,
        stderr=log,
        env={
            **os.environ,
            "OPENCOMMS_LOG_FORMAT": "text",
            "OPENCOMMS_SIP__PORT": "0",
            "OPENCOMMS_EGRESS__ALLOW": "127.0.0.1,::1",  # the bots run on loopback
            **(env or {}),
        },
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"node exited: {(tmp / f'node-{port}.log').read_text()}")
            if time.monotonic() > deadline:
                raise TimeoutError("node did not start")
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'node.db'}"
