# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False, language_level=3
"""goertzel compiled (Cython, `make compiled`): the same module as goertzel.py, which stays the reference and
documents the API (the constants and `goertzel_power` are copied from it; a unit test holds them equal). The
ToneAnalyzer here makes one pass per channel, with no temporaries: each sub-block's DFT at the 8 fundamentals taken
about its middle, where samples q and hop-1-q meet the same cosine and opposite sines (so a pair's sum and difference
need half the products of a plain DFT; four pairs at a time into separate sums), then turned to phases from the frame
start; the kept sub-blocks re-phased; each window's level, tone-share, twist and relative-peak tests in scalar code.
Same keys as the reference and the same fractions up to the rounding of float sums (~1e-6)."""

import math

import numpy as np

from ..frames import FRAME_MS, FULL_SCALE
from .tones import COL_FREQS, DBM0_IN_DBFS, ROW_FREQS

__all__ = ["FUNDAMENTALS", "HOP_MS", "WINDOW_HOPS", "ToneAnalyzer", "goertzel_power"]

cdef extern from *:
    """
    /* The sum and the sum of squares of n floats in 8 partial sums each, with GCC's vector extension: written as
       plain loops over lanes, GCC vectorizes the loop over the samples instead, with an in-order (slow) reduction. */
    typedef float oc_dtmf_f8 __attribute__((vector_size(32)));
    static inline void oc_dtmf_sums(const float *x, int n, float *sum, float *squares) {
        oc_dtmf_f8 a = {0}, b = {0}, u;
        int t = 0;
        float s, q;
        for (; t + 8 <= n; t += 8) {
            memcpy(&u, x + t, sizeof u);
            a += u;
            b += u * u;
        }
        s = ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
        q = ((b[0] + b[4]) + (b[2] + b[6])) + ((b[1] + b[5]) + (b[3] + b[7]));
        for (; t < n; t++) {
            s += x[t];
            q += x[t] * x[t];
        }
        *sum = s;
        *squares = q;
    }
    """
    void oc_dtmf_sums(const float* x, int n, float* sum, float* squares) noexcept nogil

HOP_MS = 5
WINDOW_HOPS = 3
FUNDAMENTALS = np.array(ROW_FREQS + COL_FREQS, dtype=np.float64)

cdef enum:
    _NF = 8  # fundamentals: rows 0-3, columns 4-7
    _NB = 16  # per sub-block: the real parts at the 8 fundamentals, then the imaginary parts
    _NY = 17  # ...then the plain sum (the window's DC)
    _KEEP = 2  # WINDOW_HOPS - 1 sub-blocks kept for the next frame
    _MAX_HOPS = 8


