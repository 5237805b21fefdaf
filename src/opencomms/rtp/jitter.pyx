# cython: boundscheck=False, wraparound=False, initializedcheck=False, language_level=3
"""JitterBuffer compiled (Cython, `make compiled`): the same class as jitter.py, which stays the reference and
documents the API and the playout rules. JitterConfig, Lost and LOST are imported from jitter_types.py by both, so
`out is LOST` and pickled configs hold whichever path runs.

What differs is the representation. The held packets are two parallel C arrays: their extended timestamps (int64,
sorted) and their payloads (references to the bytes objects put), the live entries a window [head, tail) that
slides on as frames are taken and is compacted to the front (or the arrays grown, from 8 up to 2 x (capacity + 1)
entries) when a packet meets the end; the reference holds a dict and a sorted list kept with bisect. The state is
typed fields: each `int | None` of the reference is a value and a flag. A frame that is exactly one held packet is
that packet's bytes object (`pop`, as in the reference) or one memcpy into the caller's buffer (`pop_into`); a frame
assembled from several packets is filled and copied in C. No Python object is made for an in-order packet put and
popped with `pop_into`. Differences at the edges only: ssrc and timestamps must fit in 64 bits (RTP's have 32), a
payload must be bytes or a bytearray (held as a bytes copy), `config` is read-only, and the buffer does not pickle.
tests/unit/rtp/test_rtp_jitter_twin.py holds it to the reference on random streams.
"""

cimport cython
from cpython.buffer cimport PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_Check, PyByteArray_CheckExact, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_Check, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.ref cimport PyObject
from libc.math cimport INFINITY
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy, memmove, memset

from .jitter_types import LOST, JitterConfig, Lost

__all__ = ["LOST", "JitterBuffer", "JitterConfig", "Lost"]

cdef extern from *:
    """
    /* Every float operation rounded on its own, as Python's: no fused multiply-add (-march=native has FMA, and
       GCC contracts a * b - c by default), so that the jitter estimate and the target are the reference's. */
    #if defined(__clang__)
    #pragma STDC FP_CONTRACT OFF
    #elif defined(__GNUC__)
    #pragma GCC optimize ("fp-contract=off")
    #endif
    #define OC_JB_LEN(o) PyBytes_GET_SIZE((PyObject *)(o))
    #define OC_JB_DATA(o) ((const unsigned char *)PyBytes_AS_STRING((PyObject *)(o)))
    #define OC_JB_INCREF(o) Py_INCREF((PyObject *)(o))
    #define OC_JB_DECREF(o) Py_DECREF((PyObject *)(o))
    """
    Py_ssize_t OC_JB_LEN(PyObject*) nogil
    const unsigned char* OC_JB_DATA(PyObject*) nogil
    void OC_JB_INCREF(PyObject*)
    void OC_JB_DECREF(PyObject*)

cdef object _LOST = LOST
cdef int64_t _TS_MASK = 0xFFFFFFFF
cdef int64_t _TS_MOD = _TS_MASK + 1
cdef int64_t _HALF = _TS_MOD // 2
cdef double _PEAK_DECAY = 0.998  # per pop
cdef Py_ssize_t _FIRST_SIZE = 8  # entries of the arrays at the first packet

cdef enum:
    _NONE = 0
    _FRAME = 1
    _LOST_CODE = 2


