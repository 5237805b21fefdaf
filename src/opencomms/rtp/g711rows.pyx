# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False, language_level=3
"""G711Rows compiled (Cython, `make compiled`): the same class as g711rows.py, which stays the reference and documents
the API. One pass per row: the half-band filter's non-zero taps (transcode.halfband_plan) over a float row buffer,
G.711 through 16384-entry code tables (checked against media.g711 for every 16-bit sample when built), no
temporaries. Same samples as the reference up to the rounding of float sums (+-1 LSB)."""

import numpy as np

from libc.math cimport lrintf

from ..media.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from ..media.resample import TELEPHONY
from .transcode import halfband_plan

FRAME = 160
cdef enum:
    _FRAME = 160
    _WIDE = 320
    _MAX_TAPS = 64
    _MAX_HIST = 256


cdef inline short _clip16(float y) noexcept nogil:
    cdef long v = lrintf(y)
    if v > 32767:
        return 32767
    if v < -32768:
        return -32768
    return <short>v


def _tables():
    everything = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
    index = (everything.astype(np.int32) + 32768) >> 2
    samples = (np.arange(16384, dtype=np.int32) * 4 - 32768).astype(np.int16)
    uenc, aenc = ulaw_encode(samples), alaw_encode(samples)
    if not (np.array_equal(uenc[index], ulaw_encode(everything)) and np.array_equal(aenc[index], alaw_encode(everything))):
        raise AssertionError("G.711 codes depend on more than the top 14 bits")  # construction bug, not input
    codes = np.arange(256, dtype=np.uint8)
    return uenc, aenc, ulaw_decode(codes).astype(np.int16), alaw_decode(codes).astype(np.int16)


class G711Rows:
    """See g711rows.py (the reference)."""

    def __init__(self, int capacity):
        self.capacity = capacity
        self._k = _Kernel(capacity)

    def reset(self, int row):
        self._k.reset(row)

    def encode(self, inp, erow, live, alaw, out):
        self._k.encode(inp, erow, live.view(np.uint8), alaw.view(np.uint8), out)

    def decode(self, codes, state, fade, alaw, out):
        self._k.decode(codes, state, fade, alaw.view(np.uint8), out)


