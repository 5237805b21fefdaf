"""RtpEngineDaemon: the rtpengine process the node (or a test) starts for itself, on a generated configuration.

Owns: the configuration file (one interface, the ng control socket, the RTP port range, userspace forwarding:
`table = -1`, no kernel module, `num-threads`, SCHED_FIFO when asked), the Opus tuning library it preloads
(gateway/opus_tuning.py), the child process (killed with its parent through PR_SET_PDEATHSIG, stopped with SIGTERM
then SIGKILL), its threads' scheduling slice (sched.py), and waiting until it answers ng pings. Must not: speak ng
beyond ping (that is `rtpengine.RtpEngineClient`), or decide anything about calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path

from opencomms.gateway.opus_tuning import OpusTuning, build_preload
from opencomms.gateway.rtpengine import RtpEngineClient
from opencomms.sched import slice_threads

log = logging.getLogger("opencomms.rtpengine")

__all__ = ["RtpEngineDaemon", "RtpEngineSettings", "render_config"]

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, slots=True)
class RtpEngineSettings:
    """What the generated configuration says."""

    interface: str = "127.0.0.1"
    """Address rtpengine binds media ports on (both the browsers' side and the node's side)."""
    ng_host: str = "127.0.0.1"
    ng_port: int = 2223
    port_min: int = 40000
    port_max: int = 40999
    timeout: int = 30
    """Seconds without RTP before rtpengine drops a call by itself."""
    binary: str = "rtpengine"
    log_level: int = 5
    num_threads: int = 0
    """rtpengine's worker threads (0: its default, one per CPU)."""
    opus: OpusTuning | None = None
    """Preload the Opus tuning library with these settings (None: ffmpeg's defaults)."""
    latency_slice_ms: float = 0.5
    """Scheduling slice asked for every rtpengine thread once it answers (sched.slice_threads; no privilege): woken by
    a packet, a relay thread preempts the node's media work on a shared core instead of waiting out its slice (at
    200 browser legs on one core: 99.57-99.73 % of packets within 5 ms without, 99.997 % with). 0: the kernel's."""
    realtime_priority: int = 0
    """rtpengine's own `scheduling = fifo` at this priority (1-99; needs root or CAP_SYS_NICE, else rtpengine keeps
    normal scheduling and logs why, and its threads get the slice above). 0: normal scheduling and the slice."""


def render_config(s: RtpEngineSettings) -> str:
    return "\n".join(
        [
            "[rtpengine]",
            f"interface = {s.interface}",
            f"listen-ng = {s.ng_host}:{s.ng_port}",
            f"port-min = {s.port_min}",
            f"port-max = {s.port_max}",
            f"timeout = {s.timeout}",
            f"offer-timeout = {s.timeout * 2}",
            "delete-delay = 0",
            "table = -1",
            "foreground = true",
            "log-stderr = true",
            f"log-level = {s.log_level}",
            *([f"num-threads = {s.num_threads}"] if s.num_threads > 0 else []),
            *(["scheduling = fifo", f"priority = {s.realtime_priority}"] if s.realtime_priority > 0 else []),
            "",
        ]
    )


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class RtpEngineDaemon:
    """`async with RtpEngineDaemon(settings) as d:` runs rtpengine until the block ends (and no longer than this
    process). `start` raises RuntimeError when the binary is missing or it does not answer within `ready_timeout`."""

    def __init__(self, settings: RtpEngineSettings, *, ready_timeout: float = 10.0) -> None:
        self.settings = settings
        self.ready_timeout = ready_timeout
        self.process: asyncio.subprocess.Process | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._log_task: asyncio.Task[None] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return (self.settings.ng_host, self.settings.ng_port)

    async def start(self) -> None:
        binary = shutil.which(self.settings.binary)
        if binary is None:
            raise RuntimeError(f"{self.settings.binary} is not installed (Debian: apt-get install rtpengine-daemon)")
        self._dir = tempfile.TemporaryDirectory(prefix="opencomms-rtpengine-")
        conf = Path(self._dir.name) / "rtpengine.conf"
        conf.write_text(render_config(self.settings))
        env = None
        if self.settings.opus is not None:
            lib = await asyncio.to_thread(build_preload, Path(self._dir.name))
            if lib is not None:
                preload = " ".join(p for p in (str(lib), os.environ.get("LD_PRELOAD", "")) if p)
                env = {**os.environ, **self.settings.opus.environment(), "LD_PRELOAD": preload}
        self.process = await asyncio.create_subprocess_exec(
            binary,
            f"--config-file={conf}",
            "--config-section=rtpengine",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=_die_with_parent,
            env=env,
        )
        self._log_task = asyncio.get_running_loop().create_task(self._relay_log())
        client = RtpEngineClient(self.address, timeout=0.5, retransmit=0.2)
        deadline = asyncio.get_running_loop().time() + self.ready_timeout
        try:
            while not await client.ping():
                if self.process.returncode is not None or asyncio.get_running_loop().time() > deadline:
                    await self.stop()
                    raise RuntimeError("rtpengine did not start (see the opencomms.rtpengine log)")
        finally:
            client.close()
        sliced = 0
        if self.settings.latency_slice_ms > 0:  # the threads not running SCHED_FIFO (not asked, or refused)
            sliced = slice_threads(self.process.pid, self.settings.latency_slice_ms / 1000.0)
        log.info(
            "rtpengine running",
            extra={"ng": f"{self.settings.ng_host}:{self.settings.ng_port}", "short_slice_threads": sliced},
        )

    async def _relay_log(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        while line := await self.process.stderr.readline():
            log.debug("rtpengine: %s", line.decode("utf-8", "replace").rstrip())

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 3.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if self._log_task is not None:
            self._log_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._log_task
            self._log_task = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    async def __aenter__(self) -> RtpEngineDaemon:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
