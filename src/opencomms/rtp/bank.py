"""Every RTP stream of one media engine, run on the engine thread once per 20 ms tick in one batch: what each SIP
leg hears leaves as RTP, what arrived on every socket is read, played out of the jitter buffers into the legs, and
RTCP goes out when due.

Owns the bank rows (one per attached stream), the socket poller, the batched 16 kHz <-> 8 kHz conversion and
G.711 coding, the G.722 coders of wideband rows (16 kHz straight, one coder per row and direction), RTP numbering
(sequence, timestamp from the tick time, marker: in Python for streams with RFC 4733 events on, Opus, on hold or
without a destination; by the send lane, sendlane.py, for every stream in the steady state, which it arms and
disarms), playout with loss concealment, and all socket I/O of attached streams. Must not touch asyncio objects
or block (sockets are non-blocking); other threads reach it only through `attach`/`detach`/`update`/`send_dtmf`,
which are engine commands (on the engine thread, RFC 4733 events are queued through `queue_dtmf`, which takes the
stream out of the send lane first).
"""

from __future__ import annotations

import logging
import socket
import struct
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar, final

import numpy as np
import numpy.typing as npt

from ..media.engine import Batch, MediaEngine, OutOfBandKey, Subscription
from ..media.engine.commands import EngineCommand
from ..media.faults import FaultLog
from ..media.g722 import G722Decoder, G722Encoder
from ..media.slots import SlotTable
from .g711rows import G711Rows
from .opus_rows import OpusRows
from .sendlane import SendLane
from .sockio import DatagramIO
from .stream import RATE, Outgoing, Stream, StreamParams

__all__ = ["EngineHost", "RtpBank"]

log = logging.getLogger("opencomms.rtp")

T = TypeVar("T")
FRAME: Final = 160  # 20 ms at 8 kHz: one G.711 payload (and one G.722 payload: 320 samples at 16 kHz)
PACKET: Final = 12 + FRAME
_HEADER = struct.Struct("!BBHII")
_TICK: Final = 0.02  # the engine's frame period
_FADE = (0.0, 1.0, 0.5, 0.25)  # concealment gain by consecutive lost frame; silence after
_MAX_ROUNDS: Final = 8  # socket reads per stream per tick at most (a flood waits in the kernel, which drops the excess)
RECEIVE_BUFFER = 24 * 1024
"""SO_RCVBUF of an attached stream's sockets (Linux doubles it: about 60 G.711 packets, 1.2 s): after a stall the
kernel has dropped what the jitter buffer would drop as too late anyway, instead of the bank reading seconds of stale
packets tick after tick (with the allocator's 256 KB, 12 s per stream: a stalled bank could not catch up)."""
_FAULTED: Final = -2  # _egen of a row whose stream was dropped after an error of its own: never live again
_FOLD_TICKS: Final = 12
"""Both lanes hand their counts back to the streams a twelfth of the rows per tick: each within 0.24 s."""


@dataclass(slots=True)
class _Outbox:
    """One tick's packets, sent together (paced: at the start of the next tick): RFC 4733 packets first (bytes of
    their own), then the audio packets, each in its stream's slot of packet buffer `flip` (the row it had when
    the batch was built: a stream no longer in that row sends nothing)."""

    flip: int
    due: float
    changes: int
    """The bank's `_changes` when the batch was built: unchanged at sending time, every stream in it is still in
    its row and healthy, and the lists below go to the socket layer as they are."""
    events: list[Outgoing]
    streams: list[Stream]
    slots: list[int]
    """Each audio packet's socket slot (its stream's row x 2: the RTP socket)..."""
    offsets: list[int]
    """...its place in the packet buffer..."""
    sizes: list[int]
    """...its length..."""
    peers: list[tuple[str, int]]
    """...and its destination."""
    lane: int = 0
    """Audio packets of the send lane's rows, after those above: the lane's batch `flip` (sendlane.py)."""


class EngineHost(Protocol):
    """What the bank needs of the engine's driver (clock.EngineThread fits): the engine, and a way to run
    commands on the engine's thread before the next tick."""

    engine: MediaEngine

    def call(self, fn: EngineCommand[object] | Callable[[MediaEngine], object]) -> None: ...

    def call_result(self, fn: EngineCommand[T]) -> Future[T]: ...


