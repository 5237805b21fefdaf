"""The node's spawned rtpengine relays without waiting behind the node's media work on a shared core: every one of
its threads gets the short scheduling slice (`webrtc.rtpengine_latency_slice_ms`, no privilege), or runs SCHED_FIFO
when `webrtc.rtpengine_realtime_priority` asks (rtpengine's own `scheduling = fifo`)."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest

from opencomms.gateway.rtpengine_daemon import RtpEngineDaemon, RtpEngineSettings
from tests.ports import free_port

pytestmark = pytest.mark.skipif(shutil.which("rtpengine") is None, reason="rtpengine")


def _threads(pid: int) -> dict[int, str]:
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        out[int(task.name)] = (task / "sched").read_text()
    return out


def _field(sched: str, name: str) -> int:
    for line in sched.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return int(float(value))
    raise KeyError(name)


def _settings(**kw: object) -> RtpEngineSettings:
    base = random.randrange(41000, 59000, 200)
    return RtpEngineSettings(ng_port=free_port(), port_min=base, port_max=base + 99, num_threads=2, **kw)  # type: ignore[arg-type]


async def test_every_rtpengine_thread_gets_the_short_slice() -> None:
    async with RtpEngineDaemon(_settings(latency_slice_ms=0.5)) as daemon:
        assert daemon.process is not None
        threads = _threads(daemon.process.pid)
    assert len(threads) >= 3  # the main thread and its two workers at least
    assert {_field(s, "se.slice") for s in threads.values()} == {500_000}
    assert {_field(s, "policy") for s in threads.values()} == {os.SCHED_OTHER}


async def test_without_a_slice_rtpengine_keeps_the_kernels() -> None:
    async with RtpEngineDaemon(_settings(latency_slice_ms=0)) as daemon:
        assert daemon.process is not None
        threads = _threads(daemon.process.pid)
    assert 500_000 not in {_field(s, "se.slice") for s in threads.values()}


@pytest.mark.skipif(os.geteuid() != 0, reason="SCHED_FIFO needs root or CAP_SYS_NICE")
async def test_realtime_priority_runs_rtpengines_workers_fifo() -> None:
    async with RtpEngineDaemon(_settings(realtime_priority=3)) as daemon:
        assert daemon.process is not None
        threads = _threads(daemon.process.pid)
    fifo = [s for s in threads.values() if _field(s, "policy") == os.SCHED_FIFO]
    assert fifo and {_field(s, "prio") for s in fifo} == {99 - 3}  # the kernel's prio: 99 - rt_priority
