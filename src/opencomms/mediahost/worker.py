"""The media process's main: `python -m opencomms.mediahost.worker FD`, started by `remote.MediaProcess` with one
end of a Unix socketpair as descriptor FD.

Owns the child's three threads: the engine thread (`EngineThread`, ticking the MediaEngine with its RtpBank and
app-hosted taps), the reader (the main thread: command batches in, each command queued on the engine thread in
order, descriptors bound to their StreamAttach) and the writer (results, each tick's events, stream keys and
faults, stream reports and statistics out, batched). Dies with the node: PR_SET_PDEATHSIG, and the end of the
socket stream. Must not do anything the engine thread did not do before (no asyncio, no store, no name lookups).
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import gc
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
from concurrent.futures import Future
from typing import Any

from .._compiled import state as compiled_state
from ..media.clock import EngineThread
from ..media.engine import MediaEngine
from ..media.feeds import feeds_of
from ..media.taps import taps_of
from ..rtp.bank import RtpBank
from .streams import ChildStreams, StreamAttach, WorkerSettings, register
from .wire import Receiver, encode

__all__ = ["main"]

log = logging.getLogger("opencomms.media")

STATS_EVERY = 0.04
"""Seconds between statistics with few streams; with many, 0.2 ms per stream (0.1 s at 500), at most 0.25 s."""
REPORTS_EVERY = 1.0
"""Seconds between stream reports (receive times and call-quality figures, for media timeouts and call records,
which count in seconds): a report costs a few microseconds per stream, taken from the engine thread's time."""
SWITCH_INTERVAL = 0.0005
"""The child's GIL switch interval: woken for a tick, the engine thread waits at most this for the reader or the
writer thread (the node's loop is not in this interpreter)."""
GC_YOUNG, GC_MIDDLE, GC_FULL = 10_000, 20, 20
"""The child's collection schedule (see `_Worker._collect`): CPython's thresholds, run after ticks."""
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the end of the socket stream still stops us
        pass


