"""The node's side of its media process: `MediaProcess` stands where `media.clock.EngineThread` stands (commands
out, events back, statistics, liveness) and `RemoteBank` where `rtp.bank.RtpBank` stands (RTP streams attached,
updated, detached; their keys, faults and figures mirrored onto the node's `Stream` objects).

Owns the child (spawned as `python -m opencomms.mediahost.worker`, killed if it does not stop), the socketpair,
the per-iteration batching of commands (one pickle per loop iteration, results correlated by id), passing each
attached stream's sockets as descriptors (the node then closes its copies; ports stay allocated here until the
detach has closed the child's), and dispatching what the child sends. Runs on the event loop only; must not
block it beyond the final flush at stop.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from ..histogram import TICK_BOUNDS, FixedHistogram
from ..media.engine import MediaEvent
from ..media.engine.commands import EngineCommand, InThread
from ..rtp.stats import CallQuality
from ..rtp.stream import Stream, StreamParams
from .streams import StreamAttach, StreamDetach, StreamDtmf, StreamReport, StreamUpdate, WorkerSettings
from .wire import Receiver, Sender, encode

__all__ = ["MediaProcess", "RemoteBank"]

log = logging.getLogger("opencomms.media")

T = TypeVar("T")
_BUFFER = 4 << 20


class MediaProcess:
    """The media engine and the RTP bank in a child process (see the module docstring). `start()` on the event
    loop, `stop()` at shutdown (idempotent). `call`/`call_result` as EngineThread's, for commands only (data:
    they are pickled); `on_events(events)` is called on the loop with each tick's events."""

    def __init__(
        self,
        settings: WorkerSettings,
        on_events: Callable[[list[MediaEvent]], None] | None = None,
        *,
        python: str = sys.executable,
        own_session: bool = True,
    ) -> None:
        self.settings = settings
        self.own_session = own_session
        """Start the child in a session of its own (setsid): with the kernel's autogroups (most desktop and server
        kernels) it is then a scheduling group of its own, given its share of the CPU beside the node's group
        however many threads and children the node runs, without any privilege."""
        self.on_events = on_events
        self.python = python
        self.rtp_bank = RemoteBank(self, settings.bank_capacity)
        self.tick_histogram = FixedHistogram(TICK_BOUNDS)
        """The child's tick durations, copied from its reports."""
        self.after_tick: list[Callable[[], list[MediaEvent]]] = []
        """EngineThread's hook, unused here: the child collects its taps' frames itself."""
        self.ticks = 0
        self.dropped_commands = 0
        self.lateness_ms: list[int] | None = None
        """With `settings.measure_lateness`: packets by send delay in whole ms (the child's RtpBank.lateness_ms)."""
        self._stats: dict[str, Any] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._sender: Sender | None = None
        self._receiver = Receiver()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._batch: list[tuple[int, Any]] = []
        self._fds: list[int] = []
        self._closing: list[socket.socket] = []
        self._results: dict[int, Future[Any]] = {}
        self._next_id = 0
        self._scheduled = False
        self._writing = False
        self._stopped = False
        self._dead = False
        self._ready: asyncio.Event | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and not self._stopped and not self._dead and self._proc.poll() is None

    def start(self) -> None:
        if self._proc is not None or self._stopped:
            raise RuntimeError("MediaProcess can be started once")
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._ready = asyncio.Event()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        for sock in (ours, theirs):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _BUFFER)
        env = dict(os.environ)
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        env.setdefault("OMP_NUM_THREADS", "1")
        env.setdefault("MKL_NUM_THREADS", "1")
        src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
        try:
            self._proc = subprocess.Popen(
                [self.python, "-m", "opencomms.mediahost.worker", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                env=env,
                stdin=subprocess.DEVNULL,
                start_new_session=self.own_session,
            )
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        self._sender = Sender(ours)
        self._sender.push(encode(self.settings))
        self._loop.add_reader(ours.fileno(), self._readable)
        self._schedule()
        log.info("media process started", extra={"pid": self._proc.pid})

    async def wait_ready(self, timeout: float = 20.0) -> None:
        """Until the child reported its first ticks (it imports numpy first: about half a second); TimeoutError
        (the child is then stopped) if it does not within `timeout`."""
        assert self._ready is not None, "start() first"
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            self.stop()
            raise

    def stop(self, timeout: float = 3.0) -> None:
        """Send what is queued, close our end (the child stops at the end of the stream) and reap it; pending
        results fail with RuntimeError. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        sock, proc = self._sock, self._proc
        if sock is not None:
            try:
                self._send_batch()
                if self._sender is not None and self._sender.pending:
                    sock.setblocking(True)
                    sock.settimeout(1.0)
                    self._sender.flush()
            except OSError:
                pass
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(sock.fileno())
                if self._writing:
                    self._loop.remove_writer(sock.fileno())
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        if proc is not None:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("media process did not stop: killed", extra={"pid": proc.pid})
                proc.kill()
                proc.wait(1.0)
        if sock is not None:
            sock.close()
        self._close_sent(everything=True)
        self._fail_pending("the media process is stopped")

    # -- commands ---------------------------------------------------------------------------------------------

    def call(
        self, fn: EngineCommand[object], *, fds: tuple[int, ...] = (), close: tuple[socket.socket, ...] = ()
    ) -> None:
        """Queue a command (sent with this loop iteration's batch; `fds` travel with it, `close` are closed once
        they did). Dropped and counted after stop()."""
        if isinstance(fn, InThread):
            raise TypeError("an InThread command cannot cross to the media process")
        if self._stopped or self._dead:
            self.dropped_commands += 1
            for sock in close:
                sock.close()
            return
        self._batch.append((0, fn))
        self._fds.extend(fds)
        self._closing.extend(close)
        self._schedule()

    def call_result(
        self, fn: EngineCommand[T], *, fds: tuple[int, ...] = (), close: tuple[socket.socket, ...] = ()
    ) -> Future[T]:
        future: Future[T] = Future()
        if self._stopped or self._dead:
            self.dropped_commands += 1
            for sock in close:
                sock.close()
            future.set_exception(RuntimeError("the media process is stopped"))
            return future
        self._next_id += 1
        self._results[self._next_id] = future
        self._batch.append((self._next_id, fn))
        self._fds.extend(fds)
        self._closing.extend(close)
        self._schedule()
        return future

    def _schedule(self) -> None:
        loop = self._loop
        if self._scheduled or loop is None:
            return
        self._scheduled = True
        if threading.get_ident() == self._loop_thread:
            loop.call_soon(self._send_batch)
        else:
            loop.call_soon_threadsafe(self._send_batch)

    def _send_batch(self) -> None:
        self._scheduled = False
        sender = self._sender
        if sender is None or self._dead:
            return
        if self._batch:
            batch, fds = self._batch, self._fds
            self._batch, self._fds = [], []
            try:
                sender.push(encode(batch, len(fds)), fds)
            except Exception as exc:  # a command that does not pickle: a bug of ours, never the child's
                log.exception("media commands not sent")
                for ident, _ in batch:
                    future = self._results.pop(ident, None)
                    if future is not None:
                        future.set_exception(exc)
        self._write()

    def _write(self) -> None:
        sender, loop, sock = self._sender, self._loop, self._sock
        assert sender is not None and loop is not None and sock is not None
        try:
            sender.flush()
        except OSError as exc:
            self._died(f"send failed: {exc}")
            return
        self._close_sent()
        if sender.pending and not self._writing:
            self._writing = True
            loop.add_writer(sock.fileno(), self._writable)
        elif not sender.pending and self._writing:
            self._writing = False
            loop.remove_writer(sock.fileno())

    def _writable(self) -> None:
        self._write()

    def _close_sent(self, *, everything: bool = False) -> None:
        """Close our copies of sockets whose descriptors the kernel has passed on."""
        sender = self._sender
        if not self._closing or sender is None:
            return
        sent = set(sender.sent_fds)
        keep = []
        for sock in self._closing:
            if everything or sock.fileno() in sent or sock.fileno() < 0:
                sock.close()
            else:
                keep.append(sock)
        self._closing = keep
        sender.sent_fds.clear()

    # -- from the child ---------------------------------------------------------------------------------------

    def _readable(self) -> None:
        sock = self._sock
        assert sock is not None
        try:
            alive = self._receiver.read(sock)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._died(f"receive failed: {exc}")
            return
        for items, _fds in self._receiver.frames():
            for kind, value in items:
                try:
                    self._dispatch(kind, value)
                except Exception:
                    log.exception("media process message failed")
        if not alive:
            self._died("it exited")

    def _dispatch(self, kind: str, value: Any) -> None:
        if kind == "e":
            if self.on_events is not None:
                self.on_events(value)
        elif kind == "r":
            ident, ok, result = value
            future = self._results.pop(ident, None)
            if future is not None and future.set_running_or_notify_cancel():
                if ok:
                    future.set_result(result)
                else:
                    future.set_exception(result)
        elif kind == "n":
            self.rtp_bank._notes(value)
        elif kind == "s":
            self._stats = value
            self.ticks = value["ticks"]
            counts, total = value["histogram"]
            self.tick_histogram.counts, self.tick_histogram.sum = counts, total
            self.lateness_ms = value["lateness_ms"]
            if value["streams"] is not None:
                self.rtp_bank._reports(value["streams"])
            if self._ready is not None and self.ticks:
                self._ready.set()

    def _died(self, why: str) -> None:
        if self._dead or self._stopped:
            return
        self._dead = True
        log.error("media process lost (%s): calls have no media until the node restarts", why)
        loop, sock = self._loop, self._sock
        if loop is not None and sock is not None and not loop.is_closed():
            loop.remove_reader(sock.fileno())
            if self._writing:
                loop.remove_writer(sock.fileno())
                self._writing = False
        self._close_sent(everything=True)
        self._fail_pending("the media process is gone")

    def _fail_pending(self, why: str) -> None:
        results, self._results = self._results, {}
        for future in results.values():
            if not future.done() and future.set_running_or_notify_cancel():
                future.set_exception(RuntimeError(why))

    # -- statistics -------------------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """The child's engine-thread figures (as EngineThread.stats(), up to a quarter second old), its pid and
        whether it runs."""
        out: dict[str, Any] = dict(self._stats.get("thread") or {"ticks": 0, "engine_legs": 0})
        out["dropped_commands"] = out.get("dropped_commands", 0) + self.dropped_commands
        out["media_process"] = {
            "pid": self.pid,
            "running": self.running,
            "gc": self._stats.get("gc"),
            "path": self._stats.get("path"),  # compiled or pure (see opencomms._compiled)
        }
        return out


class RemoteBank:
    """RtpBank's interface for the node's RTP sessions when the bank runs in the media process. The node keeps
    each session's `Stream` as a mirror: its sockets leave with the attach (closed here once passed), its
    `last_rtp`/`last_rtcp` and `quality()` follow the child's reports (a quarter second / a second old, the
    final figures at detach), its `on_key`/`on_fault` are called on the loop."""

    def __init__(self, host: MediaProcess, capacity: int) -> None:
        self.host = host
        self.capacity = capacity
        self._mirrors: dict[str, Stream] = {}

    @property
    def streams(self) -> int:
        return len(self._mirrors)

    def attach(self, stream: Stream) -> Future[None]:
        leg = stream.leg_id
        if leg in self._mirrors:
            failed: Future[None] = Future()
            failed.set_exception(ValueError(f"leg {leg!r} already has an RTP stream"))
            return failed
        socks = (stream.rtp_sock,) if stream.rtcp_sock is None else (stream.rtp_sock, stream.rtcp_sock)
        if any(sock.fileno() < 0 for sock in socks):
            closed: Future[None] = Future()
            closed.set_exception(ValueError(f"the RTP sockets of leg {leg!r} are closed"))
            return closed
        cmd = StreamAttach(
            leg,
            stream.config,
            stream.cname,
            stream.ssrc,
            stream.params,
            stream.rtcp_sock is not None,
            numbering=(stream.seq, stream.ts_base),
        )
        self._mirrors[leg] = stream
        future = self.host.call_result(cmd, fds=tuple(sock.fileno() for sock in socks), close=socks)
        future.add_done_callback(lambda f: self._attached(stream, f))
        return future

    def _attached(self, stream: Stream, future: Future[None]) -> None:
        if (future.cancelled() or future.exception() is not None) and self._mirrors.get(stream.leg_id) is stream:
            del self._mirrors[stream.leg_id]

    def detach(self, stream: Stream, *, bye: bool = True) -> Future[Any]:
        future = self.host.call_result(StreamDetach(stream.leg_id, bye))
        future.add_done_callback(lambda f: self._detached(stream, f))
        return future

    def _detached(self, stream: Stream, future: Future[StreamReport | None]) -> None:
        if self._mirrors.get(stream.leg_id) is stream:
            del self._mirrors[stream.leg_id]
        if not future.cancelled() and future.exception() is None:
            report = future.result()
            if report is not None:
                _mirror(stream, report)

    def update(self, stream: Stream, params: StreamParams) -> None:
        stream.params = params
        self.host.call(StreamUpdate(stream.leg_id, params))

    def send_dtmf(self, stream: Stream, key: str, duration_ms: float, gap_ms: float) -> None:
        self.host.call(StreamDtmf(stream.leg_id, key, duration_ms, gap_ms))

    def stats(self) -> dict[str, Any]:
        bank: dict[str, Any] = dict(self.host._stats.get("bank") or {})
        bank.setdefault("stream_faults", 0)
        bank.setdefault("stream_fault_kinds", {})
        bank["streams"] = len(self._mirrors)
        return bank

    def _notes(self, notes: list[tuple[str, str, str]]) -> None:
        for kind, leg, value in notes:
            st = self._mirrors.get(leg)
            if st is None:
                continue
            if kind == "key" and st.on_key is not None:
                st.on_key(value)
            elif kind == "fault" and st.fault is None:
                st.fault = value
                if st.on_fault is not None:
                    st.on_fault(value)

    def _reports(self, reports: list[tuple[str, float, float, tuple[Any, ...]]]) -> None:
        for leg, last_rtp, last_rtcp, figures in reports:
            st = self._mirrors.get(leg)
            if st is not None:
                _mirror(st, (leg, last_rtp, last_rtcp, CallQuality(*figures)))


def _mirror(stream: Stream, report: StreamReport) -> None:
    _leg, last_rtp, last_rtcp, quality = report
    if last_rtp > -math.inf:
        stream.last_rtp = last_rtp
    if last_rtcp > -math.inf:
        stream.last_rtcp = last_rtcp
    if quality is not None:
        stream.reported = quality
