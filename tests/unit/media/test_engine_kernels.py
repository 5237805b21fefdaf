"""The engine's OUTPUT/INPUT kernels (compiled with Cython, or the numpy reference on the pure pass): the same arrays,
exactly, as a row-by-row loop and as the numpy reference (kernels.py, loaded from its file)."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import numpy.typing as npt
import pytest

from opencomms._compiled import reference
from opencomms.media.engine import kernels
from opencomms.media.engine.clips import ClipBank

RNG = np.random.default_rng(7)
N = kernels.FRAME


REFERENCE = reference("opencomms.media.engine.kernels")
BOTH = [pytest.param(kernels, id="under-test"), pytest.param(REFERENCE, id="reference")]


def _rings(capacity: int, depth: int) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    ring = RNG.integers(-32768, 32768, size=(capacity, depth, N)).astype(np.int16)
    head = RNG.integers(0, depth, size=capacity).astype(np.int64)
    qlen = RNG.integers(0, depth + 1, size=capacity).astype(np.int64)
    return ring, head, qlen


@pytest.mark.parametrize("k", BOTH)
def test_queue_push_fills_each_rows_ring_and_drops_the_oldest_when_full(k: ModuleType) -> None:
    capacity, depth = 50, 4
    for _round in range(5):
        ring, head, qlen = _rings(capacity, depth)
        rows = RNG.permutation(capacity)[:37].astype(np.intp)
        frames = RNG.integers(-32768, 32768, size=(rows.size, N)).astype(np.int16)
        want_ring, want_head, want_qlen = ring.copy(), head.copy(), qlen.copy()
        want_dropped = 0
        for i, row in enumerate(rows.tolist()):
            length, first = int(want_qlen[row]), int(want_head[row])
            want_ring[row, (first + length) % depth] = frames[i]
            if length == depth:
                want_head[row] = (first + 1) % depth
                want_dropped += 1
            else:
                want_qlen[row] += 1
        assert k.queue_push(ring, head, qlen, rows, frames) == want_dropped
        assert want_dropped > 0
        np.testing.assert_array_equal(ring, want_ring)
        np.testing.assert_array_equal(head, want_head)
        np.testing.assert_array_equal(qlen, want_qlen)
    assert k.queue_push(ring, head, qlen, np.zeros(0, dtype=np.intp), np.zeros((0, N), dtype=np.int16)) == 0


@pytest.mark.parametrize("k", BOTH)
def test_queue_pop_moves_each_queued_rows_oldest_frame_and_leaves_the_others(k: ModuleType) -> None:
    capacity, depth, n = 40, 3, 33
    ring, head, qlen = _rings(capacity, depth)
    out = RNG.integers(-(1 << 20), 1 << 20, size=(n, N)).astype(np.int32)
    want_out, want_head, want_qlen = out.copy(), head.copy(), qlen.copy()
    moved = 0
    for row in range(n):
        if qlen[row] > 0:
            want_out[row] = ring[row, head[row]]
            want_head[row] = (head[row] + 1) % depth
            want_qlen[row] -= 1
            moved += 1
    ring_before = ring.copy()
    assert k.queue_pop(ring, head, qlen, out) == moved
    assert 0 < moved < n
    np.testing.assert_array_equal(out, want_out)
    np.testing.assert_array_equal(head, want_head)
    np.testing.assert_array_equal(qlen, want_qlen)  # rows past n untouched too
    np.testing.assert_array_equal(ring, ring_before)


def _bank() -> tuple[ClipBank, list[npt.NDArray[np.int16]]]:
    bank = ClipBank()
    clips = [RNG.integers(-32768, 32768, size=size).astype(np.int16) for size in (5000, 321, 320, 7, 2000)]
    for clip in clips:
        bank.acquire(clip)
    bank.release(bank.acquire(np.ones(100, dtype=np.int16)))  # a freed slot (its windows are empty)
    return bank, clips


@pytest.mark.parametrize("add", [True, False])
@pytest.mark.parametrize("k", BOTH)
def test_play_frames_copies_each_players_frame_and_lists_the_clips_that_ran_out(k: ModuleType, add: bool) -> None:
    bank, clips = _bank()
    n = 60
    clip = RNG.integers(-1, len(clips), size=n).astype(np.int64)
    lengths = np.array([c.size for c in clips])
    pos = (RNG.random(n) * lengths[np.maximum(clip, 0)]).astype(np.int64)
    pos[clip == 0] = np.minimum(pos[clip == 0], 4000)  # some players well inside the long clip
    pos[7], clip[7] = 4680, 0  # exactly one frame left: runs out at this frame's end
    out = RNG.integers(-(1 << 20), 1 << 20, size=(n, N)).astype(np.int32)
    want_out, want_pos, want_ended = out.copy(), pos.copy(), []
    for row in range(n):
        slot = int(clip[row])
        if slot < 0:
            continue
        frame = np.zeros(N, dtype=np.int32)
        part = clips[slot][pos[row] : pos[row] + N]
        frame[: part.size] = part
        want_out[row] = want_out[row] + frame if add else frame
        want_pos[row] += N
        if want_pos[row] >= lengths[slot]:
            want_ended.append(row)
    clip_before = clip.copy()
    ended = k.play_frames(out, clip, pos, bank.lengths, bank.all_windows, add)
    assert ended == want_ended and 7 in ended and len(ended) < (clip >= 0).sum()
    np.testing.assert_array_equal(out, want_out)
    np.testing.assert_array_equal(pos, want_pos)
    np.testing.assert_array_equal(clip, clip_before)


@pytest.mark.parametrize("k", BOTH)
def test_play_frames_with_no_player_does_nothing(k: ModuleType) -> None:
    bank, _clips = _bank()
    out = np.ones((4, N), dtype=np.int32)
    assert k.play_frames(out, np.full(4, -1, dtype=np.int64), np.zeros(4, dtype=np.int64), bank.lengths, [], True) == []
    assert (out == 1).all()


@pytest.mark.parametrize("k", BOTH)
def test_play_frames_refuses_a_position_outside_the_clip(k: ModuleType) -> None:
    bank, clips = _bank()
    out = np.zeros((2, N), dtype=np.int32)
    clip, pos = np.array([1, 3], dtype=np.int64), np.array([0, clips[3].size + 1], dtype=np.int64)
    with pytest.raises(IndexError):
        k.play_frames(out, clip, pos, bank.lengths, bank.all_windows, True)


def _loud(n: int) -> npt.NDArray[np.int32]:
    return RNG.integers(-70000, 70000, size=(n, N)).astype(np.int32)  # beyond int16: the clip shows


@pytest.mark.parametrize("clip", [True, False])
@pytest.mark.parametrize("k", BOTH)
def test_pairs_swap_each_pairs_output_into_the_others_input(k: ModuleType, clip: bool) -> None:
    n = 30
    out = _loud(n)
    rows = RNG.permutation(n).astype(np.intp)
    a, b = rows[:12].copy(), rows[12:24].copy()  # rows 24.. in no pair: left as they are
    inp = _loud(n)
    want = inp.copy()
    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        want[x], want[y] = out[y], out[x]
        if clip:
            want[[x, y]] = np.clip(want[[x, y]], -32768, 32767)
    k.pairs(out, inp, a, b, False, clip)
    np.testing.assert_array_equal(inp, want)


@pytest.mark.parametrize("clip", [True, False])
@pytest.mark.parametrize("k", BOTH)
def test_adjacent_pairs_are_the_same_swap(k: ModuleType, clip: bool) -> None:
    n = 20
    out = _loud(n)
    a, b = np.arange(0, n, 2, dtype=np.intp)[::-1].copy(), np.arange(1, n, 2, dtype=np.intp)[::-1].copy()
    inp, want = np.zeros((n, N), dtype=np.int32), np.zeros((n, N), dtype=np.int32)
    REFERENCE.pairs(out, want, a, b, False, clip)
    k.pairs(out, inp, a, b, True, clip)
    np.testing.assert_array_equal(inp, want)
    assert clip == (np.abs(inp).max() <= 32768)


@pytest.mark.parametrize("k", BOTH)
def test_clip16_clips_in_place(k: ModuleType) -> None:
    inp = _loud(9)
    want = np.clip(inp, -32768, 32767)
    k.clip16(inp)
    np.testing.assert_array_equal(inp, want)


@pytest.mark.parametrize("k", BOTH)
def test_rows_out_of_range_raise(k: ModuleType) -> None:
    ring, head, qlen = _rings(4, 2)
    with pytest.raises(IndexError):
        k.queue_push(ring, head, qlen, np.array([1, 4], dtype=np.intp), np.zeros((2, N), dtype=np.int16))
    out, inp = np.zeros((4, N), dtype=np.int32), np.zeros((4, N), dtype=np.int32)
    with pytest.raises(IndexError):
        k.pairs(out, inp, np.array([0], dtype=np.intp), np.array([5], dtype=np.intp), False, True)
