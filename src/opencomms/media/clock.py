"""The media engine's real-time driver: one daemon thread ticking a MediaEngine every 20 ms.

Owns the thread, the absolute tick schedule (t0 + k * 20 ms on time.monotonic), the command queue through
which other threads reach the engine, the hand-off of events, and timing statistics. Must not know what the
commands or events mean (the media service does), touch asyncio (the node wraps `on_events` with
`loop.call_soon_threadsafe`) or do any audio work itself.

The engine is numpy-bound and single-threaded by design (one core ticks every leg). Pin BLAS to one thread
before numpy is imported (OPENBLAS_NUM_THREADS=1, OMP_NUM_THREADS=1, MKL_NUM_THREADS=1): the DTMF bank's
small matrix products only lose to BLAS threads fighting over cores, and the event loop needs the others.
The thread shares the GIL with the event loop: a full garbage collection anywhere in the process pauses it
(~7 ms in the benchmark process with 2000 legs, more in a busy node), so a process that runs a node freezes its
start-up objects once it started (`server.freeze_process_heap`), and event-loop work between GIL releases is short.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from types import TracebackType
from typing import Any, TypeVar

import numpy as np

from opencomms.histogram import TICK_BOUNDS, FixedHistogram
from opencomms.sched import request_slice

from .engine import MediaEngine, MediaEvent
from .engine.commands import EngineCommand
from .faults import FaultLog
from .frames import FRAME_MS

__all__ = ["EngineThread"]

log = logging.getLogger("opencomms.media")

T = TypeVar("T")
Command = EngineCommand[Any] | Callable[[MediaEngine], Any]
"""What `call` takes: an engine command (data, `apply(engine)`: the only kind that can cross to a media process),
or a plain function of the engine (in-thread helpers such as the RTP bank's paced send, and tests)."""
_Command = tuple[Command, "Future[Any] | None"]


class EngineThread:
    """Runs `engine.tick(now)` on a daemon thread named "opencomms-media" every `tick_seconds` (20 ms).

    Ticks follow an absolute schedule: tick k is due at t0 + k * tick_seconds (time.monotonic), and `now`
    passed to the engine is that due time, so event times are on the same clock as asyncio's `loop.time()`.
    A late tick runs at once; if the thread falls more than `max_lag_ticks` behind (a GC pause, an overloaded
    host), the missed ticks are skipped (`overruns` and `skipped_ticks` count them) instead of being run in a
    burst: at most `max_lag_ticks` ticks ever run back to back.

    Other threads act on the engine only through `call(fn)` / `call_result(fn)`: engine commands (data with
    `apply(engine)`, media/engine/commands.py; the event loop sends nothing else, so the same calls reach a media
    process, mediahost/) or, for engine-side helpers and tests, plain functions of the engine, queued and run on
    the engine thread at the start of the next tick, in order. `after_tick` functions run after each tick and
    their events join the tick's. An exception from a fire-and-forget command is
    counted by kind (the command's name and the exception type, `command_error_kinds`) and logged at most once a
    minute per kind; one from `call_result` is set on its future (the caller handles it). It never stops the
    thread. `on_events(events)` is called on the engine
    thread after each tick that produced events; it must be quick and must not call the engine.
    """

    def __init__(
        self,
        engine: MediaEngine,
        on_events: Callable[[list[MediaEvent]], None] | None = None,
        *,
        tick_seconds: float = FRAME_MS / 1000.0,
        max_lag_ticks: int = 5,
        window: int = 500,
        name: str = "opencomms-media",
        clock: Callable[[], float] = time.monotonic,
        switch_interval: float | None = 0.002,
        realtime_priority: int | None = None,
        latency_slice: float | None = None,
        spin: float = 0.0,
    ) -> None:
        if tick_seconds <= 0 or max_lag_ticks < 1 or window < 1:
            raise ValueError("tick_seconds, max_lag_ticks and window must be positive")
        self.engine = engine
        self.on_events = on_events
        self.tick_seconds = tick_seconds
        self.max_lag_ticks = max_lag_ticks
        self._clock = clock
        self.switch_interval = switch_interval
        """On start, the interpreter's GIL switch interval is lowered to this (seconds) if longer: woken for a
        tick, the thread waits about that long at most for the GIL a busy event loop holds (Python's default, 5
        ms, would delay paced RTP by as much). None leaves it alone."""
        self.realtime_priority = realtime_priority
        """If set (1-99), the thread asks for SCHED_FIFO at this priority when it starts (Linux; needs root or
        CAP_SYS_NICE), as media servers run their media threads: other processes on the core can then not delay
        a tick. Refused or unsupported: it keeps the normal policy (`realtime` says which)."""
        self.realtime = False
        """The thread runs SCHED_FIFO (set once it started)."""
        self.latency_slice = latency_slice
        """If set (seconds, 0.1-100 ms), the thread asks for this scheduling slice when it starts (`request_slice`:
        no privilege, Linux >= 6.12): woken for a tick it preempts the task running on its core."""
        self.short_slice = False
        """The kernel took `latency_slice` (set once the thread started)."""
        self.spin = spin
        """Seconds before each tick's due time the thread stops sleeping and polls the clock (yielding the GIL
        between polls): a wake-up that comes late costs nothing then. 0 sleeps until due."""
        self.before_tick: list[Callable[[], None]] = []
        """Run on the engine thread first thing at each tick, before queued commands (the RTP bank's paced send)."""
        self._name = name
        self._commands: queue.SimpleQueue[_Command] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._durations = np.zeros(window, dtype=np.float64)
        self.tick_histogram = FixedHistogram(TICK_BOUNDS)
        """Every tick's duration (commands + tick, seconds) since start, in fixed buckets: the metrics collector
        reads it at scrape time (plain ints, no metrics library call on this thread)."""
        self.ticks = 0
        """Ticks run."""
        self.overruns = 0
        """Times the thread fell more than `max_lag_ticks` behind and skipped ahead."""
        self.skipped_ticks = 0
        """Ticks never run because of those skips."""
        self.late_ticks = 0
        """Ticks that started a whole tick or more after their due time (run late but not skipped)."""
        self.command_errors = 0
        """Commands that raised."""
        self._command_faults = FaultLog(log, "media engine command failed")
        self._tick_faults = FaultLog(log, "media engine tick failed")
        self.dropped_commands = 0
        """Commands sent after stop()."""
        self.event_errors = 0
        """Exceptions raised by `on_events`."""
        self.after_tick: list[Callable[[], list[MediaEvent]]] = []
        """Run on the engine thread after each tick: their events join the tick's (the app-hosted taps' frames)."""

    # -- lifecycle ---------------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """The thread has been started and has not finished."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start ticking (once)."""
        if self._thread is not None or self._stopped:
            raise RuntimeError("EngineThread can be started once")
        if self.switch_interval is not None and sys.getswitchinterval() > self.switch_interval:
            sys.setswitchinterval(self.switch_interval)
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop ticking and join the thread. Commands still queued are run (without a tick) so their futures
        resolve; later commands are dropped (see `call`). Idempotent."""
        self._stopped = True
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        if thread is None or not thread.is_alive():
            self._drain()

    def __enter__(self) -> EngineThread:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- commands ---------------------------------------------------------------------------------------------

    def call(self, fn: Command) -> None:
        """Run `fn.apply(engine)` (a command) or `fn(engine)` on the engine thread before the next tick (fire and
        forget; errors are logged).
        After `stop()` the command is dropped and counted (`dropped_commands`): shutdown paths of the callers
        may still send clean-up commands, and there is nothing left to clean."""
        if self._stopped:
            self.dropped_commands += 1
            return
        self._commands.put((fn, None))

    def call_result(self, fn: EngineCommand[T] | Callable[[MediaEngine], T]) -> Future[T]:
        """Like `call`, returning a Future with fn's result or exception (e.g. EngineFull from add_leg); after
        `stop()` the future fails at once with RuntimeError."""
        future: Future[T] = Future()
        if self._stopped:
            self.dropped_commands += 1
            future.set_exception(RuntimeError("the media engine thread is stopped"))
            return future
        self._commands.put((fn, future))
        return future

    def _drain(self) -> None:
        while True:
            try:
                fn, future = self._commands.get_nowait()
            except queue.Empty:
                return
            if future is not None and not future.set_running_or_notify_cancel():
                continue
            try:
                apply = getattr(fn, "apply", None)
                result = apply(self.engine) if apply is not None else fn(self.engine)  # type: ignore[operator]
            except Exception as exc:
                self.command_errors += 1
                if future is not None:
                    future.set_exception(exc)
                else:
                    name = getattr(fn, "__qualname__", type(fn).__name__).replace(".<locals>", "")
                    self._command_faults.record(f"{name}: {type(exc).__name__}", exc)
            else:
                if future is not None:
                    future.set_result(result)

    # -- the loop ---------------------------------------------------------------------------------------------

    def _go_realtime(self) -> None:
        priority = self.realtime_priority
        if priority is None or not hasattr(os, "sched_setscheduler"):
            return
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))  # 0: this thread (Linux)
        except (OSError, ValueError) as exc:
            log.warning("media thread stays at normal priority: SCHED_FIFO %s refused (%s)", priority, exc)
            return
        self.realtime = True

    def _run(self) -> None:
        self._go_realtime()
        if self.latency_slice is not None and not self.realtime:
            self.short_slice = request_slice(self.latency_slice)
        period, clock, spin = self.tick_seconds, self._clock, self.spin
        t0 = clock()
        k = 0
        while not self._stop.is_set():
            due = t0 + k * period
            wait = due - clock() - spin
            if wait > 0 and self._stop.wait(wait):
                break
            while spin and clock() < due:
                time.sleep(0)
            behind = int((clock() - due) / period)
            if behind > self.max_lag_ticks:
                self.overruns += 1
                self.skipped_ticks += behind
                k += behind
                due = t0 + k * period
            elif behind >= 1:
                self.late_ticks += 1
            started = clock()
            for first in self.before_tick:
                try:
                    first()
                except Exception as exc:
                    self._tick_faults.record(type(exc).__name__, exc)
            self._drain()
            try:
                events = self.engine.tick(due)
                for collect in self.after_tick:
                    events.extend(collect())
            except Exception as exc:
                self._tick_faults.record(type(exc).__name__, exc)
                events = []
            took = clock() - started
            self._durations[self.ticks % self._durations.size] = took
            self.tick_histogram.observe(took)
            self.ticks += 1
            k += 1
            if events and self.on_events is not None:
                try:
                    self.on_events(events)
                except Exception:
                    self.event_errors += 1
                    log.exception("media event hand-off failed")

    # -- statistics -------------------------------------------------------------------------------------------

    def stats(self) -> dict[str, float | int | dict[str, int]]:
        """Counters and tick durations (commands + tick, ms) over the last `window` ticks. Safe from any thread
        (figures may be one tick apart)."""
        n = min(self.ticks, self._durations.size)
        recent = self._durations[:n] * 1000.0 if n else np.zeros(1)
        return {
            "ticks": self.ticks,
            "overruns": self.overruns,
            "skipped_ticks": self.skipped_ticks,
            "late_ticks": self.late_ticks,
            "command_errors": self.command_errors,
            "command_error_kinds": dict(self._command_faults.counts),
            "tick_errors": self._tick_faults.total,
            "dropped_commands": self.dropped_commands,
            "event_errors": self.event_errors,
            "tick_p50_ms": round(float(np.percentile(recent, 50)), 3),
            "tick_p99_ms": round(float(np.percentile(recent, 99)), 3),
            "tick_max_ms": round(float(recent.max()), 3),
            "engine_legs": self.engine.legs,
            "short_slice": self.short_slice,
        }
