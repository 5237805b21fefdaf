"""sched.py: the short scheduling slice a thread (or every thread of a process) asks for, and whether SCHED_FIFO may
be granted; the WebRTC edge's choice of who codes Opus when libopus is missing."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from opencomms.config import WebRtcConfig
from opencomms.sched import fifo_permitted, is_fifo, request_slice, slice_threads
from opencomms.web.wiring import effective_webrtc


def _slice_ns(pid: int, tid: int) -> int:
    for line in Path(f"/proc/{pid}/task/{tid}/sched").read_text().splitlines():
        if line.startswith("se.slice"):
            return int(line.split(":")[1])
    raise AssertionError("no se.slice")


def test_every_thread_of_a_process_takes_the_slice() -> None:
    code = "import threading, time\nfor _ in range(2): threading.Thread(target=time.sleep, args=(5,)).start()\n"
    code += "time.sleep(5)"
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        for _ in range(100):  # until its two threads exist
            if len(os.listdir(f"/proc/{child.pid}/task")) >= 3:
                break
            threading.Event().wait(0.02)
        assert slice_threads(child.pid, 0.0007) == 3
        assert {_slice_ns(child.pid, int(t)) for t in os.listdir(f"/proc/{child.pid}/task")} == {700_000}
    finally:
        child.kill()
        child.wait()


def test_a_slice_out_of_range_or_for_a_gone_thread_is_refused() -> None:
    assert not request_slice(0.5) and not request_slice(0.00001)
    assert not request_slice(0.0005, tid=2**22 + 12345)  # no such thread
    assert slice_threads(2**22 + 12345, 0.0005) == 0
    assert not is_fifo(2**22 + 12345)


def test_fifo_is_permitted_to_root_and_never_outside_1_to_99() -> None:
    assert fifo_permitted(10) is (os.geteuid() == 0 or fifo_permitted(10))
    assert fifo_permitted(99) if os.geteuid() == 0 else True
    assert not fifo_permitted(0) and not fifo_permitted(100)


def test_without_libopus_rtpengine_transcodes_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    default = WebRtcConfig()
    assert default.opus_in_node and effective_webrtc(default, libopus=True) is default
    with caplog.at_level(logging.WARNING, logger="opencomms.webrtc"):
        fallback = effective_webrtc(default, libopus=False)
    assert not fallback.opus_in_node and "libopus" in caplog.text
    caplog.clear()
    relay = WebRtcConfig(opus=False)  # browsers on G.711: nothing to code, nothing to say
    assert not effective_webrtc(relay, libopus=False).opus_in_node and not caplog.text
