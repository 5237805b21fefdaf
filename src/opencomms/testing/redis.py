"""A real, throwaway redis-server on a free loopback port, for tests of stateless bots (no persistence).

    with RedisServer() as server:            # or: async with redis_server() as url:
        state = RedisCallState(server.url)

The server stops (SIGTERM, then SIGKILL) on exit, and dies with the test process's session anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process on 127.0.0.1 (`executable` must be on PATH or given)."""

    def __init__(self, executable: str = "redis-server", *, startup_timeout: float = 5.0) -> None:
        path = shutil.which(executable)
        if path is None:
            raise FileNotFoundError(f"{executable} not found: install Redis to run these tests")
        self.executable = path
        self.startup_timeout = startup_timeout
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _spawn(self) -> None:
        self.port = _free_port()
        argv = [self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        argv += ["--daemonize", "no", "--loglevel", "warning"]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def _ready(self) -> bool | None:
        """True when answering, False while starting, None if the process died (port taken: try another)."""
        assert self.process is not None
        if self.process.poll() is not None:
            return None
        return _ping(self.port)

    def start(self) -> RedisServer:
        for _ in range(3):
            self._spawn()
            deadline = time.monotonic() + self.startup_timeout
            while time.monotonic() < deadline:
                state = self._ready()
                if state:
                    return self
                if state is None:
                    break
                time.sleep(0.02)
            self.stop()
        raise RuntimeError("redis-server did not start")

    async def astart(self) -> RedisServer:
        """As `start`, without blocking the event loop while Redis starts."""
        for _ in range(3):
            self._spawn()
            deadline = time.monotonic() + self.startup_timeout
            while time.monotonic() < deadline:
                state = await asyncio.to_thread(self._ready)
                if state:
                    return self
                if state is None:
                    break
                await asyncio.sleep(0.02)
            self.stop()
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr is not None:
            with contextlib.suppress(OSError):
                proc.stderr.close()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@asynccontextmanager
async def redis_server(executable: str = "redis-server") -> AsyncIterator[str]:
    """Start a throwaway redis-server; yields its URL (`redis://127.0.0.1:PORT/0`)."""
    server = RedisServer(executable)
    await server.astart()
    try:
        yield server.url
    finally:
        await asyncio.to_thread(server.stop)
