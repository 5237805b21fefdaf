"""EngineThread's real-time option: the media thread asks for SCHED_FIFO, and says truthfully whether it got it
(it needs root or CAP_SYS_NICE; refused, it keeps ticking at normal priority)."""

from __future__ import annotations

import os
import sys
import time

from opencomms.media.clock import EngineThread
from opencomms.media.engine import MediaEngine


def _wait_ticks(thread: EngineThread, ticks: int) -> None:
    deadline = time.monotonic() + 5
    while thread.ticks < ticks and time.monotonic() < deadline:
        time.sleep(0.01)


def test_realtime_priority_is_applied_or_reported_as_refused() -> None:
    thread = EngineThread(MediaEngine(4), realtime_priority=1, switch_interval=None)
    with thread:
        _wait_ticks(thread, 3)
        tid = thread._thread.native_id if thread._thread is not None else None
        assert tid is not None and thread.ticks >= 3  # ticking either way
        if sys.platform == "linux":
            assert thread.realtime == (os.sched_getscheduler(tid) == os.SCHED_FIFO)
            assert os.sched_getscheduler(0) != os.SCHED_FIFO  # only the media thread, not its starter


def test_without_the_option_the_thread_keeps_the_normal_policy() -> None:
    before = sys.getswitchinterval()
    thread = EngineThread(MediaEngine(4), switch_interval=None)
    with thread:
        _wait_ticks(thread, 2)
        assert not thread.realtime
    assert sys.getswitchinterval() == before
