"""Batched DTMF spectral analysis: every 5 ms, classify a sliding 15 ms window of every channel as one key or
none from single-bin DFTs (Goertzel outputs) at the 8 DTMF frequencies.

Owns the per-window tests (level, twist, relative peak, tone share of the energy) and the analysis history
between frames. Must not decide key presses (detector.py) nor run the once-per-press tests (verify.py).

This file is the reference, in numpy (`OPENCOMMS_COMPILED=0`). `goertzel.pyx` is the same module compiled with
Cython by `make compiled` (listed in _compiled/modules.txt): one pass per channel with no temporaries, where the ~25
numpy calls here cost more in per-call overhead than in arithmetic at a few hundred channels (~1.6x cheaper at 300).
Both give the same keys, and the same fractions up to the rounding of float sums.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from ..frames import FRAME_MS, FULL_SCALE
from .config import DtmfDetectorConfig
from .tones import COL_FREQS, DBM0_IN_DBFS, ROW_FREQS

__all__ = ["FUNDAMENTALS", "HOP_MS", "WINDOW_HOPS", "ToneAnalyzer", "goertzel_power"]

HOP_MS = 5
"""Analysis hop: one key decision per 5 ms per channel (four per 20 ms frame)."""
WINDOW_HOPS = 3
"""Analysis window = 3 hops = 15 ms (bins 67 Hz apart: adjacent rows, 73 Hz apart, stay separable)."""

FUNDAMENTALS = np.array(ROW_FREQS + COL_FREQS, dtype=np.float64)
"""The 8 DTMF frequencies: rows 0-3, then columns 4-7."""
_NF = FUNDAMENTALS.size


def goertzel_power(samples: npt.NDArray[np.floating] | npt.NDArray[np.int16], freq: float, rate: int) -> float:
    """|X(f)|^2 of one block by the classic Goertzel recursion (a scalar reference, used by tests)."""
    coeff = 2.0 * math.cos(2.0 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for x in samples.tolist():
        s1, s2 = x + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


def _db(db: float) -> np.float32:
    return np.float32(10.0 ** (db / 10.0))


class ToneAnalyzer:
    """Spectral front end of the DTMF bank for `capacity` channels at `sample_rate` (8 or 16 kHz).

    Each 20 ms frame is four 5 ms sub-blocks. One batched matrix product gives every sub-block's real and
    imaginary DFT parts at the 8 fundamentals (the value a Goertzel filter would end on), with phases
    referred to the frame start; a 15 ms window's DFT is then the sum of three sub-blocks', so the four
    windows ending in this frame cost no more than the sub-blocks. The last two sub-blocks are kept,
    re-phased to the next frame. Windows failing the cheap level and tone-share tests (almost all of them
    outside real DTMF) skip the twist and relative-peak tests.
    """

    def __init__(self, capacity: int, sample_rate: int, config: DtmfDetectorConfig) -> None:
        self.hop = sample_rate * HOP_MS // 1000
        self.frame_samples = sample_rate * FRAME_MS // 1000
        self.hops_per_frame = self.frame_samples // self.hop
        if self.hops_per_frame * self.hop != self.frame_samples or self.hop * 1000 != sample_rate * HOP_MS:
            raise ValueError(f"unsupported sample rate {sample_rate}")
        self.window = WINDOW_HOPS * self.hop
        self.sample_rate = sample_rate
        hops, w = self.hops_per_frame, self.window
        omega = 2.0 * math.pi * FUNDAMENTALS / sample_rate
        # basis[k]: (17, hop) for sub-block k: cos(w(kL+n)) x8, sin(w(kL+n)) x8 (phases from the frame
        # start), then ones (the sum, for removing DC from the energy).
        n = np.arange(self.frame_samples, dtype=np.float64).reshape(hops, 1, self.hop)
        phase = omega.reshape(1, _NF, 1) * n
        ones = np.ones((hops, 1, self.hop))
        basis = np.concatenate([np.cos(phase), np.sin(phase), ones], axis=1)
        self._basis_t = np.ascontiguousarray(basis.transpose(0, 2, 1), dtype=np.float32)  # (hops, hop, 17)
        shift = omega * self.frame_samples
        self._shift_cos = np.cos(shift).astype(np.float32).reshape(_NF, 1)
        self._shift_sin = np.sin(shift).astype(np.float32).reshape(_NF, 1)
        keep = WINDOW_HOPS - 1
        # Sub-block DFTs (slot, 17, N) and energies (slot, N): `keep` slots kept from the previous frame,
        # then this frame's.
        self._ys = np.zeros((keep + hops, 2 * _NF + 1, capacity), dtype=np.float32)
        self._es = np.zeros((keep + hops, capacity), dtype=np.float32)
        amplitude = FULL_SCALE * 10.0 ** ((config.min_tone_dbm0 + DBM0_IN_DBFS) / 20.0)
        self._min_power = np.float32((amplitude * w / 2.0) ** 2)  # |X|^2 of a tone at the floor level
        self._normal_twist = _db(config.normal_twist_db)
        self._reverse_twist = _db(config.reverse_twist_db)
        self._relative_peak = _db(config.relative_peak_db)
        self._fraction = np.float32(config.min_tone_fraction * w / 2.0)

    def reset(self, rows: npt.NDArray[np.intp] | int) -> None:
        """Forget the history of some channels (a new call in a reused slot)."""
        self._ys[:, :, rows] = 0.0
        self._es[:, rows] = 0.0

    def analyse(self, x: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float32]]:
        """Classify the windows ending at each hop of this `(n, frame_samples)` frame, `n <= capacity`.

        Only the first `n` channels are analysed and have their history advanced (the others keep theirs
        untouched: callers pass a prefix covering every live channel and `reset` a channel when reusing it).
        Returns `keys` (hops, n): key index row*4+col, or -1; and `fraction` (hops, n): the tone share of the
        window's energy where a key was found (0 elsewhere).
        """
        hops, keep, hop = self.hops_per_frame, WINDOW_HOPS - 1, self.hop
        n = x.shape[0]
        if n > self._es.shape[1]:
            raise ValueError(f"{n} rows for a capacity of {self._es.shape[1]}")
        ys, es = self._ys[:, :, :n], self._es[:, :n]
        sub = x.reshape(x.shape[0], hops, hop)
        # (hops, N, 17) is the fastest product; the transposed copy makes every later op contiguous.
        ys[keep:] = np.matmul(sub.transpose(1, 0, 2), self._basis_t).transpose(0, 2, 1)
        np.einsum("nkl,nkl->kn", sub, sub, out=es[keep:])
        win = ys[0:hops] + ys[1 : hops + 1]
        win += ys[2 : hops + 2]  # (hops, 17, N): DFT of the 15 ms window ending at each hop
        total = es[0:hops] + es[1 : hops + 1]
        total += es[2 : hops + 2]
        dc = win[:, 2 * _NF]
        total -= dc * dc / np.float32(self.window)
        re, im = win[:, :_NF], win[:, _NF : 2 * _NF]
        power = re * re
        power += im * im  # (hops, 8, N)
        self._keep_for_next_frame(n)

        rows, cols = power[:, :4], power[:, 4:]
        row_max = np.maximum(np.maximum(rows[:, 0], rows[:, 1]), np.maximum(rows[:, 2], rows[:, 3]))
        col_max = np.maximum(np.maximum(cols[:, 0], cols[:, 1]), np.maximum(cols[:, 2], cols[:, 3]))
        tone = row_max + col_max
        ok = (row_max >= self._min_power) & (col_max >= self._min_power) & (tone >= self._fraction * total)
        keys = np.full(ok.shape, -1, dtype=np.int8)
        fraction = np.zeros(ok.shape, dtype=np.float32)
        hop_idx, ch_idx = np.nonzero(ok)
        if hop_idx.size == 0:
            return keys, fraction
        # Fewer windows from here on: only those with two strong, dominant components.
        r = rows[hop_idx, :, ch_idx]  # (M, 4)
        c = cols[hop_idx, :, ch_idx]
        rmax, cmax = row_max[hop_idx, ch_idx], col_max[hop_idx, ch_idx]
        good = (rmax <= self._normal_twist * cmax) & (cmax <= self._reverse_twist * rmax)
        good &= np.count_nonzero(r * self._relative_peak >= rmax[:, None], axis=1) == 1
        good &= np.count_nonzero(c * self._relative_peak >= cmax[:, None], axis=1) == 1
        hop_idx, ch_idx = hop_idx[good], ch_idx[good]
        if hop_idx.size == 0:
            return keys, fraction
        best_row = np.argmax(r[good], axis=1)
        best_col = np.argmax(c[good], axis=1)
        keys[hop_idx, ch_idx] = (best_row * 4 + best_col).astype(np.int8)
        share = (rmax + cmax)[good] / (total[hop_idx, ch_idx] * np.float32(self.window / 2.0))
        fraction[hop_idx, ch_idx] = np.minimum(share, np.float32(1.0))
        return keys, fraction

    def _keep_for_next_frame(self, n: int) -> None:
        """Move the first `n` channels' last sub-blocks to the front, re-phased to the next frame's start."""
        keep = WINDOW_HOPS - 1
        ys, es = self._ys[:, :, :n], self._es[:, :n]
        last = ys[-keep:]
        re, im = last[:, :_NF], last[:, _NF : 2 * _NF]
        new_re = re * self._shift_cos
        new_re += im * self._shift_sin
        new_im = im * self._shift_cos
        new_im -= re * self._shift_sin
        ys[:keep, 2 * _NF] = last[:, 2 * _NF]
        ys[:keep, :_NF] = new_re
        ys[:keep, _NF : 2 * _NF] = new_im
        es[:keep] = es[-keep:]
