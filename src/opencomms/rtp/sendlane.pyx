# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False, language_level=3
"""SendLane compiled (Cython, `make compiled`): the same class as sendlane.py, which stays the reference and documents
the API. The numbering and counters live in C arrays per row; `stamp` writes every armed row's header in one pass,
reading one attribute per row (`rtp_addr`) and making no Python object per packet; `ready` and `account` work on
the typed batch arrays `DatagramIO.send_batch` reads and writes."""

import numpy as np

from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free

__all__ = ["SendLane"]

cdef enum:
    _UNSENDABLE = -1

cdef int64_t _INT64_MAX = 0x7FFFFFFFFFFFFFFF


cdef class SendLane:
    """See sendlane.py (the reference)."""

    cdef readonly int capacity
    cdef readonly int stride
    cdef readonly int length
    cdef public object armed
    cdef uint8_t[::1] _armed
    cdef list _streams
    cdef uint16_t* _seq
    cdef uint32_t* _ssrc
    cdef uint8_t* _pt
    cdef int64_t* _offset
    cdef int64_t* _clock
    cdef uint8_t* _was
    cdef int64_t* _epoch
    cdef int64_t* _packets
    cdef int64_t* _octets
    cdef int64_t* _errors
    cdef tuple _rows_np, _epochs_np, _slots_np, _offsets_np, _lengths_np, _failures_np, _peers
    cdef int32_t[:, ::1] _rows
    cdef int64_t[:, ::1] _epochs
    cdef int32_t[:, ::1] _slots
    cdef int32_t[:, ::1] _offsets
    cdef int32_t[:, ::1] _lengths
    cdef int32_t[:, ::1] _failures
    cdef int _cursor

    def __cinit__(self, int capacity, int stride, int length):
        if capacity <= 0 or not 12 <= length <= stride:
            raise ValueError("capacity must be positive and 12 <= length <= stride")
        self._seq = <uint16_t*>calloc(capacity, sizeof(uint16_t))
        self._ssrc = <uint32_t*>calloc(capacity, sizeof(uint32_t))
        self._pt = <uint8_t*>calloc(capacity, sizeof(uint8_t))
        self._offset = <int64_t*>calloc(capacity, sizeof(int64_t))
        self._clock = <int64_t*>calloc(capacity, sizeof(int64_t))
        self._was = <uint8_t*>calloc(capacity, sizeof(uint8_t))
        self._epoch = <int64_t*>calloc(capacity, sizeof(int64_t))
        self._packets = <int64_t*>calloc(capacity, sizeof(int64_t))
        self._octets = <int64_t*>calloc(capacity, sizeof(int64_t))
        self._errors = <int64_t*>calloc(capacity, sizeof(int64_t))
        if (not self._seq or not self._ssrc or not self._pt or not self._offset or not self._clock or not self._was
                or not self._epoch or not self._packets or not self._octets or not self._errors):
            raise MemoryError()

    def __init__(self, int capacity, int stride, int length):
        self.capacity, self.stride, self.length = capacity, stride, length
        self.armed = np.zeros(capacity, dtype=np.uint8)
        self._armed = self.armed
        self._streams = [None] * capacity
        rows = np.zeros((2, capacity), dtype=np.int32)
        epochs = np.zeros((2, capacity), dtype=np.int64)
        slots = np.zeros((2, capacity), dtype=np.int32)
        offsets = np.zeros((2, capacity), dtype=np.int32)
        lengths = np.zeros((2, capacity), dtype=np.int32)
        failures = np.zeros((2, capacity), dtype=np.int32)
        self._rows, self._epochs, self._slots, self._offsets = rows, epochs, slots, offsets
        self._lengths, self._failures = lengths, failures
        self._rows_np, self._epochs_np, self._slots_np = tuple(rows), tuple(epochs), tuple(slots)
        self._offsets_np, self._lengths_np, self._failures_np = tuple(offsets), tuple(lengths), tuple(failures)
        self._peers = ([None] * capacity, [None] * capacity)
        for i in range(capacity):
            self._clock[i] = 1
        self._cursor = 0

    def __dealloc__(self):
        free(self._seq); free(self._ssrc); free(self._pt); free(self._offset); free(self._clock); free(self._was)
        free(self._epoch); free(self._packets); free(self._octets); free(self._errors)

    cdef int _check(self, Py_ssize_t row) except -1:
        if not 0 <= row < self.capacity:
            raise IndexError(row)
        return 0

    def arm(self, Py_ssize_t row, stream):
        self._check(row)
        offset, seq, ssrc, pt = stream.ts_offset, stream.seq, stream.ssrc, stream.params.payload_type
        clock = stream.clock
        if offset is None or not -_INT64_MAX - 1 <= offset <= _INT64_MAX or not 0 <= seq <= 0xFFFF:
            return False
        if not 0 <= ssrc <= 0xFFFFFFFF or not 0 <= pt <= 127 or not 0 < clock < 1 << 16:
            return False
        if self._streams[row] is not stream:
            self.fold(row)
            self._streams[row] = stream
        self._seq[row], self._ssrc[row], self._pt[row] = seq, ssrc, pt
        self._offset[row], self._clock[row], self._was[row] = offset, clock, bool(stream.was_sending)
        self._armed[row] = 1
        return True

    cpdef fold(self, Py_ssize_t row):
        self._check(row)
        st = self._streams[row]
        if st is None:
            return
        if self._armed[row]:
            st.seq = self._seq[row]
            st.was_sending = bool(self._was[row])
        if self._packets[row] or self._errors[row]:
            st.packets_sent += self._packets[row]
            st.octets_sent += self._octets[row]
            st.send_errors += self._errors[row]
            self._packets[row] = self._octets[row] = self._errors[row] = 0

    cpdef disarm(self, Py_ssize_t row):
        self.fold(row)
        self._armed[row] = 0

    cpdef cancel(self, Py_ssize_t row):
        self.disarm(row)
        self._epoch[row] += 1

    def release(self, Py_ssize_t row):
        self.cancel(row)
        self._streams[row] = None

    def fold_some(self, Py_ssize_t end, Py_ssize_t count):
        cdef Py_ssize_t i, row
        if end > self.capacity:
            end = self.capacity
        if end <= 0:
            return
        if count > end:
            count = end
        for i in range(count):
            row = self._cursor if self._cursor < end else 0
            self._cursor = row + 1
            st = self._streams[row]
            if st is None:
                continue
            if self._armed[row] and st.events_on:
                self.disarm(row)
            elif self._armed[row] or self._packets[row] or self._errors[row]:
                self.fold(row)

    def stamp(self, int flip, buf, long long units, const uint8_t[::1] live, Py_ssize_t end):
        cdef uint8_t[::1] out = buf
        cdef Py_ssize_t row, k = 0
        cdef int stride = self.stride, length = self.length
        cdef uint8_t* p
        cdef uint32_t ts, ssrc
        cdef uint16_t seq
        cdef list streams = self._streams
        cdef list peers
        if not 0 <= flip <= 1:
            raise IndexError(flip)
        if not 0 <= end <= self.capacity or live.shape[0] < end or out.shape[0] < end * stride:
            raise ValueError("rows beyond the capacity, the live flags or the buffer")
        peers = self._peers[flip]
        for row in range(end):
            if not self._armed[row] or not live[row]:
                continue
            st = streams[row]
            if st is None:
                continue
            addr = st.rtp_addr
            if addr is None:
                self._was[row] = 0
                continue
            p = &out[row * stride]
            seq, ssrc = self._seq[row], self._ssrc[row]
            ts = <uint32_t>(<uint64_t>(self._offset[row] + units * self._clock[row]) & 0xFFFFFFFFu)
            p[0] = 0x80
            p[1] = self._pt[row] | (0 if self._was[row] else 0x80)
            p[2] = seq >> 8
            p[3] = seq & 0xFF
            p[4] = ts >> 24
            p[5] = (ts >> 16) & 0xFF
            p[6] = (ts >> 8) & 0xFF
            p[7] = ts & 0xFF
            p[8] = ssrc >> 24
            p[9] = (ssrc >> 16) & 0xFF
            p[10] = (ssrc >> 8) & 0xFF
            p[11] = ssrc & 0xFF
            self._was[row] = 1
            self._seq[row] = <uint16_t>(seq + 1)
            self._rows[flip, k] = <int32_t>row
            self._epochs[flip, k] = self._epoch[row]
            self._slots[flip, k] = <int32_t>(2 * row)
            self._offsets[flip, k] = <int32_t>(row * stride)
            self._lengths[flip, k] = length
            peers[k] = addr
            k += 1
        return k

    def batch(self, int flip):
        if not 0 <= flip <= 1:
            raise IndexError(flip)
        return (self._slots_np[flip], self._offsets_np[flip], self._lengths_np[flip], self._peers[flip],
                self._failures_np[flip])

    cdef list _batch_peers(self, int flip):
        """The destinations of buffer `flip`'s batch (IndexError for a buffer that does not exist)."""
        if not 0 <= flip <= 1:
            raise IndexError(flip)
        return self._peers[flip]

    def ready(self, int flip, Py_ssize_t count):
        cdef Py_ssize_t i, k = 0, row
        cdef list peers = self._batch_peers(flip)
        for i in range(min(count, self.capacity)):
            row = self._rows[flip, i]
            if self._epochs[flip, i] != self._epoch[row]:
                continue
            if k != i:
                self._rows[flip, k] = self._rows[flip, i]
                self._epochs[flip, k] = self._epochs[flip, i]
                self._slots[flip, k] = self._slots[flip, i]
                self._offsets[flip, k] = self._offsets[flip, i]
                self._lengths[flip, k] = self._lengths[flip, i]
                peers[k] = peers[i]
            k += 1
        return k

    def account(self, int flip, Py_ssize_t count):
        cdef Py_ssize_t i, row
        cdef int err
        cdef list bad = None
        cdef list peers = self._batch_peers(flip)
        for i in range(min(count, self.capacity)):
            row = self._rows[flip, i]
            err = self._failures[flip, i]
            if err == 0:
                self._packets[row] += 1
                self._octets[row] += self._lengths[flip, i] - 12
            else:
                self._errors[row] += 1
                if err == _UNSENDABLE:
                    if bad is None:
                        bad = []
                    bad.append((row, peers[i]))
            if err or not self._armed[row]:
                self.fold(row)
        return bad
