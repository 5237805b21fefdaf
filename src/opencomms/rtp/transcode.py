"""Batched, streaming 16 kHz <-> 8 kHz conversion of fixed 20 ms frames for many RTP streams at once.

Owns the polyphase FIR as one small block matrix (media.resample.STREAMING by default), the per-row filter history
in a `(capacity, ...)` array, and `reset(row)` for a row handed to a new stream. Must not encode G.711, know
sessions or sockets; only the prefix `[:n]` of rows is processed, so cost follows rows in use.
(media.resample.Resampler converts a fixed channel count and resets all channels at once, hence this class.)
`halfband_plan` describes a half-band filter (media.resample.TELEPHONY) by its non-zero taps only, for the compiled
G.711 rows (rtp/g711rows.pyx), which compute exactly that.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..media.fir import design_lowpass, kaiser_length
from ..media.resample import STREAMING, FilterSpec

__all__ = ["FrameConverter", "HalfbandPlan", "halfband_plan"]


def _dense_map(
    src_rate: int, dst_rate: int, frame_ms: int, spec: FilterSpec
) -> tuple[npt.NDArray[np.float64], int, int, int, int]:
    """The streaming FIR as one matrix from `[history | frame]` to the output frame, y = buf @ dense:
    (dense, history length, delay in output samples, up, down)."""
    g = math.gcd(src_rate, dst_rate)
    up, down = dst_rate // g, src_rate // g
    frame_in, frame_out = src_rate * frame_ms // 1000, dst_rate * frame_ms // 1000
    high = src_rate * up
    nyquist = min(src_rate, dst_rate) / 2.0
    f_pass, f_stop = spec.passband * nyquist, spec.stopband * nyquist
    needed = kaiser_length(spec.attenuation_db, f_stop - f_pass, high)
    half = -(-((needed - 1) // 2) // down) * down  # as media.resample: the delay is whole output samples
    taps = 2 * half + 1
    cutoff = min((f_pass + f_stop) / 2.0, 0.5 * high * 0.999)
    h = design_lowpass(taps, cutoff, high, spec.attenuation_db, gain=float(up))
    hist = -(-(taps - 1) // up)
    # y[n] = sum_k h[k] * xu[n*down - k], xu the input upsampled by `up` (zeros between samples).
    dense = np.zeros((hist + frame_in, frame_out), dtype=np.float64)
    for n in range(frame_out):
        for k in range(taps):
            u = n * down - k
            if u % up == 0:
                dense[u // up + hist, n] += h[k]
    return dense, hist, half // down, up, down


@dataclass(frozen=True, slots=True)
class HalfbandPlan:
    """A 2:1 rate change by a half-band FIR, by its non-zero taps, on one row `buf = [history | frame]` (float):

    down (16 -> 8 kHz, n < 160): y[n] = centre * buf[r0 + 2n] + sum_j taps[j] * buf[phase + 2 * (i0 + n + j)]
    up (8 -> 16 kHz, m < 160): y[2m + 1 - phase] = centre * buf[r0 + m]; y[2m + phase] = sum_j taps[j] * buf[i0 + m + j]
    """

    down: bool
    hist: int
    centre: float
    r0: int
    phase: int
    i0: int
    taps: npt.NDArray[np.float32]


def halfband_plan(src_rate: int, dst_rate: int, spec: FilterSpec, frame_ms: int = 20) -> HalfbandPlan:
    """The plan of a FrameConverter(src_rate, dst_rate, spec=spec) whose filter is half-band (cut-off at exactly a
    quarter of the higher rate: every other tap is zero). ValueError for any other filter. Designed once per
    process (tens of milliseconds; every SIP gateway's G.711 rows need both directions), each caller gets its own
    copy of the taps."""
    plan = _halfband_plan(src_rate, dst_rate, spec, frame_ms)
    return dataclasses.replace(plan, taps=plan.taps.copy())


@functools.lru_cache(maxsize=8)
def _halfband_plan(src_rate: int, dst_rate: int, spec: FilterSpec, frame_ms: int) -> HalfbandPlan:
    if sorted((src_rate, dst_rate)) != [8000, 16000]:
        raise ValueError("a half-band plan goes between 8 and 16 kHz")
    dense, hist, _, _, _ = _dense_map(src_rate, dst_rate, frame_ms, spec)
    dense[np.abs(dense) < 1e-9] = 0.0  # the sinc's zeros, up to rounding
    down = src_rate > dst_rate
    counts = np.count_nonzero(dense, axis=1 if down else 0)  # per input row (down) or output column (up)
    centre_phase = 0 if counts[0::2].max(initial=0) <= 1 else 1
    if counts[centre_phase::2].max(initial=0) > 1:
        raise ValueError("not a half-band filter")
    phase = 1 - centre_phase
    if down:  # the centre-phase inputs meet only the centre tap; the others the FIR
        r0 = int(np.flatnonzero(dense[centre_phase::2, 0])[0]) * 2 + centre_phase
        fir = dense[phase::2, 0]
    else:  # the centre-phase outputs are one input each; the others the FIR
        r0 = int(np.flatnonzero(dense[:, centre_phase])[0])
        fir = dense[:, phase]
    nz = np.flatnonzero(fir)
    plan = HalfbandPlan(
        down,
        hist,
        float(dense[r0, 0 if down else centre_phase]),
        r0,
        phase,
        int(nz[0]),
        fir[nz[0] : nz[-1] + 1].astype(np.float32),
    )
    if not np.allclose(_plan_dense(plan, dense.shape), dense, atol=1e-7):
        raise AssertionError("half-band plan does not match the filter")  # construction bug, not input
    return plan


def _plan_dense(plan: HalfbandPlan, shape: tuple[int, int]) -> npt.NDArray[np.float64]:
    """The matrix a plan computes (a check of halfband_plan)."""
    dense = np.zeros(shape, dtype=np.float64)
    taps = plan.taps.astype(np.float64)
    if plan.down:
        for n in range(shape[1]):
            dense[plan.r0 + 2 * n, n] += plan.centre
            for j, tap in enumerate(taps):
                dense[plan.phase + 2 * (plan.i0 + n + j), n] += tap
    else:
        for m in range(shape[1] // 2):
            dense[plan.r0 + m, 2 * m + 1 - plan.phase] += plan.centre
            for j, tap in enumerate(taps):
                dense[plan.i0 + m + j, 2 * m + plan.phase] += tap
    return dense


class FrameConverter:
    """Converts `(n, frame_in)` int16 frames at `src_rate` to `(n, frame_out)` at `dst_rate`, one call per
    frame period, for rows `[:n]` of `capacity` independent streams (row r's history only meets row r).

    Output lags input by `delay` output samples (the linear-phase FIR), as with a streaming Resampler. The FIR is
    applied as blocks of `block` outputs that all share one `(width, block)` matrix, so a call is one float32
    matrix product over `n * frame_out / block` windows."""

    def __init__(
        self,
        capacity: int,
        src_rate: int,
        dst_rate: int,
        frame_ms: int = 20,
        *,
        block: int | None = None,
        spec: FilterSpec = STREAMING,
    ) -> None:
        self.frame_in = src_rate * frame_ms // 1000
        self.frame_out = dst_rate * frame_ms // 1000
        dense, self._hist, self.delay, up, down = _dense_map(src_rate, dst_rate, frame_ms, spec)
        size = block or 32
        if self.frame_out % size or (size * down) % up:
            raise ValueError(f"block {size} does not tile {self.frame_out} outputs on the filter's phase")
        stride = size * down // up
        rows = np.flatnonzero(dense[:, :size].any(axis=1))
        first, width = int(rows[0]), int(rows[-1]) + 1 - int(rows[0])
        self._block = dense[first : first + width, :size].astype(np.float32)
        self._first, self._stride, self._width, self._blocks = first, stride, width, self.frame_out // size
        check = np.zeros_like(dense)
        for b in range(self._blocks):
            check[first + b * stride : first + b * stride + width, b * size : (b + 1) * size] = self._block
        if not np.allclose(check, dense, atol=1e-7):
            raise AssertionError("FIR blocks are not shift-invariant")  # construction bug, not input
        self._buf = np.zeros((capacity, self._hist + self.frame_in), dtype=np.float32)
        self._out = np.zeros((capacity, self.frame_out), dtype=np.int16)

    @property
    def capacity(self) -> int:
        return int(self._buf.shape[0])

    def reset(self, row: int) -> None:
        """Forget a row's history (a new stream starts in it)."""
        self._buf[row, : self._hist] = 0.0

    def process(self, frames: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        """Convert one frame for rows `[:n]` (`frames` is `(n, frame_in)` int16). Returns a view of an internal
        `(n, frame_out)` int16 array, valid until the next call."""
        n = frames.shape[0]
        if frames.shape != (n, self.frame_in) or frames.dtype != np.int16 or n > self.capacity:
            raise ValueError(
                f"expected (n <= {self.capacity}, {self.frame_in}) int16, got {frames.dtype} {frames.shape}"
            )
        buf = self._buf[:n]
        hist = self._hist
        buf[:, hist:] = frames
        view = np.lib.stride_tricks.sliding_window_view(buf, self._width, axis=1)
        windows = np.ascontiguousarray(view[:, self._first :: self._stride][:, : self._blocks])
        y = (windows.reshape(-1, self._width) @ self._block).reshape(n, self.frame_out)
        buf[:, :hist] = buf[:, self.frame_in :]
        np.rint(y, out=y)
        np.clip(y, -32768, 32767, out=y)
        out = self._out[:n]
        out[...] = y
        return out
