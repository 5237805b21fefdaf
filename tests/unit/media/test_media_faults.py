"""Failures on the media thread are counted by kind and logged at a bounded rate: a command that fails every tick
(a hostile call's) neither floods the log nor stops the other commands."""

from __future__ import annotations

import logging
import time

import pytest

from opencomms.media.clock import EngineThread
from opencomms.media.engine import MediaEngine
from opencomms.media.faults import FaultLog


def test_a_kind_is_logged_once_per_interval_with_its_traceback_first(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    faults = FaultLog(logging.getLogger("test.faults"), "it failed", interval=60.0, clock=lambda: now[0])
    for _ in range(1000):
        faults.record("send:TypeError", TypeError("x"))
    faults.record("receive:ValueError", ValueError("y"))
    now[0] = 61.0
    faults.record("send:TypeError", TypeError("x"))
    lines = [r for r in caplog.records if r.name == "test.faults"]
    assert [r.getMessage() for r in lines] == [
        "it failed (send:TypeError, 1 so far)",
        "it failed (receive:ValueError, 1 so far)",
        "it failed (send:TypeError, 1001 so far)",
    ]
    assert lines[0].exc_info is not None and lines[2].exc_info is None
    assert faults.counts == {"send:TypeError": 1001, "receive:ValueError": 1} and faults.total == 1002


def test_kinds_are_bounded() -> None:
    faults = FaultLog(logging.getLogger("test.faults"), "x", max_kinds=3)
    for i in range(100):
        faults.record(f"kind{i}")
    assert len(faults.counts) == 4 and faults.counts["other"] == 97


def test_failing_commands_do_not_flood_the_log_or_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    engine = MediaEngine(2)
    with EngineThread(engine) as thread:
        for _ in range(500):
            thread.call(lambda e: e.play("nobody", "p", []))  # KeyError every time
        done = thread.call_result(lambda e: e.add_leg("a"))
        done.result(timeout=2)
        deadline = time.monotonic() + 2
        while thread.command_errors < 500 and time.monotonic() < deadline:
            time.sleep(0.01)
    failed = [r for r in caplog.records if "media engine command failed" in r.getMessage()]
    assert thread.command_errors == 500 and len(failed) == 1
    assert engine.has_leg("a")
    (kind,) = thread.stats()["command_error_kinds"]  # type: ignore[misc]
    assert kind.endswith(": KeyError") and thread.stats()["command_error_kinds"] == {kind: 500}  # type: ignore[index]