@final
class RtpBank:
    """The RTP streams of one media engine. A stream is attached to an existing engine leg (`attach`, an engine
    command); once per tick the engine hands the bank the INPUT of every row (its batch listener, after the
    mixing), and the bank, for every stream whose leg is still in the engine:

    1. sends: gathers the streams' frames in one indexing, converts them to 8 kHz in one product, encodes G.711
       in one lookup, stamps each header (sequence + 1, timestamp from the tick time, marker after a pause: the
       streams in the steady state all in one call of the send lane, which keeps their numbering and counters
       per row and folds them back into the `Stream` when Python needs them);
       RFC 4733 packets join the batch on the same SSRC while a DTMF event is on (audio held back): keys queued
       with `send_dtmf`, and the keys the other legs of a conversation send (`engine.out_of_band_keys`: a stream
       with telephone-event marks its leg out of band, so the engine keeps their tones out of its audio). With `paced`
       (default) the batch is sent by an engine command at the very start of the next tick, before the engine's
       own work, so every packet leaves within a few ms of its tick's due time whatever the tick costs (one
       tick, 20 ms, of added latency towards the SIP peer); without it, the `sendto`s follow at once;
    2. receives: one poll of every stream's sockets, then each datagram to its stream (validation, latching,
       statistics, keys, jitter buffer; RTCP). Arrival times are the kernel's (SO_TIMESTAMPNS, converted to the
       engine clock, which must then be time.monotonic as EngineThread's is) or, with `kernel_timestamps=False`
       or where unsupported, the tick time. Each RFC 4733 key that starts is pushed into the engine
       (`push_key`), which reports it as ToneDetected to the legs hearing this one in this same tick. With
       `lanes` (default) a stream in `on_rtp`'s common case has the socket layer's receive lane armed, which takes
       such packets to the jitter buffer in C and counts them (`DatagramIO.arm`; docs/architecture.md);
    3. plays out: one frame per stream from its jitter buffer, decoded and converted to 16 kHz in one batch,
       pushed into the legs in one batch (heard by the others at the next tick). LOST frames are concealed by repeating
       the last frame at 1, 1/2, 1/4 gain, then silence;
    4. sends RTCP for the streams whose report is due.

    Everything runs on the engine thread, so the event loop never competes for the GIL packet by packet (with
    the receive path on the loop, every `sendto` here handed the GIL to the loop and back: at 500 calls the two
    threads spent more time switching than working). A stream whose leg was removed by someone else (the engine
    row's generation changed) takes no further part, without delaying the others; nor does a stream that raised
    in any step (an address no socket takes, a datagram our code could not handle): its error is caught there,
    counted in `faults`, its sockets are no longer read and `on_fault` tells its owner, who ends the call.
    """

    def __init__(
        self,
        host: EngineHost,
        capacity: int = 1024,
        *,
        kernel_timestamps: bool = True,
        paced: bool = True,
        measure_lateness: bool = False,
        window: int = 500,
        lanes: bool = True,
    ) -> None:
        self.host = host
        self.lanes = lanes
        self._slots = SlotTable(capacity)
        self._streams: list[Stream | None] = [None] * capacity
        self._by_leg: dict[str, Stream] = {}
        self._io = DatagramIO(2 * capacity, kernel_timestamps)  # slot 2 * row: the stream's RTP socket, + 1: RTCP
        self._kernel_ts = self._io.timestamps
        self._pcm = np.zeros((capacity, 320), dtype=np.int16)
        self._erow = np.zeros(capacity, dtype=np.intp)  # per bank row: its leg's engine row...
        self._egen = np.full(capacity, -1, dtype=np.int64)  # ...and generation there (-1: no stream)
        self._subscription: Subscription | None = None
        self._keys: list[tuple[Stream, str, float]] = []  # RFC 4733 keys received in this tick's receive step
        # Streams whose jitter buffer holds or plays audio (a packet came since it was last found idle): the play
        # step pops only these, so a leg whose far end sends nothing costs nothing there. For the others, the
        # flush in which their buffer went idle (its skipped pops only decay its lateness peak: `rest` on waking).
        self._hearing: dict[Stream, None] = {}
        self._idle_since: dict[Stream, int] = {}
        self._g711 = G711Rows(capacity)  # G.711 coding and 8 <-> 16 kHz conversion, every row in one call a way
        # Two packet buffers, used in turn by successive batches: a paced batch is still waiting to be sent when
        # the next batch is built.
        self._txbufs = (bytearray(capacity * PACKET), bytearray(capacity * PACKET))
        self._tx = tuple(np.frombuffer(b, dtype=np.uint8).reshape(capacity, PACKET) for b in self._txbufs)
        self._flip = 0
        # The steady-state rows' numbering and counters, and their packets of a tick stamped in one call.
        self._tx_lane = SendLane(capacity, PACKET, PACKET)
        self.paced = paced
        self._paced: _Outbox | None = None
        first = getattr(host, "before_tick", None)
        self._first = isinstance(first, list)
        if isinstance(first, list):
            first.append(self._send_paced)  # the batch leaves ahead of commands queued during the tick
        self._rxbuf = bytearray(capacity * FRAME)
        self._rx = np.frombuffer(self._rxbuf, dtype=np.uint8).reshape(capacity, FRAME)
        self._state = bytearray(capacity)  # per row this tick: 0 nothing, 1 frame, 2 conceal
        self._state_np = np.frombuffer(self._state, dtype=np.uint8)
        self._alaw = np.zeros(capacity, dtype=np.bool_)
        self._fade = np.zeros(capacity, dtype=np.float64)  # per concealed row this tick: its gain
        self._up16 = np.zeros((capacity, 320), dtype=np.int16)  # what the rows play this tick, at 16 kHz
        self._g722 = np.zeros(capacity, dtype=np.bool_)  # rows coded G.722: 16 kHz both ways, no conversion
        self._coders: list[tuple[G722Encoder, G722Decoder] | None] = [None] * capacity
        self._last16 = np.zeros((capacity, 320), dtype=np.int16)  # a G.722 row's last good frame (concealment)
        self._opus = OpusRows(capacity, self._pcm)  # rows coded Opus (relayed browsers): 16 kHz, like G.722's
        self.measure_lateness = measure_lateness
        self._durations = np.zeros(window, dtype=np.float64)
        self._send_durations = np.zeros(window, dtype=np.float64)
        self._receive_durations = np.zeros(window, dtype=np.float64)
        self.lateness_ms = np.zeros(101, dtype=np.int64)
        """Packets by send delay after their tick's due time, in whole ms (last bucket: 100 ms or more); filled
        only with `measure_lateness`."""
        self.flushes = 0
        self.datagrams = 0
        self.laned = 0
        """Of `datagrams`, those the socket layer's lanes took (the streams' common case)."""
        self._changes = 0  # streams detached or dropped so far: a batch built before a change is filtered on sending
        self.faults = FaultLog(log, "RTP stream dropped after an error")
        """Streams dropped from the batch after raising (by step and exception type), counted; logged rarely."""

    # -- membership (engine thread, through host commands) ---------------------------------------------------

    @property
    def capacity(self) -> int:
        return self._slots.capacity

    @property
    def streams(self) -> int:
        return len(self._by_leg)

    def attach(self, stream: Stream) -> Future[None]:
        """Start sending and receiving for `stream` (its first params applied) on its engine leg, which must
        exist: add it first through the same host, so the commands keep their order. The future fails with
        KeyError (no such leg), ValueError (leg already attached) or BankFullError."""
        return self.host.call_result(_Attach(self, stream))

    def detach(self, stream: Stream, *, bye: bool = True) -> Future[None]:
        """Stop the stream (an RTCP BYE first, unless `bye` is False) and free its row; once the future is done the
        engine thread no longer uses its sockets, which the caller may close. Idempotent."""
        return self.host.call_result(_Detach(self, stream, bye))

    def update(self, stream: Stream, params: StreamParams) -> None:
        """Apply new negotiated parameters before the next tick (re-INVITE, hold)."""
        self.host.call(_Update(self, stream, params))

    def send_dtmf(self, stream: Stream, key: str, duration_ms: float, gap_ms: float) -> None:
        """Queue one RFC 4733 event (sent only while the stream has a telephone-event payload type)."""
        self.host.call(_Dtmf(self, stream, key, duration_ms, gap_ms))

    def queue_dtmf(self, st: Stream, key: str, duration_ms: float, gap_ms: float) -> None:
        """Engine thread: queue one RFC 4733 event on `st` (its numbering leaves the send lane first: the events
        take their sequence numbers from the stream). Whoever queues events on an attached stream goes through
        here."""
        if st.row >= 0 and self._streams[st.row] is st:
            self._tx_lane.disarm(st.row)
        st.dtmf.append((key, duration_ms, gap_ms))
        st.events_on = True

    def fold_counters(self) -> None:
        """Engine thread (or a test ticking by hand): every stream's counters from both lanes now (otherwise before
        RTCP reports, events, updates, faults and detachment, and round robin within `_FOLD_TICKS` ticks)."""
        for st in self._by_leg.values():
            if st.row >= 0:
                self._tx_lane.fold(st.row)
                self._absorb(st)

    def _attach(self, engine: MediaEngine, st: Stream) -> None:
        if st.leg_id in self._by_leg:
            raise ValueError(f"leg {st.leg_id!r} already has an RTP stream")
        if not engine.has_leg(st.leg_id):
            raise KeyError(f"no media leg {st.leg_id!r}")
        if st.rtp_sock.fileno() < 0 or (st.rtcp_sock is not None and st.rtcp_sock.fileno() < 0):
            raise ValueError(f"the RTP sockets of leg {st.leg_id!r} are closed")  # its call ended meanwhile
        erow, gen = engine.leg_key(st.leg_id)
        row = self._slots.add()
        self._erow[row], self._egen[row] = erow, gen
        st.row, st.offset = row, row * PACKET
        self._streams[row] = st
        self._by_leg[st.leg_id] = st
        self._idle_since[st] = self.flushes
        self._g711.reset(row)
        self._alaw[row] = st.params.alaw
        self._set_codec(row, st.params.g722)
        self._opus.set(row, st.params.opus, st.config.opus)
        for sock, slot in ((st.rtp_sock, 2 * row), (st.rtcp_sock, 2 * row + 1)):
            if sock is None:
                continue
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            self._io.register(slot, sock)
            st.fds += (slot,)
        st.lane_io, st.lane_slot = self._io, 2 * row
        st.schedule_rtcp(time.monotonic())
        st.key_sink = self._key_received
        self._out_of_band(engine, st, st.params.telephone_event is not None)
        if self._subscription is None:
            self._subscription = engine.subscribe(Batch(self._batch))

    def _detach(self, engine: MediaEngine, st: Stream, bye: bool) -> None:
        """Free the stream's row whatever happens on the way: an error sending its RTCP BYE or switching its leg's
        DTMF back in-band must not leave its sockets registered (the caller closes them) or its row taken."""
        if self._by_leg.get(st.leg_id) is not st:
            return
        try:
            self._tx_lane.release(st.row)  # counters and numbering back into the stream: the BYE's report counts them
            self._absorb(st, disarm=True)
            if bye and st.fault is None:
                st.send_rtcp(time.monotonic(), time.time(), bye=True)
            self._out_of_band(engine, st, False)  # a leg left without RTP hears tones in-band again
        except Exception as exc:
            self.faults.record(f"detach:{type(exc).__name__}", exc, call_id=st.leg_id)
        finally:
            self._changes += 1
            self._unregister(st)
            row = st.row
            del self._by_leg[st.leg_id]
            self._hearing.pop(st, None)
            self._idle_since.pop(st, None)
            self._streams[row] = None
            self._egen[row] = -1
            self._set_codec(row, False)
            self._opus.set(row, False, st.config.opus)
            self._slots.remove(row)
            st.row, st.key_sink = -1, None
            st.lane_io, st.lane_slot = None, -1

    def _unregister(self, st: Stream) -> None:
        """Stop polling the stream's sockets (idempotent; the owner may have closed them already)."""
        for slot in st.fds:
            if self._streams[slot >> 1] is st:
                self._io.unregister(slot)
        st.fds = ()

    def _absorb(self, st: Stream, disarm: bool = False) -> None:
        """Hand the stream what its receive lane consumed (and stop the lane, with `disarm`)."""
        pending = self._io.disarm(2 * st.row) if disarm else self._io.lane(2 * st.row)
        if pending is not None:
            st.absorb(pending)

    def _arm_rx(self, st: Stream) -> None:
        """Let the socket layer's lane take the stream's next packets if they would take `on_rtp`'s common path."""
        terms = st.lane_terms() if self.lanes else None
        if terms is not None:
            source, ssrc, pt, seq = terms
            self._io.arm(2 * st.row, st.jb.put, source, ssrc, pt, seq, st not in self._hearing)

    def _fault(self, st: Stream, step: str, exc: BaseException) -> None:
        """`st` raised in `step` of the batch: drop it from every later batch (its row stays taken until the
        owner detaches it), stop reading its sockets, count and (rarely) log it, and tell the owner once."""
        if st.fault is not None:
            return
        if st.row >= 0:
            self._absorb(st, disarm=True)
        st.fault = step
        self._changes += 1
        if st.row >= 0:
            self._egen[st.row] = _FAULTED
            self._tx_lane.cancel(st.row)
        self._unregister(st)
        self.faults.record(f"{step}:{type(exc).__name__}", exc, call_id=st.leg_id)
        if st.on_fault is not None:
            try:
                st.on_fault(step)
            except Exception as hand_off:
                self.faults.record("on_fault", hand_off)

    def _update(self, engine: MediaEngine, st: Stream, params: StreamParams) -> None:
        if st.row >= 0 and self._streams[st.row] is st:  # the stream's own code takes the new parameters (both ways)
            self._absorb(st, disarm=True)
            self._tx_lane.disarm(st.row)
        st.apply(params)
        if st.row >= 0:
            self._alaw[st.row] = params.alaw
            self._set_codec(st.row, params.g722)
            self._opus.set(st.row, params.opus, st.config.opus)
            self._out_of_band(engine, st, params.telephone_event is not None)

    def _set_codec(self, row: int, g722: bool) -> None:
        """Give `row` fresh G.722 coders (or drop them) when it switches between G.722 and G.711; the rate
        converters and concealment memory start over with the new codec."""
        if g722 == bool(self._g722[row]):
            return
        self._g722[row] = g722
        self._coders[row] = (G722Encoder(), G722Decoder()) if g722 else None
        self._g711.reset(row)
        self._last16[row] = 0

    def _out_of_band(self, engine: MediaEngine, st: Stream, on: bool) -> None:
        """A stream with telephone-event takes the DTMF its conversation sends as RFC 4733 events, not in-band:
        the engine keeps the tones out of its leg's INPUT and reports each key (queued in `_queue_keys`)."""
        if st.row >= 0 and engine.has_leg(st.leg_id) and engine.leg_key(st.leg_id)[1] == self._egen[st.row]:
            engine.set_out_of_band_dtmf(st.leg_id, on)

    def _queue_keys(self, keys: list[OutOfBandKey]) -> None:
        """Queue the keys the engine reported this tick for out-of-band legs on their streams: they start now (the
        engine spaces them), ahead of this tick's audio."""
        for item in keys:
            st = self._by_leg.get(item.leg_id)
            if st is not None and st.row >= 0:
                self.queue_dtmf(st, item.key, float(item.duration_ms), 0.0)

    def _key_received(self, st: Stream, key: str, arrival: float) -> None:
        """A stream decoded the start of an RFC 4733 event (during `_receive`): pushed to the engine after it."""
        self._keys.append((st, key, arrival))

    def _push_keys(self) -> None:
        """Hand the keys received in this tick to the engine (streams whose leg is still theirs only)."""
        engine = self.host.engine
        generations = engine.row_generations
        for st, key, arrival in self._keys:
            row = st.row
            if row >= 0 and st.fault is None and generations[self._erow[row]] == self._egen[row]:
                engine.push_key(st.leg_id, key, arrival)
        self._keys.clear()

    # -- the tick (engine thread) ------------------------------------------------------------------------------

    def _batch(self, inp: npt.NDArray[np.int32], now: float) -> None:
        """The engine's batch listener: every attached stream whose leg is still in its engine row takes part."""
        started = time.monotonic()
        n = self._slots.end
        if n == 0:
            return
        erow = self._erow[:n]
        live = self.host.engine.row_generations[erow] == self._egen[:n]
        streams = self._streams
        tick = [st for st in (streams[r] for r in np.flatnonzero(live).tolist()) if st is not None]
        if self._g722[:n].any() or self._opus.rows[:n].any():  # their 16 kHz frames, coded as they are
            pcm = self._pcm[:n]
            if len(tick) == n:
                pcm[...] = inp[erow]
            else:  # free rows, and streams whose leg was removed (its row may be past the engine's rows in use)
                pcm[...] = inp[np.where(live, erow, 0)]
                pcm[~live] = 0
        keys = self.host.engine.out_of_band_keys
        if keys:
            self._queue_keys(keys)
        self._send(inp, erow, live, now)
        sent = time.monotonic()
        self._receive(now)
        if self._keys:
            self._push_keys()
        received = time.monotonic()
        self._play(live, now)
        wall = 0.0
        for st in tick:
            if now >= st.rtcp_next and st.fault is None:
                wall = wall or time.time()
                try:
                    self._absorb(st)
                    self._tx_lane.fold(st.row)  # the report counts what the send lane sent
                    st.send_rtcp(now, wall)
                except Exception as exc:
                    self._fault(st, "rtcp", exc)
        slot = self.flushes % self._durations.size
        self._send_durations[slot] = sent - started
        self._receive_durations[slot] = received - sent
        self._durations[slot] = time.monotonic() - started
        self.flushes += 1

    def _send(
        self,
        inp: npt.NDArray[np.int32],
        erow: npt.NDArray[np.intp],
        live: npt.NDArray[np.bool_],
        now: float,
    ) -> None:
        n = erow.shape[0]
        flip = self._flip = 1 - self._flip
        codes = self._tx[flip][:n, 12:]  # the payloads, written in place
        self._g711.encode(inp, erow, live, self._alaw[:n], codes)
        wide = self._g722[:n]
        if wide.any():  # from the 16 kHz frame itself: the 8 kHz conversion above is not used for these rows
            coders, pcm = self._coders, self._pcm
            for row in np.flatnonzero(wide).tolist():
                coder = coders[row]
                if coder is not None:
                    codes[row] = np.frombuffer(coder[0].encode(pcm[row]), dtype=np.uint8)
        opus = self._opus
        if opus.rows[:n].any():  # one encoding per distinct mix: the payload is written into each row's slot
            opus.encode(n, codes)
        lengths = opus.lengths
        pack, buf = _HEADER.pack_into, self._txbufs[flip]
        units = round(now * RATE)
        box = _Outbox(flip, now, self._changes, [], [], [], [], [], [])
        events, streams, slots, offsets = box.events, box.streams, box.slots, box.offsets
        sizes, peers = box.sizes, box.peers
        lane = self._tx_lane
        own = self._streams
        for row in np.flatnonzero(live & (lane.armed[:n] == 0)).tolist():  # the rest are the lane's
            st = own[row]
            if st is None:
                continue
            p = st.params
            offset = st.ts_offset
            if offset is None:
                offset = st.ts_offset = st.ts_base - units
            ts = (offset + units * st.clock) & 0xFFFFFFFF
            if st.events_on:
                try:
                    if st.event_packets(now, ts, events) and st.config.suppress_audio_during_dtmf:
                        continue
                except Exception as exc:
                    self._fault(st, "send", exc)
                    continue
            addr = st.rtp_addr
            if addr is None or not p.sends:
                st.was_sending = False
                continue
            if not p.opus and not st.events_on and lane.arm(row, st):
                continue  # steady plain audio: numbered and stamped by the lane from this tick on
            size = PACKET
            if p.opus:
                size = 12 + lengths[st.row]
                if size <= 14:  # our DTX: a silent (or libopus-discontinued) frame is not sent
                    st.was_sending = False
                    continue
            marker = 0 if st.was_sending else 0x80
            st.was_sending = True
            pack(buf, st.offset, 0x80, p.payload_type | marker, st.seq, ts, st.ssrc)
            st.seq = (st.seq + 1) & 0xFFFF
            row = st.row
            streams.append(st)
            slots.append(2 * row)
            offsets.append(row * PACKET)
            sizes.append(size)
            peers.append(addr)
        box.lane = lane.stamp(flip, buf, units, live.view(np.uint8), n)
        lane.fold_some(n, -(-n // _FOLD_TICKS))
        if not streams and not events and not box.lane:
            return
        if self.paced:  # at the very start of the next tick, before the engine's own work
            box.due = now + _TICK
            if self._first:
                if self._paced is not None:  # a tick ran twice before one started (never with EngineThread)
                    self._transmit(self._paced)
                self._paced = box
            else:
                self.host.call(lambda _engine: self._transmit(box))
        else:
            self._transmit(box)

    def _send_paced(self) -> None:
        paced, self._paced = self._paced, None
        if paced is not None:
            self._transmit(paced)

    def _transmit(self, box: _Outbox) -> None:
        """Send a batch: its RFC 4733 packets one by one, then its audio packets in one call (sockio). A stream
        detached meanwhile (its socket may be closing) or dropped after an error sends nothing; a packet the
        kernel refused (unreachable, no buffer) is lost and its stream goes on; a destination no socket can take
        drops its stream."""
        measure = self.measure_lateness
        for st, data, addr in box.events:
            if st.row < 0 or st.fault is not None:
                continue
            try:
                st.rtp_sock.sendto(data, addr)
            except OSError:
                st.send_errors += 1
                continue
            except Exception as exc:
                st.send_errors += 1
                self._fault(st, "send", exc)
                continue
            st.packets_sent += 1
            st.octets_sent += len(data) - 12
            if measure:
                self.lateness_ms[min(100, max(0, int((time.monotonic() - box.due) * 1000.0)))] += 1
        if box.streams:
            self._transmit_own(box)
        if box.lane:
            self._transmit_lane(box)

    def _transmit_own(self, box: _Outbox) -> None:
        """The audio packets the Python path built."""
        measure = self.measure_lateness
        sent, slots, offsets, lengths, peers = box.streams, box.slots, box.offsets, box.sizes, box.peers
        if box.changes != self._changes:  # some stream left its row or failed since: it sends nothing
            sent, slots, offsets, lengths, peers = [], [], [], [], []
            for j, st in enumerate(box.streams):
                if st.row != box.slots[j] >> 1 or st.fault is not None:
                    continue
                sent.append(st)
                slots.append(box.slots[j])
                offsets.append(box.offsets[j])
                lengths.append(box.sizes[j])
                peers.append(box.peers[j])
        failed = self._io.send(
            self._txbufs[box.flip], slots, offsets, lengths, peers, self.lateness_ms if measure else None, box.due
        )
        for i, st in enumerate(sent):
            if failed is not None and i in failed:
                st.send_errors += 1
                if failed[i] < 0:
                    self._fault(st, "send", ValueError(f"no socket can send to {peers[i]!r}"))
                continue
            st.packets_sent += 1
            st.octets_sent += lengths[i] - 12

    def _transmit_lane(self, box: _Outbox) -> None:
        """The send lane's packets: those of rows cancelled since (detached, failed) stay unsent, the rest go in
        one call, and the lane counts them (a destination no socket takes drops its stream)."""
        lane, flip = self._tx_lane, box.flip
        count = lane.ready(flip, box.lane)
        if not count:
            return
        slots, offsets, lengths, peers, errors = lane.batch(flip)
        lateness = self.lateness_ms if self.measure_lateness else None
        self._io.send_batch(self._txbufs[flip], slots, offsets, lengths, peers, count, errors, lateness, box.due)
        bad = lane.account(flip, count)
        for row, peer in bad or ():
            st = self._streams[row]
            if st is not None:
                self._fault(st, "send", ValueError(f"no socket can send to {peer!r}"))

    def _receive(self, now: float) -> None:
        """Read every socket: the armed receive lanes' packets are in their jitter buffers already (their counts
        absorbed before anything else of their stream runs, and a part of the rows per tick); the rest go to
        `on_rtp`/`on_rtcp`, after which the stream's lane is armed again if it is back in its common case."""
        kernel = self._kernel_ts
        offset = time.time() - time.monotonic() if kernel else 0.0
        io, streams = self._io, self._streams
        hearing = self._hearing
        left = io.receive(_MAX_ROUNDS, now, offset)
        count = io.consumed
        self.laned += count
        for slot, exc in io.errors():
            st = streams[slot >> 1]
            if st is not None and st.fault is None:
                st.invalid_packets += 1
                self._fault(st, "receive", exc)
        for slot in io.woken():
            st = streams[slot >> 1]
            if st is not None and st not in hearing:
                self._wake(st)
        for i in range(left):
            slot, data, addr, stamp = io.take(i)
            st = streams[slot >> 1]
            if st is None or st.fault is not None:
                continue
            if data is None:
                st.invalid_packets += 1
                continue
            count += 1
            arrival = stamp - offset if stamp >= 0.0 else now
            try:
                if slot & 1:
                    st.on_rtcp(data, addr, arrival, stamp if stamp >= 0.0 else time.time())
                else:
                    self._absorb(st)
                    st.on_rtp(data, addr, arrival)
                    if st not in hearing:
                        self._wake(st)
                    self._arm_rx(st)
            except Exception as exc:  # a datagram our code could not handle: its stream only is dropped
                st.invalid_packets += 1
                self._fault(st, "receive", exc)
        for slot, pending in io.due(self.flushes % _FOLD_TICKS, _FOLD_TICKS):
            st = streams[slot >> 1]
            if st is not None:
                st.absorb(pending)
        self.datagrams += count

    def _wake(self, st: Stream) -> None:
        """The stream hears packets again: its buffer is played from this tick on."""
        self._hearing[st] = None
        since = self._idle_since.pop(st, None)
        if since is not None:
            st.jb.rest(self.flushes - since - 1)

    def _play(self, live: npt.NDArray[np.bool_], now: float) -> None:
        """Pop a frame from each hearing stream of a live leg; a stream whose buffer is found idle leaves the set
        until its next packet (`_receive`)."""
        n = self._slots.end
        state, rxbuf = self._state, self._rxbuf
        state_np = self._state_np[:n]
        state_np[:] = 0
        played: list[Stream] = []
        concealed: list[Stream] = []
        hearing = self._hearing
        for st in list(hearing) if hearing else ():
            row = st.row
            if row < 0 or row >= n or not live[row] or not st.params.receives or st.fault is not None:
                continue
            jb = st.jb
            try:
                got = jb.pop_into(now, rxbuf, row * FRAME)  # the frame, when there is one, into the row's place
            except Exception as exc:
                self._fault(st, "play", exc)
                continue
            if got == 0:
                st.conceal = 0
                if jb.idle:
                    del hearing[st]
                    self._idle_since[st] = self.flushes
                    self._io.quiet(2 * row)
            elif got == 2:  # LOST
                if not st.lost_run:  # the run's next packet may be the peer's DTX ending: `on_rtp` decides
                    self._absorb(st, disarm=True)
                st.frames_concealed += 1
                st.lost_run += 1
                st.conceal += 1
                if st.conceal < len(_FADE):
                    state[row] = 2
                    concealed.append(st)
            else:
                state[row] = 1
                st.conceal = 0
                if st.lost_run:
                    st.lost_run = 0
                    self._arm_rx(st)
                st.frames_played += 1
                played.append(st)
        if not played and not concealed:
            return
        fade = self._fade
        for st in concealed:
            fade[st.row] = _FADE[st.conceal]
        up = self._up16[:n]
        self._g711.decode(self._rx[:n], state_np, fade[:n], self._alaw[:n], up)
        if self._g722[:n].any():
            self._play_wide(up, played, concealed)
        if self._opus.rows[:n].any():
            self._opus.decode(self._rx, up, played, concealed)
        rows = np.fromiter((st.row for st in played + concealed), dtype=np.intp, count=len(played) + len(concealed))
        self.host.engine.push_inbound_rows(self._erow[rows], up[rows])

    def _play_wide(self, up: npt.NDArray[np.int16], played: list[Stream], concealed: list[Stream]) -> None:
        """Overwrite the 16 kHz frames of the G.722 rows: decoded straight from their payloads (no 8 kHz step),
        or concealed from their last good frame."""
        wide, coders, last16, rx = self._g722, self._coders, self._last16, self._rx
        for st in played:
            row = st.row
            coder = coders[row]
            if wide[row] and coder is not None:
                last16[row] = coder[1].decode(rx[row].tobytes())
                up[row] = last16[row]
        for st in concealed:
            row = st.row
            if wide[row]:
                up[row] = (last16[row] * _FADE[st.conceal]).astype(np.int16)

    # -- statistics ----------------------------------------------------------------------------------------------

    def stats(self) -> dict[str, float | int | dict[str, int]]:
        """Counters and batch durations (ms) over the last `window` ticks (flush = all four steps; send = the
        conversion, encoding and every sendto; receive = polling, reading and handling every datagram); safe
        from any thread."""
        k = min(self.flushes, self._durations.size)
        recent = self._durations[:k] * 1000.0 if k else np.zeros(1)
        send = self._send_durations[:k] * 1000.0 if k else np.zeros(1)
        receive = self._receive_durations[:k] * 1000.0 if k else np.zeros(1)
        out: dict[str, float | int | dict[str, int]] = {
            "streams": len(self._by_leg),
            "flushes": self.flushes,
            "datagrams": self.datagrams,
            "datagrams_laned": self.laned,
            "stream_faults": self.faults.total,
            "stream_fault_kinds": dict(self.faults.counts),
            "flush_p50_ms": round(float(np.percentile(recent, 50)), 3),
            "flush_p99_ms": round(float(np.percentile(recent, 99)), 3),
            "flush_max_ms": round(float(recent.max()), 3),
            "send_p50_ms": round(float(np.percentile(send, 50)), 3),
            "send_p99_ms": round(float(np.percentile(send, 99)), 3),
            "receive_p50_ms": round(float(np.percentile(receive, 50)), 3),
            "receive_p99_ms": round(float(np.percentile(receive, 99)), 3),
        }
        total = int(self.lateness_ms.sum())
        if total:
            out["packets_measured"] = total
            out["within_5ms_pct"] = round(100.0 * float(self.lateness_ms[:5].sum()) / total, 3)
        return out


# -- the bank's commands (in this process only: they carry the bank and the stream objects) ---------------------


@dataclass(frozen=True, slots=True)
class _Attach:
    bank: RtpBank
    stream: Stream

    def apply(self, engine: MediaEngine) -> None:
        self.bank._attach(engine, self.stream)


@dataclass(frozen=True, slots=True)
class _Detach:
    bank: RtpBank
    stream: Stream
    bye: bool

    def apply(self, engine: MediaEngine) -> None:
        self.bank._detach(engine, self.stream, self.bye)


@dataclass(frozen=True, slots=True)
class _Update:
    bank: RtpBank
    stream: Stream
    params: StreamParams

    def apply(self, engine: MediaEngine) -> None:
        self.bank._update(engine, self.stream, self.params)


@dataclass(frozen=True, slots=True)
class _Dtmf:
    bank: RtpBank
    stream: Stream
    key: str
    duration_ms: float
    gap_ms: float

    def apply(self, engine: MediaEngine) -> None:
        self.bank.queue_dtmf(self.stream, self.key, self.duration_ms, self.gap_ms)
