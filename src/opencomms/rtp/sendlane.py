"""The RTP bank's send lane: the numbering of every stream in the steady state kept per bank row, and all of their
packets of a tick stamped (and their counters kept) in one call, instead of a Python step per stream.

Owns, per row while it is "armed", a copy of its stream's numbering (sequence number, SSRC, payload type, timestamp
offset and clock, whether it was sending: the marker), the per-row counters not yet folded back into the `Stream`
(packets and octets sent, send errors), and per packet buffer (the bank's two, used in turn) the batch last built:
each packet's row, socket slot, place, length and destination, as typed arrays for `DatagramIO.send_batch`. Knows
the bank's packet layout (row r: slot 2r, `stride` bytes at r * stride, a 12-byte header then the payload the bank
wrote) and which `Stream` attributes hold the numbering; must not touch sockets (sockio.py does), decide which
streams are in the steady state (the bank arms and disarms rows), nor block. Engine thread only.

The bank arms a row when its stream sends plain audio (no RFC 4733 event on or queued, not Opus, a destination,
sending) and disarms it, folding the numbering back into the `Stream`, before anything else uses it: RFC 4733
events, a parameter update, a fault, detachment; counters are folded before RTCP reports and round robin every
few ticks (`fold_some`) for readers on other threads. While armed, `stamp` reads one attribute of the stream per
tick, `rtp_addr` (symmetric RTP relatches it on the engine thread): a new destination takes effect at the next
packet, None sends nothing (the marker then starts the next one). A batch entry carries its row's epoch, which
`cancel` and `release` (fault, detach) advance: `ready` drops the entries of a row that changed hands or failed
since the batch was built, as the bank's own filter does for its Python-built packets.

This file is the reference (`OPENCOMMS_COMPILED=0`, and where there is no compiler); `sendlane.pyx` is the same
class in C (`make compiled`): one pass over the rows, one attribute read per armed row and tick, no Python object
made per packet.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from .stream import Stream

__all__ = ["SendLane"]

_Int32s = npt.NDArray[np.int32]
_HEADER = struct.Struct("!BBHII")
_INT64 = 1 << 63
_UNSENDABLE = -1  # sockio's error code of a destination no socket can take


class SendLane:
    """Per bank row (0 <= row < `capacity`, packets of `length` bytes `stride` apart in the bank's buffers): the
    numbering of an armed row's stream, its counters not yet folded back, and the batch of each packet buffer.

    `armed` (uint8 per row) says which rows the lane sends; the bank sends the others itself."""

    def __init__(self, capacity: int, stride: int, length: int) -> None:
        if capacity <= 0 or not 12 <= length <= stride:
            raise ValueError("capacity must be positive and 12 <= length <= stride")
        self.capacity = capacity
        self.stride = stride
        self.length = length
        self.armed = np.zeros(capacity, dtype=np.uint8)
        self._streams: list[Stream | None] = [None] * capacity  # bound from arm to release
        self._seq = [0] * capacity
        self._ssrc = [0] * capacity
        self._pt = [0] * capacity
        self._offset = [0] * capacity
        self._clock = [1] * capacity
        self._was = [False] * capacity
        self._epoch = [0] * capacity
        self._packets = [0] * capacity  # not yet folded back
        self._octets = [0] * capacity
        self._errors = [0] * capacity
        self._rows = tuple(np.zeros(capacity, dtype=np.int32) for _ in range(2))
        self._epochs = tuple(np.zeros(capacity, dtype=np.int64) for _ in range(2))
        self._slots = tuple(np.zeros(capacity, dtype=np.int32) for _ in range(2))
        self._offsets = tuple(np.zeros(capacity, dtype=np.int32) for _ in range(2))
        self._lengths = tuple(np.zeros(capacity, dtype=np.int32) for _ in range(2))
        self._peers: tuple[list[object], list[object]] = ([None] * capacity, [None] * capacity)
        self._failures = tuple(np.zeros(capacity, dtype=np.int32) for _ in range(2))
        self._cursor = 0

    def arm(self, row: int, stream: Stream) -> bool:
        """Send `row` in the lane from now on, numbered on from `stream`'s state (its `ts_offset` must be set);
        binds the row to `stream` until `release`. False (not armed) when a value is out of its field's range."""
        self._check(row)
        offset, seq, ssrc, pt = stream.ts_offset, stream.seq, stream.ssrc, stream.params.payload_type
        clock = stream.clock
        if offset is None or not -_INT64 <= offset < _INT64 or not 0 <= seq <= 0xFFFF or not 0 <= ssrc <= 0xFFFFFFFF:
            return False
        if not 0 <= pt <= 127 or not 0 < clock < 1 << 16:
            return False
        if self._streams[row] is not stream:
            self.fold(row)
            self._streams[row] = stream
        self._seq[row], self._ssrc[row], self._pt[row] = seq, ssrc, pt
        self._offset[row], self._clock[row], self._was[row] = offset, clock, bool(stream.was_sending)
        self.armed[row] = 1
        return True

    def fold(self, row: int) -> None:
        """Bring the row's stream up to date: its numbering (while armed) and the counters of what was sent."""
        self._check(row)
        st = self._streams[row]
        if st is None:
            return
        if self.armed[row]:
            st.seq = self._seq[row]
            st.was_sending = self._was[row]
        if self._packets[row] or self._errors[row]:
            st.packets_sent += self._packets[row]
            st.octets_sent += self._octets[row]
            st.send_errors += self._errors[row]
            self._packets[row] = self._octets[row] = self._errors[row] = 0

    def disarm(self, row: int) -> None:
        """Fold the row back and stop sending it in the lane (its stream numbers on in Python); idempotent."""
        self.fold(row)
        self.armed[row] = 0

    def cancel(self, row: int) -> None:
        """Disarm the row, and its packets in batches not sent yet stay unsent (its stream failed)."""
        self.disarm(row)
        self._epoch[row] += 1

    def release(self, row: int) -> None:
        """Cancel the row and unbind its stream (detached: the row may take another)."""
        self.cancel(row)
        self._streams[row] = None

    def fold_some(self, end: int, count: int) -> None:
        """Fold `count` of the rows below `end`, round robin from where the last call stopped. An armed row whose
        stream has an RFC 4733 event on (queued without `disarm`) is disarmed."""
        end = min(end, self.capacity)
        if end <= 0:
            return
        for _ in range(min(count, end)):
            row = self._cursor if self._cursor < end else 0
            self._cursor = row + 1
            st = self._streams[row]
            if st is None:
                continue
            if self.armed[row] and st.events_on:
                self.disarm(row)
            elif self.armed[row] or self._packets[row] or self._errors[row]:
                self.fold(row)

    def stamp(self, flip: int, buf: bytearray, units: int, live: npt.NDArray[np.uint8], end: int) -> int:
        """Stamp the header of every armed row below `end` whose `live` is set into `buf` (timestamp from the tick
        time `units`, 8 kHz: (offset + units * clock) mod 2^32; the marker on the first packet after a pause;
        sequence number + 1) and make them batch `flip`; returns how many. A row whose stream has no destination
        sends nothing."""
        if not 0 <= end <= self.capacity or live.shape[0] < end or len(buf) < end * self.stride:
            raise ValueError("rows beyond the capacity, the live flags or the buffer")
        rows, epochs = self._rows[flip], self._epochs[flip]
        slots, offsets, lengths, peers = self._slots[flip], self._offsets[flip], self._lengths[flip], self._peers[flip]
        pack, stride, length = _HEADER.pack_into, self.stride, self.length
        k = 0
        for row in np.flatnonzero(self.armed[:end] & live[:end]).tolist():
            st = self._streams[row]
            if st is None:
                continue
            addr = st.rtp_addr
            if addr is None:
                self._was[row] = False
                continue
            marker = 0 if self._was[row] else 0x80
            self._was[row] = True
            ts = (self._offset[row] + units * self._clock[row]) & 0xFFFFFFFF
            pack(buf, row * stride, 0x80, self._pt[row] | marker, self._seq[row], ts, self._ssrc[row])
            self._seq[row] = (self._seq[row] + 1) & 0xFFFF
            rows[k], epochs[k], slots[k], offsets[k], lengths[k] = row, self._epoch[row], 2 * row, row * stride, length
            peers[k] = addr
            k += 1
        return k

    def batch(self, flip: int) -> tuple[_Int32s, _Int32s, _Int32s, list[object], _Int32s]:
        """Batch `flip` as `DatagramIO.send_batch` takes it: slots, offsets, lengths, destinations, and the array it
        writes each packet's error into."""
        return self._slots[flip], self._offsets[flip], self._lengths[flip], self._peers[flip], self._failures[flip]

    def ready(self, flip: int, count: int) -> int:
        """Drop from the first `count` entries of batch `flip` those of rows cancelled since (in order); returns how
        many are left."""
        rows, epochs = self._rows[flip], self._epochs[flip]
        slots, offsets, lengths, peers = self._slots[flip], self._offsets[flip], self._lengths[flip], self._peers[flip]
        k = 0
        for i in range(min(count, self.capacity)):
            row = int(rows[i])
            if int(epochs[i]) != self._epoch[row]:
                continue
            if k != i:
                rows[k], epochs[k], peers[k] = rows[i], epochs[i], peers[i]
                slots[k], offsets[k], lengths[k] = slots[i], offsets[i], lengths[i]
            k += 1
        return k

    def account(self, flip: int, count: int) -> list[tuple[int, object]] | None:
        """Count the first `count` packets of batch `flip` as sent, or failed as its error array says; the rows of
        failures (and of rows disarmed meanwhile) are folded back at once. Returns the rows whose destination no
        socket takes (with it), for the bank to drop their streams, or None."""
        rows, failures, lengths, peers = self._rows[flip], self._failures[flip], self._lengths[flip], self._peers[flip]
        bad: list[tuple[int, object]] | None = None
        for i in range(min(count, self.capacity)):
            row, err = int(rows[i]), int(failures[i])
            if err == 0:
                self._packets[row] += 1
                self._octets[row] += int(lengths[i]) - 12
            else:
                self._errors[row] += 1
                if err == _UNSENDABLE:
                    bad = bad or []
                    bad.append((row, peers[i]))
            if err or not self.armed[row]:
                self.fold(row)
        return bad

    def _check(self, row: int) -> None:
        if not 0 <= row < self.capacity:
            raise IndexError(row)