def goertzel_power(samples, freq, rate):
    """|X(f)|^2 of one block by the classic Goertzel recursion (a scalar reference, used by tests)."""
    coeff = 2.0 * math.cos(2.0 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for x in samples.tolist():
        s1, s2 = x + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


def _db(db):
    return np.float32(10.0 ** (db / 10.0))


class ToneAnalyzer:
    """See goertzel.py (the reference)."""

    def __init__(self, capacity, sample_rate, config):
        self.hop = sample_rate * HOP_MS // 1000
        self.frame_samples = sample_rate * FRAME_MS // 1000
        self.hops_per_frame = self.frame_samples // self.hop
        if self.hops_per_frame * self.hop != self.frame_samples or self.hop * 1000 != sample_rate * HOP_MS:
            raise ValueError(f"unsupported sample rate {sample_rate}")
        if self.hops_per_frame > _MAX_HOPS:
            raise ValueError(f"{self.hops_per_frame} hops per frame: more than the compiled analyser holds")
        self.window = WINDOW_HOPS * self.hop
        self.sample_rate = sample_rate
        hops, w = self.hops_per_frame, self.window
        omega = 2.0 * math.pi * FUNDAMENTALS / sample_rate
        # Sample q and sample hop-1-q of a sub-block sit at -+phi from its middle: their sum meets cos(phi), their
        # difference sin(phi) (half the products of a plain DFT), then each sub-block is turned by its middle's phase.
        middle = (self.hop - 1) / 2.0
        phi = np.outer(np.arange(self.hop // 2) - middle, omega)  # (hop // 2, 8)
        theta = np.outer(np.arange(hops) * self.hop + middle, omega)  # (hops, 8)
        shift = omega * self.frame_samples
        amplitude = FULL_SCALE * 10.0 ** ((config.min_tone_dbm0 + DBM0_IN_DBFS) / 20.0)
        self._ys = np.zeros((capacity, _KEEP, _NY), dtype=np.float32)  # kept sub-blocks, per channel
        self._es = np.zeros((capacity, _KEEP), dtype=np.float32)
        self._k = _Kernel(
            self.hop,
            np.concatenate([np.cos(phi), np.sin(phi)], axis=1).astype(np.float32),
            np.concatenate([np.cos(theta), np.sin(theta)], axis=1).astype(np.float32),
            np.cos(shift).astype(np.float32),
            np.sin(shift).astype(np.float32),
            self._ys,
            self._es,
            np.float32((amplitude * w / 2.0) ** 2),
            _db(config.normal_twist_db),
            _db(config.reverse_twist_db),
            _db(config.relative_peak_db),
            np.float32(config.min_tone_fraction * w / 2.0),
            np.float32(w),
        )

    def reset(self, rows):
        """Forget the history of some channels (a new call in a reused slot)."""
        self._ys[rows] = 0.0
        self._es[rows] = 0.0

    def analyse(self, x):
        """See goertzel.py: keys (hops, n) and fraction (hops, n) of the first n = len(x) channels."""
        n = x.shape[0]
        if n > self._es.shape[0]:
            raise ValueError(f"{n} rows for a capacity of {self._es.shape[0]}")
        if x.ndim != 2 or x.shape[1] != self.frame_samples:
            raise ValueError(f"expected shape (n, {self.frame_samples}), got {x.shape}")
        keys = np.empty((self.hops_per_frame, n), dtype=np.int8)
        fraction = np.empty((self.hops_per_frame, n), dtype=np.float32)
        self._k.analyse(np.ascontiguousarray(x, dtype=np.float32), keys, fraction)
        return keys, fraction


cdef class _Kernel:
    cdef float[:, ::1] basis  # (hop // 2, 16): pairs' cos, sin about a sub-block's middle
    cdef float[:, ::1] rotation  # (hops, 16): cos, sin of each sub-block's middle from the frame start
    cdef float[:, :, ::1] ys
    cdef float[:, ::1] es
    cdef float shift_cos[_NF]
    cdef float shift_sin[_NF]
    cdef int hops, hop
    cdef float min_power, normal_twist, reverse_twist, relative_peak, min_fraction, window, half_window

    def __init__(
        self,
        int hop,
        float[:, ::1] basis,
        float[:, ::1] rotation,
        float[::1] shift_cos,
        float[::1] shift_sin,
        float[:, :, ::1] ys,
        float[:, ::1] es,
        float min_power,
        float normal_twist,
        float reverse_twist,
        float relative_peak,
        float min_fraction,
        float window,
    ):
        cdef int f
        if basis.shape[0] != hop // 2 or basis.shape[1] != _NB or rotation.shape[1] != _NB:
            raise ValueError("basis and rotation do not match the hop")
        if rotation.shape[0] > _MAX_HOPS or ys.shape[1] != _KEEP or ys.shape[2] != _NY:
            raise ValueError("too many hops per frame, or the kept sub-blocks' shape is wrong")
        self.basis, self.rotation, self.ys, self.es = basis, rotation, ys, es
        self.hops, self.hop = rotation.shape[0], hop
        for f in range(_NF):
            self.shift_cos[f] = shift_cos[f]
            self.shift_sin[f] = shift_sin[f]
        self.min_power, self.normal_twist, self.reverse_twist = min_power, normal_twist, reverse_twist
        self.relative_peak, self.min_fraction = relative_peak, min_fraction
        self.window, self.half_window = window, <float>(window / 2.0)

    def analyse(self, const float[:, ::1] x, signed char[:, ::1] keys, float[:, ::1] fraction):
        cdef Py_ssize_t n = x.shape[0], ch
        if x.shape[1] != self.hops * self.hop or keys.shape[1] != n or fraction.shape[1] != n:
            raise ValueError("frame length or output columns do not match")
        if keys.shape[0] != self.hops or fraction.shape[0] != self.hops or n > self.es.shape[0]:
            raise ValueError("output rows or capacity do not match")
        if n == 0:
            return
        with nogil:
            for ch in range(n):
                self._channel(&x[ch, 0], &self.ys[ch, 0, 0], &self.es[ch, 0], &keys[0, ch], &fraction[0, ch], n)

    cdef void _channel(
        self, const float* xr, float* ys, float* es, signed char* keys, float* fraction, Py_ssize_t stride
    ) noexcept nogil:
        """One channel's frame `xr`, its kept sub-blocks `ys` (_KEEP x _NY) and energies `es`; the key and
        fraction of the window ending at hop h into keys[h * stride], fraction[h * stride]."""
        cdef int hops = self.hops, hop = self.hop, half = self.hop // 2, h, k, t, j, f, best_row, best_col, strong
        cdef float y[_MAX_HOPS + _KEEP][_NY]
        cdef float e[_MAX_HOPS + _KEEP]
        cdef float a0[_NB]
        cdef float a1[_NB]
        cdef float a2[_NB]
        cdef float a3[_NB]
        cdef float p0, p1, p2, p3, m0, m1, m2, m3, c, sn, re, im, total, dc, rmax, cmax, share
        cdef float win[_NY]
        cdef float power[_NF]
        cdef const float* xs
        cdef const float* b
        cdef const float* rot
        for j in range(_KEEP):
            for f in range(_NY):
                y[j][f] = ys[j * _NY + f]
            e[j] = es[j]
        # This frame's sub-block DFTs (phases from the frame start), sums and energies.
        for h in range(hops):
            xs = xr + h * hop
            for j in range(_NB):
                a0[j] = 0.0
                a1[j] = 0.0
                a2[j] = 0.0
                a3[j] = 0.0
            b = &self.basis[0, 0]
            for k in range(half // 4):  # four pairs at a time, into four sets of sums that do not wait on each other
                t = 4 * k
                p0, m0 = xs[t] + xs[hop - 1 - t], xs[t] - xs[hop - 1 - t]
                p1, m1 = xs[t + 1] + xs[hop - 2 - t], xs[t + 1] - xs[hop - 2 - t]
                p2, m2 = xs[t + 2] + xs[hop - 3 - t], xs[t + 2] - xs[hop - 3 - t]
                p3, m3 = xs[t + 3] + xs[hop - 4 - t], xs[t + 3] - xs[hop - 4 - t]
                for j in range(_NF):
                    a0[j] += p0 * b[j]
                    a0[_NF + j] += m0 * b[_NF + j]
                    a1[j] += p1 * b[_NB + j]
                    a1[_NF + j] += m1 * b[_NB + _NF + j]
                    a2[j] += p2 * b[2 * _NB + j]
                    a2[_NF + j] += m2 * b[2 * _NB + _NF + j]
                    a3[j] += p3 * b[3 * _NB + j]
                    a3[_NF + j] += m3 * b[3 * _NB + _NF + j]
                b += 4 * _NB
            for t in range(half - half % 4, half):
                p0, m0 = xs[t] + xs[hop - 1 - t], xs[t] - xs[hop - 1 - t]
                for j in range(_NF):
                    a0[j] += p0 * b[j]
                    a0[_NF + j] += m0 * b[_NF + j]
                b += _NB
            if hop % 2:  # the middle sample, at phase 0
                for j in range(_NF):
                    a0[j] += xs[half]
            rot = &self.rotation[h, 0]
            for f in range(_NF):  # from phases about the sub-block's middle to phases from the frame start
                re = (a0[f] + a1[f]) + (a2[f] + a3[f])
                im = (a0[_NF + f] + a1[_NF + f]) + (a2[_NF + f] + a3[_NF + f])
                y[_KEEP + h][f] = re * rot[f] - im * rot[_NF + f]
                y[_KEEP + h][_NF + f] = re * rot[_NF + f] + im * rot[f]
            oc_dtmf_sums(xs, hop, &y[_KEEP + h][_NB], &e[_KEEP + h])
        # The last sub-blocks, re-phased to the next frame's start.
        for j in range(_KEEP):
            for f in range(_NF):
                c, sn = self.shift_cos[f], self.shift_sin[f]
                re, im = y[hops + j][f], y[hops + j][_NF + f]
                ys[j * _NY + f] = re * c + im * sn
                ys[j * _NY + _NF + f] = im * c - re * sn
            ys[j * _NY + _NB] = y[hops + j][_NB]
            es[j] = e[hops + j]
        # The window ending at each hop: the sum of three sub-blocks.
        for h in range(hops):
            keys[h * stride] = -1
            fraction[h * stride] = 0.0
            for j in range(_NY):
                win[j] = (y[h][j] + y[h + 1][j]) + y[h + 2][j]
            total = (e[h] + e[h + 1]) + e[h + 2]
            dc = win[_NB]
            total -= dc * dc / self.window
            for f in range(_NF):
                power[f] = win[f] * win[f] + win[_NF + f] * win[_NF + f]
            rmax = max(max(power[0], power[1]), max(power[2], power[3]))
            cmax = max(max(power[4], power[5]), max(power[6], power[7]))
            if not (rmax >= self.min_power and cmax >= self.min_power and rmax + cmax >= self.min_fraction * total):
                continue
            if not (rmax <= self.normal_twist * cmax and cmax <= self.reverse_twist * rmax):
                continue
            strong = 0
            best_row = 0
            for f in range(4):
                if power[f] * self.relative_peak >= rmax:
                    strong += 1
                if power[f] > power[best_row]:
                    best_row = f
            if strong != 1:
                continue
            strong = 0
            best_col = 4
            for f in range(4, _NF):
                if power[f] * self.relative_peak >= cmax:
                    strong += 1
                if power[f] > power[best_col]:
                    best_col = f
            if strong != 1:
                continue
            keys[h * stride] = best_row * 4 + best_col - 4
            share = (rmax + cmax) / (total * self.half_window)
            fraction[h * stride] = min(share, <float>1.0)
