"""Sample-rate conversion by rational polyphase FIR: a stateful frame `Resampler` and a whole-signal `resample`.

Owns the anti-alias/anti-image filter specs and the polyphase arithmetic (any rate pair, reduced to L/M).
Must not read clocks, decode codecs or frame audio; `Resampler` keeps only its filter history between calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from .fir import design_lowpass, kaiser_length

__all__ = [
    "HIGH_QUALITY",
    "STREAMING",
    "TELEPHONY",
    "FilterSpec",
    "Resampler",
    "resample",
]


@dataclass(frozen=True, slots=True)
class FilterSpec:
    """Low-pass used for conversion, relative to the Nyquist frequency of the lower of the two rates."""

    passband: float
    """End of the flat band, as a fraction of the lower Nyquist (0.85 at 8 kHz = 3.4 kHz)."""
    stopband: float
    """Start of the stop band, same unit; above 1.0 lets a little energy above Nyquist alias into the
    top of the band (outside the passband), which buys a shorter, lower-latency filter."""
    attenuation_db: float
    """Stop-band attenuation in dB."""

    def __post_init__(self) -> None:
        if not 0.0 < self.passband < self.stopband < 2.0:
            raise ValueError("need 0 < passband < stopband < 2 (fractions of the lower Nyquist)")
        if self.attenuation_db <= 0.0:
            raise ValueError("attenuation must be positive")


STREAMING = FilterSpec(passband=0.85, stopband=1.10, attenuation_db=70.0)
"""Default for `Resampler`: 8 kHz <-> 16 kHz keeps 0-3.4 kHz flat, about 2 ms of delay."""
TELEPHONY = FilterSpec(passband=0.85, stopband=1.15, attenuation_db=60.0)
"""The RTP bank's G.711 legs (8 kHz <-> 16 kHz): flat to 3.4 kHz, -60 dB from 4.6 kHz (20 dB under G.711's own
quantisation noise). The band edges are symmetric about 4 kHz, so the filter is half-band: every other tap is
zero (rtp.transcode.halfband_plan, computed as such by rtp/g711rows.pyx). A little energy between 4 and 4.6 kHz
aliases into 3.4-4 kHz, above the telephone band (300-3400 Hz)."""
HIGH_QUALITY = FilterSpec(passband=0.84, stopband=0.93, attenuation_db=80.0)
"""Default for `resample`: no aliasing at all; for 16 kHz output flat to 6.7 kHz, -80 dB from 7.44 kHz."""


@dataclass(frozen=True, slots=True)
class _Polyphase:
    up: int
    down: int
    taps: int
    """Taps per phase (T); phase p of the filter is h[p], h[p + L], ... h[p + (T-1)L]."""
    delay: int
    """Group delay of the prototype in upsampled samples; a multiple of `down`."""
    phases: npt.NDArray[np.float64]
    """(L, T) array: phases[p, j] = h[p + j*L]."""


@lru_cache(maxsize=32)
def _polyphase(src_rate: int, dst_rate: int, spec: FilterSpec) -> _Polyphase:
    if src_rate <= 0 or dst_rate <= 0:
        raise ValueError("sample rates must be positive")
    g = math.gcd(src_rate, dst_rate)
    up, down = dst_rate // g, src_rate // g
    high = src_rate * up  # rate of the virtual upsampled signal
    nyquist = min(src_rate, dst_rate) / 2.0
    f_pass, f_stop = spec.passband * nyquist, spec.stopband * nyquist
    needed = kaiser_length(spec.attenuation_db, f_stop - f_pass, high)
    half = -(-((needed - 1) // 2) // down) * down  # half-length, rounded up to a multiple of `down`
    taps = -(-(2 * half + 1) // up)
    cutoff = min((f_pass + f_stop) / 2.0, 0.5 * high * 0.999)
    proto = design_lowpass(2 * half + 1, cutoff, high, spec.attenuation_db, gain=float(up))
    padded = np.zeros(up * taps, dtype=np.float64)
    padded[: proto.size] = proto
    phases = padded.reshape(taps, up).T.copy()
    phases.flags.writeable = False
    return _Polyphase(up, down, taps, half, phases)


def _to_int16(y: npt.NDArray[np.floating]) -> npt.NDArray[np.int16]:
    """Round and saturate in place (y is a temporary), then narrow."""
    np.rint(y, out=y)
    np.clip(y, -32768, 32767, out=y)
    out: npt.NDArray[np.int16] = y.astype(np.int16)
    return out


class Resampler:
    """Streaming converter between two rates, fed one frame (or any chunk) at a time without clicks.

    The filter history carries across calls, so processing a signal frame by frame gives the same samples
    as processing it in one call. It is causal: output lags input by `delay` output samples. With
    `channels=None` it takes 1-D frames; with `channels=C` it takes `(C, n)` arrays and converts all C
    streams at once (one matrix product per call). Each call returns every output sample whose input has
    arrived: exactly `n * dst/src` samples per call when frames hold a whole number of rate periods
    (20 ms frames always do for 8/16/24/48 kHz).
    """

    _MAX_CHUNK = 4096

    def __init__(self, src_rate: int, dst_rate: int, channels: int | None = None, spec: FilterSpec = STREAMING) -> None:
        if channels is not None and channels < 1:
            raise ValueError("channels must be positive")
        self.src_rate = src_rate
        self.dst_rate = dst_rate
        self.channels = channels
        self._pp = _polyphase(src_rate, dst_rate, spec)
        rows = 1 if channels is None else channels
        self._history = np.zeros((rows, self._pp.taps - 1), dtype=np.float32)
        self._consumed = 0
        self._produced = 0
        self._plans: dict[tuple[int, int, int], _Plan] = {}

    @property
    def delay(self) -> int:
        """Latency added by the filter, in output samples."""
        return self._pp.delay // self._pp.down

    def reset(self) -> None:
        """Forget the history (e.g. when a new SSRC starts), as if freshly constructed."""
        self._history[:] = 0.0
        self._consumed = 0
        self._produced = 0

    def process(self, frame: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        """Convert one chunk; returns the newly available output samples (1-D or `(C, n)`, int16)."""
        if frame.dtype != np.int16:
            raise TypeError(f"expected int16 samples, got {frame.dtype}")
        if self.channels is None:
            if frame.ndim != 1:
                raise ValueError(f"expected a 1-D frame, got shape {frame.shape}")
            single: npt.NDArray[np.int16] = self._process(frame.reshape(1, -1))[0]
            return single
        if frame.ndim != 2 or frame.shape[0] != self.channels:
            raise ValueError(f"expected shape ({self.channels}, n), got {frame.shape}")
        return self._process(frame)

    def _process(self, x: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        pieces = [self._chunk(x[:, start : start + self._MAX_CHUNK]) for start in range(0, x.shape[1], self._MAX_CHUNK)]
        if not pieces:
            return np.zeros((x.shape[0], 0), dtype=np.int16)
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=1)

    def _chunk(self, x: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        pp = self._pp
        n_in = x.shape[1]
        buf = np.concatenate([self._history, x.astype(np.float32)], axis=1)
        # Output n reads inputs floor(n*M/L) - j (j < T): the plan depends only on these three numbers.
        phase = (self._produced * pp.down) % pp.up
        lag = (self._produced * pp.down - phase) // pp.up - self._consumed
        key = (n_in, phase, lag)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) > 8:
                self._plans.clear()
            plan = _Plan.build(pp, n_in, phase, lag)
            self._plans[key] = plan
        y = plan.apply(buf)
        self._history = buf[:, buf.shape[1] - (pp.taps - 1) :].copy()
        self._consumed += n_in
        self._produced += plan.n_out
        return _to_int16(y)


@dataclass(frozen=True, slots=True)
class _Plan:
    """How one call maps its buffer (history + input) to outputs: a dense matrix, or when the outputs
    fall into identical blocks (steady frames), one small block matrix applied to strided windows."""

    n_out: int
    dense: npt.NDArray[np.float32] | None
    block: npt.NDArray[np.float32] | None
    first_row: int
    stride: int
    blocks: int

    @staticmethod
    def build(pp: _Polyphase, n_in: int, phase: int, lag: int) -> _Plan:
        n_out = 0
        while lag + (phase + n_out * pp.down) // pp.up <= n_in - 1:
            n_out += 1
        k = np.arange(n_out)
        pos = phase + k * pp.down
        rows = (lag + pos // pp.up + pp.taps - 1)[:, None] - np.arange(pp.taps)[None, :]
        coef = pp.phases[pos % pp.up].astype(np.float32)
        dense = np.zeros((n_in + pp.taps - 1, n_out), dtype=np.float32)
        np.add.at(dense, (rows, np.broadcast_to(k[:, None], rows.shape)), coef)
        best: tuple[float, int] | None = None
        if phase == 0:  # blocks of B outputs (B a multiple of L) then all start on the same filter phase
            for size in range(pp.up, n_out, pp.up):
                if n_out % size == 0:
                    width = size * pp.down // pp.up + pp.taps
                    cost = (n_out // size) * width * (size + 32)  # + copying the windows
                    if best is None or cost < best[0]:
                        best = (cost, size)
        if best is None or best[0] >= dense.size:
            return _Plan(n_out, dense, None, 0, 0, 1)
        size = best[1]
        stride = size * pp.down // pp.up
        first = int(rows[:size].min())
        width = int(rows[:size].max()) + 1 - first
        block = dense[first : first + width, :size].copy()
        return _Plan(n_out, None, block, first, stride, n_out // size)

    def apply(self, buf: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if self.dense is not None:
            return buf @ self.dense
        assert self.block is not None
        width = self.block.shape[0]
        view = np.lib.stride_tricks.sliding_window_view(buf, width, axis=1)
        windows = np.ascontiguousarray(view[:, self.first_row :: self.stride][:, : self.blocks])
        return (windows @ self.block).reshape(buf.shape[0], -1)


def resample(
    signal: npt.NDArray[np.int16], src_rate: int, dst_rate: int, spec: FilterSpec = HIGH_QUALITY
) -> npt.NDArray[np.int16]:
    """Convert a whole 1-D int16 signal (a file, a prompt) between any two rates, without delay.

    Output sample n is aligned with input time n/dst_rate (the filter delay is compensated) and there are
    ceil(len * dst / src) of them. For streams, use `Resampler`.
    """
    if signal.dtype != np.int16 or signal.ndim != 1:
        raise TypeError("expected a 1-D int16 signal")
    if src_rate == dst_rate:
        return signal.copy()
    pp = _polyphase(src_rate, dst_rate, spec)
    n_in = signal.size
    n_out = -(-n_in * pp.up // pp.down)
    # Zero history in front, enough zeros behind for the last outputs' look-ahead.
    tail = pp.delay // pp.up + 2
    padded = np.concatenate([np.zeros(pp.taps - 1), signal.astype(np.float64), np.zeros(tail)])
    out = np.empty(n_out, dtype=np.float64)
    step = max(1, (1 << 20) // pp.taps)
    j = np.arange(pp.taps)
    for start in range(0, n_out, step):
        n = np.arange(start, min(n_out, start + step), dtype=np.int64)
        pos = n * pp.down + pp.delay
        q = pos // pp.up + pp.taps - 1
        windows = padded[q[:, None] - j[None, :]]
        out[start : start + n.size] = np.einsum("nj,nj->n", windows, pp.phases[pos % pp.up])
    return _to_int16(out)