@cython.final
cdef class JitterBuffer:
    """See jitter.py (the reference): `put` packets as they arrive, `pop(now)` (or `pop_into`) once per 20 ms."""

    cdef readonly object config
    cdef readonly Py_ssize_t frame_samples
    # Counters (see the reference).
    cdef public long long received, duplicates, late, stale, lost, underflows
    cdef public long long overflow_dropped, latency_dropped, ssrc_changes, jumps
    cdef public double _peak  # worst recent lateness + a frame, decaying (public as in the reference, for tests)
    # Settings.
    cdef Py_ssize_t _capacity, _max_size, _idle_after, _shrink_len
    cdef double _rate, _min, _max, _jump, _stale_window
    cdef unsigned char _fill
    # The held packets: _ts[i] and _pay[i] for head <= i < tail, sorted by timestamp; arrays of _size entries.
    cdef int64_t* _ts
    cdef PyObject** _pay
    cdef Py_ssize_t _head, _tail, _size
    # Stream state (see the reference's __init__ for each).
    cdef int64_t _ssrc, _old_ssrc, _raw, _shift, _end, _play
    cdef bint _has_ssrc, _has_old, _has_raw, _playing, _has_transit
    cdef double _switched, _since, _transit, _jitter, _target, _window_min
    cdef Py_ssize_t _stalled, _window_pops, _window_len
    cdef object _frame  # the frame `pop` returns, handed over from _pop

    def __cinit__(self, *args, **kwargs):
        self._ts = NULL
        self._pay = NULL
        self._head = self._tail = self._size = 0

    def __dealloc__(self):
        self._drop(self._tail - self._head)
        free(self._ts)
        free(self._pay)

    def __init__(self, config=None):
        c = config or JitterConfig()
        frame = c.clock_rate * c.frame_ms // 1000
        if not 0 < c.min_delay_ms <= c.max_delay_ms or c.capacity < 2 or c.idle_after_frames < 1:
            raise ValueError("need 0 < min_delay_ms <= max_delay_ms, capacity >= 2, idle_after_frames >= 1")
        if frame < 1:
            raise ValueError("need a frame of at least one sample (clock_rate * frame_ms >= 1000)")
        self._drop(self._tail - self._head)  # __init__ called again: start empty
        self.config = c
        self.frame_samples = frame
        self._capacity = c.capacity
        self._max_size = 2 * (self._capacity + 1)
        self._idle_after = c.idle_after_frames
        self._shrink_len = c.shrink_window_frames
        self._rate = c.clock_rate
        self._min = c.min_delay_ms * c.clock_rate / 1000.0
        self._max = c.max_delay_ms * c.clock_rate / 1000.0
        self._jump = c.jump_ms * c.clock_rate / 1000.0
        self._stale_window = c.max_delay_ms / 500.0
        self._fill = bytes([c.fill])[0]
        self._has_ssrc = self._has_old = False
        self._ssrc = self._old_ssrc = 0
        self._switched = 0.0
        self._since = 0.0
        self._jitter = 0.0
        self._peak = 0.0
        self._target = self._min
        self._window_len = self._shrink_len
        self._frame = None
        self._restart()
        self.received = self.duplicates = self.late = self.stale = self.lost = self.underflows = 0
        self.overflow_dropped = self.latency_dropped = self.ssrc_changes = self.jumps = 0

    # -- state -------------------------------------------------------------------------------------------------

    @property
    def playing(self):
        return self._playing

    @property
    def idle(self):
        """Nothing buffered and not playing: `pop` returns None (and only decays the lateness peak) until `put`."""
        return not self._playing and self._head == self._tail

    def rest(self, pops):
        """Account for `pops` calls of `pop` skipped while idle (their only effect: the lateness peak decays)."""
        if pops > 0 and self._peak:
            self._peak *= 0.998**pops  # a Python float power, as in the reference

    @property
    def target_ms(self):
        """Target playout delay, as of the last `pop` (it follows the jitter measured by the packets put)."""
        self._retarget()
        return self._target * 1000.0 / self._rate

    @property
    def jitter(self):
        """RFC 3550 interarrival jitter J of the packets put, in timestamp units."""
        return self._jitter

    @property
    def jitter_ms(self):
        """RFC 3550 interarrival jitter of the packets put, in milliseconds."""
        return self._jitter * 1000.0 / self._rate

    @property
    def level_ms(self):
        """Audio buffered beyond the playout point, in milliseconds."""
        cdef int64_t level
        if not self._playing or self._head == self._tail:
            return 0.0
        level = self._end - self._play
        return <double>(level if level > 0 else 0) * 1000.0 / self._rate

    def __len__(self):
        return self._tail - self._head

    def reset(self):
        """Forget the stream (packets, playout point, SSRC); the jitter estimate and target are kept."""
        self._restart()
        self._has_ssrc = self._has_old = False

    cdef int _restart(self) except -1:
        self._drop(self._tail - self._head)
        self._head = self._tail = 0
        self._has_raw = False
        self._raw = 0
        self._shift = 0
        self._end = 0
        self._playing = False
        self._play = 0
        self._stalled = 0
        self._has_transit = False
        self._transit = 0.0
        self._window_min = INFINITY
        self._window_pops = 0
        return 0

    # -- the held packets --------------------------------------------------------------------------------------

    cdef void _drop(self, Py_ssize_t k) noexcept:
        """Remove the k oldest packets (state updated before each reference is released)."""
        cdef PyObject* gone
        while k > 0 and self._head < self._tail:
            gone = self._pay[self._head]
            self._head += 1
            k -= 1
            OC_JB_DECREF(gone)

    cdef int _room(self) except -1:
        """Make room after the tail (called when the tail is at the end of the arrays)."""
        cdef Py_ssize_t count = self._tail - self._head, size
        cdef void* grown
        if self._size and (count * 2 <= self._size or self._size >= self._max_size):
            pass  # enough free entries before the head (always so at the largest size: count <= capacity)
        else:
            size = self._size * 2 if self._size else _FIRST_SIZE
            if size > self._max_size:
                size = self._max_size
            grown = realloc(self._ts, <size_t>size * sizeof(int64_t))
            if grown == NULL:
                raise MemoryError()
            self._ts = <int64_t*>grown
            grown = realloc(self._pay, <size_t>size * sizeof(PyObject*))
            if grown == NULL:
                raise MemoryError()
            self._pay = <PyObject**>grown
            self._size = size
        if self._head:
            memmove(self._ts, self._ts + self._head, <size_t>count * sizeof(int64_t))
            memmove(self._pay, self._pay + self._head, <size_t>count * sizeof(PyObject*))
            self._head, self._tail = 0, count
        return 0

    # -- input ---------------------------------------------------------------------------------------------------

    def put_packet(self, packet, double arrival):
        """`put` for a parsed packet."""
        self.put(packet.ssrc, packet.timestamp, packet.payload, arrival)

    def put(self, int64_t ssrc, int64_t timestamp, payload, double arrival):
        """Add one packet's payload (RTP timestamp, arrival time in seconds)."""
        cdef Py_ssize_t n, pos, lo, hi, mid, off
        cdef int64_t raw, delta, ext, anchor, target, play, oldest
        cdef double transit, last, d
        cdef bint playing
        cdef PyObject* gone
        if PyBytes_Check(payload):
            n = PyBytes_GET_SIZE(payload)
        elif PyByteArray_Check(payload):
            payload = bytes(payload)
            n = PyBytes_GET_SIZE(payload)
        else:
            raise TypeError(f"payload must be bytes, not {type(payload).__name__}")
        if n == 0:
            return
        if not self._has_ssrc or ssrc != self._ssrc:
            if self._has_old and ssrc == self._old_ssrc and arrival - self._switched < self._stale_window:
                self.stale += 1  # a straggler of the stream just replaced (later, switching back is allowed)
                return
            if self._has_ssrc:
                self.ssrc_changes += 1
                self._old_ssrc, self._has_old = self._ssrc, True
                self._switched = arrival
            self._ssrc, self._has_ssrc = ssrc, True
            self._restart()
        if not self._has_raw:
            raw = self._raw = timestamp
            self._has_raw = True
        else:
            delta = (timestamp - self._raw) & _TS_MASK  # modulo 2**32, as Python's % for any sign
            raw = self._raw + (delta - _TS_MOD if delta >= _HALF else delta)
            if raw > self._raw:
                self._raw = raw
        ext = raw + self._shift
        playing, play = self._playing, self._play
        if self._head < self._tail or playing:
            anchor = play if playing else self._ts[self._head]
            if ext - self._end > self._jump or anchor - ext > self._jump:
                # The sender's clock jumped (no new SSRC): continue its audio right after what is buffered.
                self.jumps += 1
                target = self._end if self._end > anchor else anchor
                self._shift += target - ext
                ext = target
                self._has_transit = False
        self.received += 1
        # RFC 3550 A.8 interarrival jitter, in timestamp units.
        transit = arrival * self._rate - <double>ext
        if self._has_transit:
            last = self._transit
            d = transit - last if transit > last else last - transit
            if d < self._jump:  # a jump in transit is a clock change, not jitter
                self._jitter += (d - self._jitter) * 0.0625
        self._transit, self._has_transit = transit, True
        if playing and ext + n <= play:
            self.late += 1
            d = <double>(play - ext + self.frame_samples)
            if d > self._peak:
                self._peak = d
            return
        if self._head == self._tail or ext > self._ts[self._tail - 1]:
            pos = self._tail
        else:
            lo, hi = self._head, self._tail - 1  # the first entry >= ext (the last one is)
            while lo < hi:
                mid = (lo + hi) >> 1
                if self._ts[mid] < ext:
                    lo = mid + 1
                else:
                    hi = mid
            pos = lo
            if self._ts[pos] == ext:
                self.duplicates += 1
                return
        if self._head == self._tail and not playing:
            self._since = arrival
        if self._tail == self._size:
            off = pos - self._head
            self._room()
            pos = self._head + off
        if pos < self._tail:
            memmove(self._ts + pos + 1, self._ts + pos, <size_t>(self._tail - pos) * sizeof(int64_t))
            memmove(self._pay + pos + 1, self._pay + pos, <size_t>(self._tail - pos) * sizeof(PyObject*))
        self._ts[pos] = ext
        OC_JB_INCREF(<PyObject*>payload)
        self._pay[pos] = <PyObject*>payload
        self._tail += 1
        if ext + n > self._end:
            self._end = ext + n
        if self._tail - self._head > self._capacity:
            oldest, gone = self._ts[self._head], self._pay[self._head]
            self._head += 1
            self.overflow_dropped += 1
            if playing and play < oldest + OC_JB_LEN(gone):
                self._play = oldest + OC_JB_LEN(gone)
            OC_JB_DECREF(gone)

    cdef inline void _retarget(self) noexcept:
        cdef double want = self.frame_samples + 4.0 * self._jitter, target = self._min
        if self._peak > want:
            want = self._peak
        if want > target:
            target = want
        self._target = target if target < self._max else self._max

    # -- output --------------------------------------------------------------------------------------------------

    def pop(self, double now):
        """The next 20 ms frame (bytes), LOST, or None (see the reference). Call once per 20 ms."""
        cdef int code = self._pop(now, NULL)
        if code == _FRAME:
            frame, self._frame = self._frame, None
            return frame
        return _LOST if code == _LOST_CODE else None

    def pop_into(self, double now, out, Py_ssize_t offset):
        """`pop`, the frame written into `out[offset : offset + frame_samples]` (a bytearray, or any writable
        buffer) instead of returned: 1 when a frame was written, 2 for LOST, 0 for None (`out` untouched then).
        Raises ValueError, before popping, when that slice is not inside `out`."""
        cdef Py_buffer view
        cdef int code
        if PyByteArray_CheckExact(out):
            self._check_slice(offset, PyByteArray_GET_SIZE(out))
            return self._pop(now, <unsigned char*>PyByteArray_AS_STRING(out) + offset)
        PyObject_GetBuffer(out, &view, PyBUF_WRITABLE)
        try:
            self._check_slice(offset, view.len)
            code = self._pop(now, <unsigned char*>view.buf + offset)
        finally:
            PyBuffer_Release(&view)
        return code

    cdef int _check_slice(self, Py_ssize_t offset, Py_ssize_t size) except -1:
        if offset < 0 or offset > size - self.frame_samples:
            frame = self.frame_samples
            raise ValueError(f"out[{offset} : {offset} + {frame}] is outside the buffer of {size} bytes")
        return 0

    cdef int _pop(self, double now, unsigned char* dst) except -1:
        """`pop`: the frame written at dst (or, without dst, left in self._frame); _FRAME, _LOST_CODE or _NONE."""
        cdef Py_ssize_t frame = self.frame_samples
        cdef int64_t play, nxt, gap, skip
        cdef bint keep = dst == NULL
        cdef int got
        self._peak *= _PEAK_DECAY  # ~7 s half-life at 50 pops/s
        if not self._playing:
            if self._head == self._tail:  # idle: no target needed
                return _NONE
            self._retarget()
            if (now - self._since) * self._rate < self._target - 1e-6:
                return _NONE
            play = self._play = self._ts[self._head]
            self._playing = True
            self._stalled = 0
        else:
            play = self._play
        got = self._take(play, dst, keep)
        if not got and self._head < self._tail:
            nxt = self._ts[self._head]
            gap = (nxt - play) // frame
            if self._stalled:  # the frames we waited through were a gap in the stream, not lateness
                skip = gap if gap < self._stalled else self._stalled
                play += skip * frame
                gap -= skip
                self._stalled = 0
            if (nxt - play) > self._jump:
                self.jumps += 1
                play = nxt
            elif gap >= 1:
                self._play = play + frame
                self.lost += 1
                return _LOST_CODE
            self._play = play
            got = self._take(play, dst, keep)
        if got:
            self._stalled = 0
            play += frame
            self._play = play
            self._watch_level(play)
            return _FRAME
        self.underflows += 1
        self._stalled += 1
        if self._stalled > self._idle_after:
            self._playing = False
            self._stalled = 0
            self._end = 0  # the next talkspurt starts afresh (it may start anywhere on the sender's clock)
            self._has_transit = False  # and the silence between is not jitter
            return _NONE
        self.lost += 1
        return _LOST_CODE

    def upcoming(self):
        """The frame the next `pop` returns if it is buffered already, without taking it (None otherwise)."""
        cdef PyObject* data
        if not self._playing or self._head == self._tail or self._ts[self._head] != self._play:
            return None
        data = self._pay[self._head]
        return <object>data if OC_JB_LEN(data) == self.frame_samples else None

    cdef int _watch_level(self, int64_t play) except -1:
        cdef double level = <double>(self._end - play), excess
        if level < self._window_min:
            self._window_min = level
        self._window_pops += 1
        if self._window_pops < self._window_len:
            return 0
        self._retarget()
        excess = self._window_min - self._target
        self._window_min, self._window_pops = INFINITY, 0
        # A large excess (after a network stall) is cut quickly: one frame per 5 pops instead of per window.
        self._window_len = 5 if excess > 4 * self.frame_samples else self._shrink_len
        if excess > self.frame_samples:
            self._take(play, NULL, False)  # drop the next frame: the delay shrinks by one frame
            self._play = play + self.frame_samples
            self.latency_dropped += 1
        return 0

    cdef int _take(self, int64_t play, unsigned char* dst, bint keep) except -1:
        """1 if held packets cover some of the frame at `play` (0 if none does), the frame then written at dst (its
        missing samples `fill`) or, with `keep`, left in self._frame; consumed packets are removed either way."""
        cdef Py_ssize_t frame = self.frame_samples, i, done = 0
        cdef int64_t stop = play + frame, ts, end, a, b
        cdef PyObject* p
        cdef unsigned char* out = NULL
        cdef bint got = False
        if self._head == self._tail:
            return 0
        p = self._pay[self._head]
        if self._ts[self._head] == play and OC_JB_LEN(p) == frame:  # the common case: one packet, one frame
            if dst != NULL:
                memcpy(dst, OC_JB_DATA(p), <size_t>frame)
            elif keep:
                self._frame = <object>p
            self._head += 1
            OC_JB_DECREF(p)
            return 1
        i = self._head
        while i < self._tail:
            ts = self._ts[i]
            if ts >= stop:
                break
            p = self._pay[i]
            end = ts + OC_JB_LEN(p)
            if end > play:
                if not got:
                    got = True
                    if dst != NULL:
                        out = dst
                    elif keep:
                        self._frame = PyBytes_FromStringAndSize(NULL, frame)
                        out = <unsigned char*>PyBytes_AS_STRING(self._frame)
                    if out != NULL:
                        memset(out, self._fill, <size_t>frame)
                if out != NULL:
                    a = ts if ts > play else play
                    b = end if end < stop else stop
                    memcpy(out + (a - play), OC_JB_DATA(p) + (a - ts), <size_t>(b - a))
            if end <= stop:
                done += 1
                i += 1
            else:
                break
        self._drop(done)
        return got
