"""Run baresip headless on loopback and drive it from asyncio tests.

baresip 1.0 reads ``config`` and ``accounts`` from the directory given with ``-f``. We load only what a test
needs: ``g711`` (PCMU/PCMA), ``ausine`` as the microphone (a 440 Hz tone), ``aubridge`` as the loudspeaker (a
sink nobody reads), ``account``, ``menu`` (the commands), ``ctrl_tcp`` (JSON commands and events in netstrings:
``{"command": "dial", "params": "sip:...", "token": "1"}`` in, ``{"event": true, "type": "CALL_ESTABLISHED",
...}`` and ``{"response": true, "token": "1", ...}`` out) and ``cons`` (a UDP console: single key presses, which
is how menu sends DTMF during a call). SIP listens on 127.0.0.1 only, on a free port.

Everything is bounded: :meth:`Baresip.start` waits at most a few seconds for the control socket, every wait has a
timeout, and :meth:`Baresip.stop` (or leaving ``async with``) asks baresip to quit, then kills it, and removes the
working directory it made (failures quote baresip's log before that).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.ports import LOOPBACK, free_port

MODULES = ("g711", "ausine", "aubridge", "account", "menu", "ctrl_tcp", "cons")


def baresip_available() -> bool:
    return shutil.which("baresip") is not None


@dataclass
class Baresip:
    """One baresip process with one account line (``<sip:user@host:port>;auth_pass=...;answermode=...``)."""

    account: str
    workdir: Path | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    sip_port: int = 0
    _process: subprocess.Popen[bytes] | None = None
    _reader: asyncio.StreamReader | None = None
    _writer: asyncio.StreamWriter | None = None
    _task: asyncio.Task[None] | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _responses: dict[str, dict[str, Any]] = field(default_factory=dict)
    _token: int = 0
    _cons_port: int = 0
    _own_workdir: bool = False

    async def start(self, timeout: float = 5.0, attempts: int = 3) -> Baresip:
        """Start baresip and connect to its control socket (within `timeout` seconds, else RuntimeError).
        baresip also binds ports we do not choose (SIP over TLS next to SIP): a start that loses such a port to
        another process is retried on fresh ports."""
        for attempt in range(attempts):
            ctrl_port = self._spawn()
            process = self._process
            assert process is not None
            deadline = asyncio.get_running_loop().time() + timeout
            while True:
                try:
                    self._reader, self._writer = await asyncio.open_connection(LOOPBACK, ctrl_port)
                    self._task = asyncio.create_task(self._read())
                    return self
                except OSError:
                    if process.poll() is not None or asyncio.get_running_loop().time() > deadline:
                        break
                    await asyncio.sleep(0.05)
            log = self.log()
            await self.stop()
            if "Address already in use" not in log or attempt == attempts - 1:
                raise RuntimeError(f"baresip did not start: {log[-2000:]}")
        raise AssertionError("unreachable")

    def _spawn(self) -> int:
        """Write config and accounts, start the process; the control port."""
        binary = shutil.which("baresip")
        if binary is None:
            raise RuntimeError("baresip is not installed (Debian package baresip)")
        if self.workdir is None:
            self._own_workdir = True
        directory = self.workdir or Path(tempfile.mkdtemp(prefix="baresip-"))
        directory.mkdir(parents=True, exist_ok=True)
        self.workdir = directory
        ctrl_port = free_port()
        self._cons_port = free_port()
        self.sip_port = free_port()
        lines = [
            "poll_method epoll",
            f"sip_listen {LOOPBACK}:{self.sip_port}",
            f"net_interface {LOOPBACK}",
            "module_path /usr/lib/baresip/modules",
            *(f"module {name}.so" for name in MODULES),
            f"ctrl_tcp_listen {LOOPBACK}:{ctrl_port}",
            f"cons_listen {LOOPBACK}:{self._cons_port}",
            "audio_player aubridge,speaker",
            "audio_source ausine,440",
            "ausrc_srate 48000",
            "ausrc_channels 2",
            "audio_alert aubridge,speaker",
            "rtp_timeout 0",
        ]
        (directory / "config").write_text("\n".join(lines) + "\n")
        (directory / "accounts").write_text(self.account + "\n")
        (directory / "contacts").write_text("")
        with open(directory / "baresip.log", "wb") as log:
            self._process = subprocess.Popen(
                [binary, "-f", str(directory), "-v"], stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        return ctrl_port

    async def _read(self) -> None:
        assert self._reader is not None
        try:
            while True:
                size = await self._reader.readuntil(b":")
                payload = await self._reader.readexactly(int(size[:-1]) + 1)  # data and the trailing ','
                message = json.loads(payload[:-1])
                async with self._changed:
                    if message.get("response"):
                        self._responses[str(message.get("token"))] = message
                    else:
                        self.events.append(message)
                    self._changed.notify_all()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            return

    async def command(self, command: str, params: str = "", *, timeout: float = 5.0) -> dict[str, Any]:
        """A long command of the menu module (``dial``, ``hangup``, ``accept``, ``reginfo``…); its response."""
        assert self._writer is not None
        self._token += 1
        token = str(self._token)
        data = json.dumps({"command": command, "params": params, "token": token}).encode()
        self._writer.write(str(len(data)).encode() + b":" + data + b",")
        await self._writer.drain()
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: token in self._responses), timeout)
        return self._responses.pop(token)

    def keys(self, text: str) -> None:
        """Key presses on the console (during a call, digits and # * are sent as DTMF)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for key in text:
                sock.sendto(key.encode(), (LOOPBACK, self._cons_port))

    async def event(self, kind: str, *, timeout: float = 10.0, after: int = 0) -> dict[str, Any]:
        """The first event of type ``kind`` (e.g. ``REGISTER_OK``, ``CALL_ESTABLISHED``, ``CALL_CLOSED``) at
        index ``after`` or later in :attr:`events`."""

        def found() -> dict[str, Any] | None:
            return next((e for e in self.events[after:] if e.get("type") == kind), None)

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: found() is not None), timeout)
            except TimeoutError:
                raise AssertionError(
                    f"baresip: no {kind} within {timeout} s; events {[e.get('type') for e in self.events]}\n"
                    + self.log()[-3000:]
                ) from None
        event = found()
        assert event is not None
        return event

    def log(self) -> str:
        if self.workdir is None:
            return ""
        with contextlib.suppress(OSError):
            return (self.workdir / "baresip.log").read_text(errors="replace")
        return ""

    async def stop(self) -> None:
        if self._writer is not None and self._process is not None and self._process.poll() is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.command("quit", timeout=1), 1.5)
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        process = self._process
        if process is not None:
            try:
                await asyncio.to_thread(process.wait, 2)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait, 5)
            self._process = None
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    async def __aenter__(self) -> Baresip:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
