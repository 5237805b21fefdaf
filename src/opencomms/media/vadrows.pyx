# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False, language_level=3
"""VadRows compiled (Cython, `make compiled`): the same class as vadrows.py, which stays the reference and documents
the API. One pass per row (sum of squares, level, floor, onset and hangover) with no temporaries; the sub-window
minima kept per row (SUBWINDOWS contiguous floats) instead of per sub-window. Same decisions as the reference, and
the same levels and floors up to the rounding of the sum of squares and of log10."""

import numpy as np

from libc.math cimport INFINITY, log10f

cdef extern from *:
    """
    /* The sum of squares of n floats in 16 partial sums, with GCC's vector extension: written as plain loops over
       lanes, GCC vectorizes the loop over the samples instead, with an in-order (slow) reduction. */
    typedef float oc_vad_f8 __attribute__((vector_size(32)));
    static inline float oc_vad_sum_squares(const float *x, Py_ssize_t n) {
        oc_vad_f8 a = {0}, b = {0}, u, w;
        Py_ssize_t t = 0;
        float s;
        for (; t + 16 <= n; t += 16) {
            memcpy(&u, x + t, sizeof u);
            memcpy(&w, x + t + 8, sizeof w);
            a += u * u;
            b += w * w;
        }
        a += b;
        s = ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
        for (; t < n; t++)
            s += x[t] * x[t];
        return s;
    }
    """
    float oc_vad_sum_squares(const float* x, Py_ssize_t n) noexcept nogil

from .frames import DBFS_FLOOR, FULL_SCALE

__all__ = ["SUBWINDOWS", "VadRows"]

SUBWINDOWS = 8
cdef enum:
    _SUB = 8  # SUBWINDOWS


class VadRows:
    """See vadrows.py (the reference)."""

    def __init__(self, int capacity, int onset, int hangover, int sub_len, threshold, min_speech, min_floor):
        self.capacity = capacity
        self._k = _Kernel(capacity, onset, hangover, sub_len, threshold, min_speech, min_floor)

    def reset(self, int row):
        """Fresh state for a row (no floor yet, inactive)."""
        self._k.reset(row)

    def process(self, x, live):
        """See vadrows.py: active, changed, level and floor of rows [:len(x)]."""
        n = x.shape[0]
        if n > self.capacity:
            raise ValueError(f"{n} rows for a capacity of {self.capacity}")
        active = np.empty(n, dtype=np.bool_)
        changed = np.empty(n, dtype=np.bool_)
        level = np.empty(n, dtype=np.float32)
        floor = np.empty(n, dtype=np.float32)
        self._k.process(
            np.ascontiguousarray(x, dtype=np.float32),
            live.view(np.uint8),
            active.view(np.uint8),
            changed.view(np.uint8),
            level,
            floor,
        )
        return active, changed, level, floor


cdef class _Kernel:
    cdef float[:, ::1] minima  # (capacity, _SUB)
    cdef float[::1] current_min
    cdef int[::1] loud_run
    cdef int[::1] hold
    cdef unsigned char[::1] active
    cdef int onset, hangover, sub_len
    cdef long long frame_count
    cdef float threshold, min_speech, min_floor, ms_0dbfs, floor_db

    def __init__(self, int capacity, int onset, int hangover, int sub_len, threshold, min_speech, min_floor):
        if sub_len < 1:
            raise ValueError("sub-windows of at least one frame")
        self.minima = np.full((capacity, _SUB), np.inf, dtype=np.float32)
        self.current_min = np.full(capacity, np.inf, dtype=np.float32)
        self.loud_run = np.zeros(capacity, dtype=np.int32)
        self.hold = np.zeros(capacity, dtype=np.int32)
        self.active = np.zeros(capacity, dtype=np.uint8)
        self.onset, self.hangover, self.sub_len = onset, hangover, sub_len
        self.frame_count = 0
        self.threshold = np.float32(threshold)
        self.min_speech = np.float32(min_speech)
        self.min_floor = np.float32(min_floor)
        self.ms_0dbfs = FULL_SCALE * FULL_SCALE / 2.0
        self.floor_db = np.float32(DBFS_FLOOR)

    def reset(self, Py_ssize_t row):
        cdef int j
        if not 0 <= row < self.active.shape[0]:
            raise IndexError("row out of range")
        for j in range(_SUB):
            self.minima[row, j] = INFINITY
        self.current_min[row] = INFINITY
        self.loud_run[row] = 0
        self.hold[row] = 0
        self.active[row] = 0

    def process(
        self,
        const float[:, ::1] x,
        const unsigned char[::1] live,
        unsigned char[::1] active_out,
        unsigned char[::1] changed_out,
        float[::1] level_out,
        float[::1] floor_out,
    ):
        cdef Py_ssize_t n = x.shape[0], samples = x.shape[1], r, j
        cdef float norm = <float>(samples * self.ms_0dbfs)
        cdef float ss, level, floor, cm
        cdef int loud_run, hold
        cdef bint loud, onset, was, act, roll
        if live.shape[0] < n or active_out.shape[0] != n or changed_out.shape[0] != n:
            raise ValueError("rows missing")
        if level_out.shape[0] != n or floor_out.shape[0] != n or n > self.active.shape[0]:
            raise ValueError("rows missing, or more rows than the capacity")
        self.frame_count += 1
        roll = self.frame_count % self.sub_len == 0
        with nogil:
            for r in range(n):
                ss = oc_vad_sum_squares(&x[r, 0], samples)
                level = max(<float>10.0 * log10f(ss / norm), self.floor_db)
                # Minimum statistics: running minimum of this sub-window, plus the last sub-windows' minima.
                cm = min(self.current_min[r], max(level, self.min_floor))
                floor = cm
                for j in range(_SUB):
                    floor = min(floor, self.minima[r, j])
                if roll:
                    for j in range(_SUB - 1, 0, -1):
                        self.minima[r, j] = self.minima[r, j - 1]
                    self.minima[r, 0] = cm
                    cm = INFINITY
                self.current_min[r] = cm
                loud = level > floor + self.threshold and level > self.min_speech
                loud_run = self.loud_run[r] + 1 if loud else 0
                onset = loud_run >= self.onset
                was = self.active[r] != 0
                if onset or (loud and was):
                    hold = self.hangover
                else:
                    hold = self.hold[r] - 1
                act = (onset or (was and hold >= 0)) and live[r] != 0
                self.loud_run[r] = loud_run
                self.hold[r] = max(hold, -1)
                self.active[r] = act
                active_out[r] = act
                changed_out[r] = act != was
                level_out[r] = level
                floor_out[r] = floor
