"""The media engine thread: absolute 20 ms schedule, commands from other threads, events out, skip-ahead on
overload, statistics, start/stop. Real threads and short sleeps (well under a second in total)."""

from __future__ import annotations

import logging
import platform
import sys
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from opencomms.media.clock import EngineThread
from opencomms.media.engine import EngineFull, Heard, MediaEngine, MediaEvent, PlayFinished


def wait_for(predicate: Callable[[], object], timeout: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


def test_ticks_on_a_20_ms_schedule_runs_commands_and_hands_out_events() -> None:
    received: list[tuple[str, list[MediaEvent]]] = []
    engine = MediaEngine(8)
    with EngineThread(engine, lambda events: received.append((threading.current_thread().name, events))) as thread:
        before = time.monotonic()
        assert thread.call_result(lambda e: e.add_leg("a")).result(timeout=1) is None
        thread.call(lambda e: e.add_leg("b"))
        thread.call(lambda e: e.play("a", "p", [np.ones(3 * 320, np.int16)]))
        wait_for(lambda: received)
        assert thread.running
    assert not thread.running
    name, events = received[0]
    assert name == "opencomms-media"
    assert len(events) == 1 and isinstance(events[0], PlayFinished) and events[0].completed
    assert events[0].at >= before - 0.05  # frame times are time.monotonic() on the 20 ms grid
    assert thread.ticks >= 3 and thread.overruns == 0
    stats = thread.stats()
    assert stats["ticks"] == thread.ticks and stats["engine_legs"] == 2
    assert 0 <= stats["tick_p50_ms"] <= stats["tick_p99_ms"] <= stats["tick_max_ms"] < 20


def test_frame_times_are_consecutive_multiples_of_the_tick() -> None:
    times: list[float] = []
    engine = MediaEngine(2)
    thread = EngineThread(engine)
    thread.call(lambda e: e.add_leg("a"))
    thread.call(lambda e: e.subscribe(Heard("a", lambda leg, frame, now: times.append(now))))
    with thread:
        wait_for(lambda: len(times) >= 5)
    steps = np.diff(times[:5])
    np.testing.assert_allclose(steps, 0.02, atol=1e-9)


def test_command_errors_are_logged_or_returned_and_do_not_stop_the_thread(caplog: pytest.LogCaptureFixture) -> None:
    engine = MediaEngine(1)
    with EngineThread(engine) as thread:
        thread.call(lambda e: e.play("nobody", "p", []))

        def add_two(e: MediaEngine) -> None:
            e.add_leg("a")
            e.add_leg("b")

        full = thread.call_result(add_two)
        with pytest.raises(EngineFull):
            full.result(timeout=1)
        ok = thread.call_result(lambda e: e.legs)
        assert ok.result(timeout=1) == 1
    assert thread.command_errors == 2
    assert any("media engine command failed" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


def test_falling_far_behind_skips_ahead_instead_of_bursting() -> None:
    times: list[float] = []
    engine = MediaEngine(2)
    with EngineThread(engine, max_lag_ticks=3) as thread:
        thread.call(lambda e: e.add_leg("a"))
        thread.call(lambda e: e.subscribe(Heard("a", lambda leg, frame, now: times.append(now))))
        wait_for(lambda: len(times) >= 2)
        thread.call(lambda e: time.sleep(0.15))  # a stall of ~7 ticks
        wait_for(lambda: thread.overruns >= 1)
        count = len(times)
        wait_for(lambda: len(times) >= count + 2)
    assert thread.overruns == 1 and thread.skipped_ticks >= 4
    steps = np.round(np.diff(times) / 0.02).astype(int)
    assert steps.max() >= 5 and set(steps.tolist()) - {1} == {int(steps.max())}  # one jump, otherwise 1 tick


def test_stop_runs_queued_commands_and_drops_later_ones() -> None:
    engine = MediaEngine(2)
    thread = EngineThread(engine)
    future = thread.call_result(lambda e: e.add_leg("a"))
    thread.stop()  # never started: the queue is still drained
    assert future.done() and engine.has_leg("a")
    thread.call(lambda e: e.add_leg("b"))
    with pytest.raises(RuntimeError):
        thread.call_result(lambda e: e.add_leg("c")).result(timeout=0)
    assert thread.dropped_commands == 2 and engine.legs == 1
    with pytest.raises(RuntimeError):
        thread.start()
    thread.stop()  # idempotent


def test_failing_event_handler_is_counted() -> None:
    def broken(events: list[MediaEvent]) -> None:
        raise RuntimeError("boom")

    engine = MediaEngine(2)
    with EngineThread(engine, broken) as thread:
        thread.call(lambda e: e.add_leg("a"))
        thread.call(lambda e: e.play("a", "p", [np.ones(10, np.int16)]))
        wait_for(lambda: thread.event_errors >= 1)
        ticks = thread.ticks
        wait_for(lambda: thread.ticks > ticks + 1)
    assert thread.event_errors == 1


def test_before_tick_runs_ahead_of_queued_commands_and_a_short_slice_needs_no_privilege() -> None:
    order: list[str] = []
    engine = MediaEngine(4)
    thread = EngineThread(engine, latency_slice=0.0005, spin=0.001)
    thread.before_tick.append(lambda: order.append("first"))
    thread.call(lambda _engine: order.append("command"))
    with thread:
        wait_for(lambda: thread.ticks >= 3)
    assert order[:2] == ["first", "command"]  # the RTP bank's paced send leaves before the tick's commands
    if sys.platform == "linux" and platform.machine() in ("x86_64", "aarch64"):
        assert thread.short_slice  # sched_setattr(SCHED_OTHER, runtime) is allowed to any user