cdef class _Kernel:
    cdef float[:, ::1] dbuf
    cdef float[:, ::1] ubuf
    cdef short[:, ::1] last
    cdef float[::1] dtaps
    cdef float[::1] utaps
    cdef unsigned char[::1] uenc
    cdef unsigned char[::1] aenc
    cdef short[::1] udec
    cdef short[::1] adec
    cdef int dh, dr0, dphase, di0, dw, uh, ur0, uphase, ui0, uw
    cdef float dc, uc

    def __init__(self, int capacity):
        down, up = halfband_plan(16000, 8000, TELEPHONY), halfband_plan(8000, 16000, TELEPHONY)
        for plan in (down, up):
            if plan.taps.size > _MAX_TAPS or plan.hist > _MAX_HIST:
                raise ValueError("filter too long for the compiled G.711 rows")
        self.dh, self.dr0, self.dphase, self.di0, self.dw = down.hist, down.r0, down.phase, down.i0, down.taps.size
        self.uh, self.ur0, self.uphase, self.ui0, self.uw = up.hist, up.r0, up.phase, up.i0, up.taps.size
        self.dc, self.uc = down.centre, up.centre
        self.dtaps, self.utaps = np.ascontiguousarray(down.taps), np.ascontiguousarray(up.taps)
        self.dbuf = np.zeros((capacity, self.dh + _WIDE), dtype=np.float32)
        self.ubuf = np.zeros((capacity, self.uh + _FRAME), dtype=np.float32)
        self.last = np.zeros((capacity, _FRAME), dtype=np.int16)
        self.uenc, self.aenc, self.udec, self.adec = _tables()

    def reset(self, int row):
        self.dbuf[row, :] = 0.0
        self.ubuf[row, :] = 0.0
        self.last[row, :] = 0

    def encode(
        self,
        const int[:, ::1] inp,
        const Py_ssize_t[::1] erow,
        const unsigned char[::1] live,
        const unsigned char[::1] alaw,
        unsigned char[:, :] out,
    ):
        cdef Py_ssize_t n = erow.shape[0], r, k, j
        cdef int dh = self.dh, dr0 = self.dr0, phase = self.dphase, i0 = self.di0, w = self.dw
        cdef int odd = (dh + _WIDE - phase + 1) // 2
        cdef float c = self.dc, tap
        cdef float tmp[_MAX_HIST + _WIDE]
        cdef float y[_FRAME]
        cdef float* b
        cdef const int* src
        cdef const unsigned char* table
        cdef unsigned char* dst
        if live.shape[0] < n or alaw.shape[0] < n or out.shape[0] < n or out.shape[1] < _FRAME:
            raise ValueError("rows or payload columns missing")
        if out.strides[1] != 1:
            raise ValueError("each row of `out` must be contiguous")
        if n > self.dbuf.shape[0] or inp.shape[1] != _WIDE:
            raise ValueError("more rows than the capacity, or not 320-sample frames")
        for r in range(n):
            if live[r] and not 0 <= erow[r] < inp.shape[0]:
                raise IndexError("engine row out of range")
        with nogil:
            for r in range(n):
                b = &self.dbuf[r, 0]
                if live[r]:
                    src = &inp[erow[r], 0]
                    for k in range(_WIDE):
                        b[dh + k] = <float>src[k]
                else:
                    for k in range(_WIDE):
                        b[dh + k] = 0.0
                for k in range(odd):
                    tmp[k] = b[phase + 2 * k]
                for k in range(_FRAME):
                    y[k] = c * b[dr0 + 2 * k]
                for j in range(w):
                    tap = self.dtaps[j]
                    for k in range(_FRAME):
                        y[k] += tap * tmp[i0 + j + k]
                for k in range(dh):
                    b[k] = b[_WIDE + k]
                table = &self.aenc[0] if alaw[r] else &self.uenc[0]
                dst = &out[r, 0]
                for k in range(_FRAME):
                    dst[k] = table[(<int>_clip16(y[k]) + 32768) >> 2]

    def decode(
        self,
        const unsigned char[:, ::1] codes,
        const unsigned char[::1] state,
        const double[::1] fade,
        const unsigned char[::1] alaw,
        short[:, ::1] out,
    ):
        cdef Py_ssize_t n = state.shape[0], r, k, j
        cdef int uh = self.uh, r0 = self.ur0, phase = self.uphase, i0 = self.ui0, w = self.uw
        cdef float c = self.uc, tap
        cdef double f
        cdef float y[_FRAME]
        cdef float* b
        cdef short v
        cdef const short* table
        if fade.shape[0] < n or alaw.shape[0] < n or codes.shape[0] < n or codes.shape[1] < _FRAME:
            raise ValueError("rows or payload columns missing")
        if n > self.ubuf.shape[0] or out.shape[0] < n or out.shape[1] != _WIDE:
            raise ValueError("more rows than the capacity, or not 320-sample frames")
        with nogil:
            for r in range(n):
                b = &self.ubuf[r, 0]
                if state[r] == 1:
                    table = &self.adec[0] if alaw[r] else &self.udec[0]
                    for k in range(_FRAME):
                        v = table[codes[r, k]]
                        self.last[r, k] = v
                        b[uh + k] = v
                elif state[r] == 2:
                    f = fade[r]
                    for k in range(_FRAME):
                        b[uh + k] = <short>(self.last[r, k] * f)
                else:
                    for k in range(_FRAME):
                        b[uh + k] = 0.0
                for k in range(_FRAME):
                    y[k] = 0.0
                for j in range(w):
                    tap = self.utaps[j]
                    for k in range(_FRAME):
                        y[k] += tap * b[i0 + j + k]
                for k in range(_FRAME):
                    out[r, 2 * k + phase] = _clip16(y[k])
                    out[r, 2 * k + 1 - phase] = _clip16(c * b[r0 + k])
                for k in range(uh):
                    b[k] = b[_FRAME + k]
