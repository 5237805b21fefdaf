"""The numeric kernels of the engine's OUTPUT and INPUT steps over the rows of the prefix: the inbound rings' push and
pop, the player's frame copy, the two-party mix and the int16 clip. Plain functions over arrays the callers own
(`inbound.InboundQueues`, `player.Player`, `mixing`); must not know legs, mixes, plays or events (the callers keep
that logic, and the Python work for the few rows that need it).

This file is the reference, in numpy (`OPENCOMMS_COMPILED=0`). `kernels.pyx` is the same API compiled with Cython
by `make compiled` (listed in _compiled/modules.txt): one C loop over the rows, no temporaries. At a few hundred
rows these steps cost more in numpy's per-call overhead, fancy-index gathers and temporary arrays than in the
copies themselves. Both give the same samples exactly (integers only).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["FRAME", "clip16", "pairs", "play_frames", "queue_pop", "queue_push"]

FRAME = 320
"""Samples in one engine frame (20 ms at 16 kHz)."""

_INT16_MIN, _INT16_MAX = -32768, 32767


def queue_push(
    ring: npt.NDArray[np.int16],
    head: npt.NDArray[np.int64],
    qlen: npt.NDArray[np.int64],
    rows: npt.NDArray[np.intp],
    frames: npt.NDArray[np.int16],
) -> int:
    """Queue `frames[i]` on the ring of row `rows[i]` (distinct rows; `ring` is `(capacity, depth, 320)`, `head` and
    `qlen` the rows' oldest slot and length). A full ring loses its oldest frame; returns how many were lost."""
    if rows.size == 0:
        return 0
    depth = ring.shape[1]
    length, first = qlen[rows], head[rows]
    ring[rows, (first + length) % depth] = frames
    full = length == depth
    dropped = int(np.count_nonzero(full))
    if dropped:
        head[rows[full]] = (first[full] + 1) % depth
        rows = rows[~full]
    qlen[rows] += 1
    return dropped


def queue_pop(
    ring: npt.NDArray[np.int16],
    head: npt.NDArray[np.int64],
    qlen: npt.NDArray[np.int64],
    out: npt.NDArray[np.int32],
) -> int:
    """Move the oldest frame of each row r < len(out) with a queued frame into `out[r]` (assigned); other rows of
    `out` are left as they are. Returns how many rows had one."""
    rows = np.flatnonzero(qlen[: out.shape[0]] > 0)
    first = head[rows]
    out[rows] = ring[rows, first]
    head[rows] = (first + 1) % ring.shape[1]
    qlen[rows] -= 1
    return int(rows.size)


def play_frames(
    out: npt.NDArray[np.int32],
    clip: npt.NDArray[np.int64],
    pos: npt.NDArray[np.int64],
    lengths: npt.NDArray[np.int64],
    windows: list[npt.NDArray[np.int16]],
    add: bool,
) -> list[int]:
    """For each row r < len(out) playing a clip (`clip[r]` >= 0, a slot): the frame `windows[clip[r]][pos[r]]`
    (`clips.ClipBank.windows`: the 320 samples from `pos[r]`, zero past the clip's end) added to `out[r]` when `add`,
    else assigned, and `pos[r]` advanced by 320. Returns, ascending, the rows whose clip ran out during the frame
    (`pos[r] >= lengths[clip[r]]`): the caller continues them."""
    n = out.shape[0]
    playing = np.flatnonzero(clip[:n] >= 0)
    if playing.size == 0:
        return []
    slots = clip[playing]
    at = pos[playing]
    order = np.argsort(slots, kind="stable")
    sorted_slots = slots[order]
    bounds = np.flatnonzero(sorted_slots[1:] != sorted_slots[:-1]) + 1
    starts = [0, *bounds.tolist()]
    stops = [*bounds.tolist(), playing.size]
    for a, b in zip(starts, stops, strict=True):  # one gather per distinct clip
        idx = order[a:b]
        frames = windows[int(sorted_slots[a])][at[idx]]
        if add:
            out[playing[idx]] += frames
        else:
            out[playing[idx]] = frames
    at += FRAME
    pos[playing] = at
    ended: list[int] = playing[at >= lengths[slots]].tolist()
    return ended


def pairs(
    out: npt.NDArray[np.int32],
    inp: npt.NDArray[np.int32],
    a: npt.NDArray[np.intp],
    b: npt.NDArray[np.intp],
    adjacent: bool,
    clip: bool,
) -> None:
    """The two-party mixes: `inp[a[i]] = out[b[i]]` and `inp[b[i]] = out[a[i]]`, clipped to int16 range when `clip`.
    `adjacent`: the pairs are exactly (0, 1), (2, 3), ... covering every row of `inp` (a faster path here)."""
    if adjacent:
        pairs_in, pairs_out = inp.reshape(-1, 2, FRAME), out.reshape(-1, 2, FRAME)
        if clip:
            np.clip(pairs_out[:, 1], _INT16_MIN, _INT16_MAX, out=pairs_in[:, 0])
            np.clip(pairs_out[:, 0], _INT16_MIN, _INT16_MAX, out=pairs_in[:, 1])
        else:
            pairs_in[:, 0] = pairs_out[:, 1]
            pairs_in[:, 1] = pairs_out[:, 0]
    elif clip:
        inp[a] = np.clip(out[b], _INT16_MIN, _INT16_MAX)
        inp[b] = np.clip(out[a], _INT16_MIN, _INT16_MAX)
    else:
        inp[a] = out[b]
        inp[b] = out[a]


def clip16(inp: npt.NDArray[np.int32]) -> None:
    """Clip every sample of `inp` to int16 range, in place."""
    np.clip(inp, _INT16_MIN, _INT16_MAX, out=inp)