class _Worker:
    def __init__(self, sock: socket.socket, settings: WorkerSettings) -> None:
        self.sock = sock
        self.settings = settings
        engine = MediaEngine(
            capacity=settings.capacity,
            inbound_queue_frames=settings.inbound_queue_frames,
            talkers=settings.talkers,
        )
        self.out: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self.thread = EngineThread(
            engine,
            on_events=lambda events: self.out.put(("e", events)),
            max_lag_ticks=settings.max_lag_ticks,
            realtime_priority=settings.realtime_priority,
            switch_interval=SWITCH_INTERVAL,
            latency_slice=settings.latency_slice,
            spin=settings.spin,
        )
        self.thread.after_tick.append(taps_of(engine).drain)
        self.thread.after_tick.append(feeds_of(engine).drain)
        self.bank = RtpBank(self.thread, capacity=settings.bank_capacity, measure_lateness=settings.measure_lateness)
        self.streams = ChildStreams(self.bank)
        register(engine, self.streams)
        self._closing = False
        self._gc_started = 0.0
        self._young = 0
        self.gc_pauses = [0, 0.0, 0.0]
        """Collections of this process, their total and their longest pause (seconds)."""

    def run(self, receiver: Receiver, pending: list[tuple[Any, list[int]]]) -> None:
        gc.collect()
        gc.freeze()  # as the node does: start-up objects out of the collector's view, fewer and shorter pauses
        gc.callbacks.append(self._gc_timed)
        gc.disable()  # collections run on the engine thread right after a tick (`_collect`), never inside one
        self.thread.after_tick.append(self._collect)
        self.thread.start()
        writer = threading.Thread(target=self._write, name="opencomms-media-out", daemon=True)
        writer.start()
        try:
            for batch, fds in pending:
                self._queue(batch, fds)
            while receiver.read(self.sock):
                for batch, fds in receiver.frames():
                    self._queue(batch, fds)
        except OSError:
            pass
        finally:
            self._closing = True
            self.thread.stop()
            self.out.put(("x", None))
            writer.join(2.0)

    def _queue(self, batch: list[tuple[int, Any]], fds: list[int]) -> None:
        for ident, cmd in batch:
            if isinstance(cmd, StreamAttach):
                n = 2 if cmd.rtcp else 1
                cmd = dataclasses.replace(cmd, fds=tuple(fds[:n]))
                del fds[:n]
            if ident == 0:
                self.thread.call(cmd)
            else:
                future = self.thread.call_result(cmd)
                future.add_done_callback(functools.partial(self._answer, ident))
        for fd in fds:  # descriptors no command claimed
            os.close(fd)

    def _collect(self) -> list[Any]:
        """After a tick (its packets sent at its start, the next tick's not due for most of 20 ms): the young
        generation when it holds GC_YOUNG objects (any thread's), the middle one every GC_MIDDLE of those, the
        whole heap every GC_FULL of those (its pause, a few ms, lands in the tick's slack, not in packet timing)."""
        if gc.get_count()[0] < GC_YOUNG:
            return []
        self._young += 1
        if self._young % (GC_MIDDLE * GC_FULL) == 0:
            gc.collect(2)
        elif self._young % GC_MIDDLE == 0:
            gc.collect(1)
        else:
            gc.collect(0)
        return []

    def _gc_timed(self, phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        took = time.perf_counter() - self._gc_started
        pauses = self.gc_pauses
        pauses[0] += 1
        pauses[1] += took
        pauses[2] = max(pauses[2], took)

    def _answer(self, ident: int, future: Future[Any]) -> None:
        exc = future.exception()
        self.out.put(("r", (ident, exc is None, future.result() if exc is None else exc)))

    def _write(self) -> None:
        next_stats = next_reports = time.monotonic()
        out = self.out
        while True:
            now = time.monotonic()
            items: list[tuple[str, Any]] = []
            try:
                items.append(out.get(timeout=max(0.0, next_stats - now)))
                while True:
                    items.append(out.get_nowait())
            except queue.Empty:
                pass
            stop = any(kind == "x" for kind, _ in items)
            items = [item for item in items if item[0] != "x"]
            notes = self.streams.notes
            if notes:
                taken = [notes.popleft() for _ in range(len(notes))]
                items.append(("n", taken))
            now = time.monotonic()
            if now >= next_stats:
                next_stats = now + min(0.25, max(STATS_EVERY, 0.0002 * len(self.streams.streams)))
                reports = now >= next_reports
                if reports:
                    next_reports = now + REPORTS_EVERY
                items.append(("s", self._stats(reports)))
            if items:
                try:
                    self.sock.sendall(encode(items))
                except (OSError, TypeError, ValueError, AttributeError) as exc:
                    if isinstance(exc, OSError):
                        return
                    log.exception("media process message not sent")
            if stop:
                return

    def _stats(self, reports: bool) -> dict[str, Any]:
        thread = self.thread
        hist = thread.tick_histogram
        return {
            "thread": thread.stats(),
            "ticks": thread.ticks,
            "histogram": (list(hist.counts), hist.sum),
            "bank": self.bank.stats(),
            "gc": {
                "collections": self.gc_pauses[0],
                "total_ms": 1000.0 * self.gc_pauses[1],
                "max_ms": 1000.0 * self.gc_pauses[2],
            },
            "path": compiled_state(),
            "lateness_ms": self.bank.lateness_ms.tolist() if self.settings.measure_lateness else None,
            "streams": self.streams.reports() if reports else None,
        }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the node stops us (end of stream), not the terminal's ^C
    sock = socket.socket(fileno=int(args[0]))
    sock.setblocking(True)
    receiver = Receiver()
    frames: list[tuple[Any, list[int]]] = []
    while not frames:
        if not receiver.read(sock):
            return 0
        frames = receiver.frames()
    settings = frames.pop(0)[0]
    assert isinstance(settings, WorkerSettings)
    logging.basicConfig(level=settings.log_level, format="media-process %(levelname)s %(name)s: %(message)s")
    if os.getppid() == 1:
        return 0
    log.info("media process %d: media path %s", os.getpid(), compiled_state())
    _Worker(sock, settings).run(receiver, frames)
    return 0


if __name__ == "__main__":
    sys.exit(main())
