"""Batched, streaming 16 kHz <-> 8 kHz conversion of fixed 20 ms frames for many RTP streams at once.

Owns the polyphase FIR as one small block matrix (same filter spec as media.resample.STREAMING), the per-row
filter history in a `(capacity, ...)` array, and `reset(row)` for a row handed to a new stream. Must not encode
G.711, know sessions or sockets; only the prefix `[:n]` of rows is processed, so cost follows rows in use.
(media.resample.Resampler converts a fixed channel count and resets all channels at once, hence this class.)
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from ..media.fir import design_lowpass, kaiser_length
from ..media.resample import STREAMING, FilterSpec

__all__ = ["FrameConverter"]


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
        g = math.gcd(src_rate, dst_rate)
        up, down = dst_rate // g, src_rate // g
        self.frame_in = src_rate * frame_ms // 1000
        self.frame_out = dst_rate * frame_ms // 1000
        high = src_rate * up
        nyquist = min(src_rate, dst_rate) / 2.0
        f_pass, f_stop = spec.passband * nyquist, spec.stopband * nyquist
        needed = kaiser_length(spec.attenuation_db, f_stop - f_pass, high)
        half = -(-((needed - 1) // 2) // down) * down  # as media.resample: the delay is whole output samples
        taps = 2 * half + 1
        cutoff = min((f_pass + f_stop) / 2.0, 0.5 * high * 0.999)
        h = design_lowpass(taps, cutoff, high, spec.attenuation_db, gain=float(up))
        self.delay = half // down
        self._hist = -(-(taps - 1) // up)
        # Dense map from [history | frame] to the output frame: y[n] = sum_k h[k] * xu[n*down - k].
        dense = np.zeros((self._hist + self.frame_in, self.frame_out), dtype=np.float64)
        for n in range(self.frame_out):
            for k in range(taps):
                u = n * down - k
                if u % up == 0:
                    dense[u // up + self._hist, n] += h[k]
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
