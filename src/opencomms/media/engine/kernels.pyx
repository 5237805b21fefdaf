# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False, language_level=3
"""The engine's OUTPUT/INPUT kernels compiled (Cython, `make compiled`): the same functions as kernels.py, which stays
the reference and documents the API. One C loop over the rows each, no temporaries; indices are checked before the
loops (a bad row raises, as numpy would, instead of writing out of bounds). Same samples as the reference, exactly."""

from libc.stdint cimport int16_t, int32_t, int64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy

FRAME = 320
cdef enum:
    _FRAME = 320


cdef inline int32_t _clip16(int32_t v) noexcept nogil:
    if v > 32767:
        return 32767
    if v < -32768:
        return -32768
    return v


def queue_push(
    int16_t[:, :, ::1] ring,
    int64_t[::1] head,
    int64_t[::1] qlen,
    const Py_ssize_t[::1] rows,
    const int16_t[:, ::1] frames,
):
    cdef Py_ssize_t k = rows.shape[0], i, r
    cdef int64_t depth = ring.shape[1], length, first
    cdef int dropped = 0
    if k == 0:
        return 0
    if frames.shape[0] != k or frames.shape[1] != _FRAME or ring.shape[2] != _FRAME:
        raise ValueError("expected one 320-sample frame per row")
    if depth < 1 or head.shape[0] < ring.shape[0] or qlen.shape[0] < ring.shape[0]:
        raise ValueError("head and qlen must cover every ring")
    for i in range(k):
        if not 0 <= rows[i] < ring.shape[0]:
            raise IndexError("row out of range")
    with nogil:
        for i in range(k):
            r = rows[i]
            length, first = qlen[r], head[r]
            memcpy(&ring[r, (first + length) % depth, 0], &frames[i, 0], _FRAME * sizeof(int16_t))
            if length >= depth:
                head[r] = (first + 1) % depth
                dropped += 1
            else:
                qlen[r] = length + 1
    return dropped


def queue_pop(
    const int16_t[:, :, ::1] ring,
    int64_t[::1] head,
    int64_t[::1] qlen,
    int32_t[:, ::1] out,
):
    cdef Py_ssize_t n = out.shape[0], r, j
    cdef int64_t depth = ring.shape[1], first
    cdef int moved = 0
    cdef const int16_t* src
    cdef int32_t* dst
    if ring.shape[0] < n or head.shape[0] < n or qlen.shape[0] < n or out.shape[1] != _FRAME:
        raise ValueError("more rows than rings, or not 320-sample frames")
    if ring.shape[2] != _FRAME or depth < 1:
        raise ValueError("not 320-sample rings")
    with nogil:
        for r in range(n):
            if qlen[r] <= 0:
                continue
            first = head[r]
            src = &ring[r, first, 0]
            dst = &out[r, 0]
            for j in range(_FRAME):
                dst[j] = src[j]
            head[r] = (first + 1) % depth
            qlen[r] -= 1
            moved += 1
    return moved


def play_frames(
    int32_t[:, ::1] out,
    const int64_t[::1] clip,
    int64_t[::1] pos,
    const int64_t[::1] lengths,
    list windows,
    bint add,
):
    cdef Py_ssize_t n = out.shape[0], nslots = len(windows), r, j
    cdef int64_t slot, p
    cdef const int16_t** base
    cdef int64_t* starts
    cdef const int16_t[:, :] view
    cdef const int16_t* src
    cdef int32_t* dst
    if clip.shape[0] < n or pos.shape[0] < n or out.shape[1] != _FRAME:
        raise ValueError("more rows than players, or not 320-sample frames")
    ended = []
    base = <const int16_t**>calloc(nslots + 1, sizeof(int16_t*))
    starts = <int64_t*>calloc(nslots + 1, sizeof(int64_t))  # per slot: how many frame starts its windows hold
    if base == NULL or starts == NULL:
        free(base)
        free(starts)
        raise MemoryError()
    try:
        for r in range(n):  # check every playing row, and find each slot's samples once
            slot = clip[r]
            if slot < 0:
                continue
            if slot >= nslots or slot >= lengths.shape[0]:
                raise IndexError("clip slot out of range")
            if base[slot] == NULL:
                view = windows[slot]
                if view.shape[1] != _FRAME or view.strides[0] != sizeof(int16_t) or view.strides[1] != sizeof(int16_t):
                    raise ValueError("a clip's windows must be the 320-sample frames of one int16 array")
                base[slot] = &view[0, 0]
                starts[slot] = view.shape[0]
            if not 0 <= pos[r] < starts[slot]:
                raise IndexError("player position outside its clip")
        for r in range(n):
            slot = clip[r]
            if slot < 0:
                continue
            p = pos[r]
            src = base[slot] + p
            dst = &out[r, 0]
            if add:
                for j in range(_FRAME):
                    dst[j] += src[j]
            else:
                for j in range(_FRAME):
                    dst[j] = src[j]
            pos[r] = p + _FRAME
            if p + _FRAME >= lengths[slot]:  # rare: the caller's Python continues the row
                ended.append(r)
    finally:
        free(base)
        free(starts)
    return ended


def pairs(
    const int32_t[:, ::1] out,
    int32_t[:, ::1] inp,
    const Py_ssize_t[::1] a,
    const Py_ssize_t[::1] b,
    bint adjacent,
    bint clip,
):
    cdef Py_ssize_t m = a.shape[0], n = inp.shape[0], i, j, ra, rb
    cdef const int32_t* sa
    cdef const int32_t* sb
    cdef int32_t* da
    cdef int32_t* db
    if b.shape[0] != m or out.shape[0] < n or out.shape[1] != _FRAME or inp.shape[1] != _FRAME:
        raise ValueError("unmatched pairs, or not 320-sample frames")
    for i in range(m):
        if not (0 <= a[i] < n and 0 <= b[i] < n):
            raise IndexError("row out of range")
    with nogil:
        for i in range(m):
            ra, rb = a[i], b[i]
            sa, sb, da, db = &out[ra, 0], &out[rb, 0], &inp[ra, 0], &inp[rb, 0]
            if clip:  # one loop a direction: each vectorises (rows of `out` and `inp` never overlap)
                for j in range(_FRAME):
                    da[j] = _clip16(sb[j])
                for j in range(_FRAME):
                    db[j] = _clip16(sa[j])
            else:
                memcpy(da, sb, _FRAME * sizeof(int32_t))
                memcpy(db, sa, _FRAME * sizeof(int32_t))


def clip16(int32_t[:, ::1] inp):
    cdef Py_ssize_t n = inp.shape[0], m = inp.shape[1], r, j
    cdef int32_t* row
    with nogil:
        for r in range(n):
            row = &inp[r, 0]
            for j in range(m):
                row[j] = _clip16(row[j])
