"""Once-per-press DTMF verification over the whole tone span: actual frequencies, purity, 2nd harmonics.

Owns the span tests and their precomputed tables; batched over the candidates of one hop. Must not look
at windows, keep state between calls or decide timing (goertzel.py and detector.py do).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from .config import DtmfDetectorConfig
from .goertzel import FUNDAMENTALS, HOP_MS, WINDOW_HOPS

__all__ = ["SpanVerifier"]

_NF = FUNDAMENTALS.size
_SEARCH = 1.0 + np.linspace(-0.035, 0.035, 29)  # relative frequency grid searched around each nominal


@lru_cache(maxsize=4)
def _tables(sample_rate: int, samples: int) -> npt.NDArray[np.float32]:
    """(8, samples, 4 * grid): per fundamental, columns cos f, sin f, cos 2f, sin 2f at every searched f.

    Shared between banks of the same rate and read-only.
    """
    t = np.arange(samples, dtype=np.float64) / sample_rate
    phase = 2.0 * math.pi * t[None, :, None] * FUNDAMENTALS[:, None, None] * _SEARCH[None, None, :]
    tables = np.concatenate([np.cos(phase), np.sin(phase), np.cos(2 * phase), np.sin(2 * phase)], axis=2)
    out = np.ascontiguousarray(tables, dtype=np.float32)
    out.flags.writeable = False
    return out


def _db(db: float) -> float:
    return float(10.0 ** (db / 10.0))


class SpanVerifier:
    """Runs the span tests for candidates about to be reported, spans up to `max_ms` long."""

    def __init__(self, sample_rate: int, config: DtmfDetectorConfig, max_ms: int = 60) -> None:
        if 2 * (2 * FUNDAMENTALS.max()) >= sample_rate:
            raise ValueError("sample rate too low for 2nd-harmonic checks")
        self.sample_rate = sample_rate
        self._min_samples = WINDOW_HOPS * HOP_MS * sample_rate // 1000
        self._max_samples = max_ms * sample_rate // 1000
        self._tables = _tables(sample_rate, self._max_samples)
        self._row_harmonic = _db(config.row_harmonic_db)
        self._col_harmonic = _db(config.col_harmonic_db)
        self._max_error = config.max_frequency_error + 1e-9
        self._purity = config.min_span_purity

    def verify(
        self,
        audio: npt.NDArray[np.float32],
        begin: npt.NDArray[np.intp],
        stop: int,
        keys: npt.NDArray[np.intp],
    ) -> npt.NDArray[np.bool_]:
        """Test candidate i's tone `audio[i, begin[i]:stop]` (at most its last `max_ms`) for key index
        `keys[i]` (row*4+col); all spans of one call end together. Returns one verdict per candidate.

        A long span is sharp in frequency, so each tone's actual frequency is found first (searched
        within +-3.5 %, accepted within `max_frequency_error`); then both tones and both 2nd harmonics are
        fitted jointly by least squares. That separates the column tone's leakage from the row's harmonic
        (2 x 697 Hz lies only 58 Hz from 1336 Hz), and measures how much of the span's energy the two tones
        explain (`min_span_purity`) without penalising off-nominal frequencies as a fixed-bin test would.
        Batched over the candidates: spans are right-aligned in one slice and masked, the Gram matrices
        come in closed form, so nothing per candidate is gathered or built in Python.
        """
        m = keys.size
        lengths = np.clip(stop - begin, 0, self._max_samples)
        n = int(lengths.max(initial=0))
        if m == 0 or n < self._min_samples:
            return np.zeros(m, dtype=np.bool_)
        offset = n - lengths  # where each span starts within the common slice
        mask = np.arange(n)[None, :] >= offset[:, None]
        segs = np.where(mask, audio[:, stop - n : stop], np.float32(0.0))
        mean = (segs.sum(axis=1) / np.maximum(lengths, 1)).astype(np.float32)
        segs -= mean[:, None]
        segs *= mask
        tones = np.stack([keys // 4, 4 + keys % 4], axis=1)  # fundamental index of row and column
        # Correlations with cos/sin at every searched frequency f and at 2f: (4, m, [row, col], grid).
        grid = _SEARCH.size
        corr = np.zeros((4, m, 2, grid), dtype=np.float32)
        for group in (0, 1):
            for f in range(4 * group, 4 * group + 4):  # (np.unique would import numpy.ma on first use)
                sel = np.flatnonzero(tones[:, group] == f)
                if sel.size == 0:
                    continue
                rows = segs if sel.size == m else segs[sel]
                corr[:, sel, group] = (rows @ self._tables[f, :n]).reshape(sel.size, 4, grid).transpose(1, 0, 2)
        power = corr[0] ** 2 + corr[1] ** 2
        best = np.argmax(power, axis=2)  # (m, 2)
        ok = (np.abs(_SEARCH[best] - 1.0) <= self._max_error).all(axis=1) & (lengths >= self._min_samples)
        pick = np.take_along_axis(corr, best[None, :, :, None], axis=3)[..., 0].astype(np.float64)  # (4, m, 2)
        # Least squares on [cos f_r, cos f_c, cos 2f_r, cos 2f_c, sin ...]: rhs from the correlations, the
        # Gram matrix in closed form (sums of cosines over the span), so no design matrix is materialised.
        rhs = np.concatenate([pick[0], pick[2], pick[1], pick[3]], axis=1)  # (m, 8)
        freqs = FUNDAMENTALS[tones] * _SEARCH[best]  # (m, 2) Hz
        omega = 2.0 * math.pi * np.concatenate([freqs, 2.0 * freqs], axis=1) / self.sample_rate  # (m, 4)
        gram = _gram(omega, offset.astype(np.float64), lengths.astype(np.float64))
        gram += np.eye(8) * (1e-9 * np.trace(gram, axis1=1, axis2=2) + 1e-9)[:, None, None]
        coef = np.linalg.solve(gram, rhs[..., None])[..., 0]
        amp = coef[:, :4] ** 2 + coef[:, 4:] ** 2  # squared amplitude of each component
        fund = coef[:, [0, 1, 4, 5]]
        sub = gram[:, [0, 1, 4, 5]][:, :, [0, 1, 4, 5]]
        tone_energy = np.einsum("mi,mij,mj->m", fund, sub, fund)
        energy = np.einsum("mn,mn->m", segs, segs).astype(np.float64)
        ok &= (amp[:, 0] >= self._row_harmonic * amp[:, 2]) & (amp[:, 1] >= self._col_harmonic * amp[:, 3])
        ok &= tone_energy >= self._purity * energy
        verdict: npt.NDArray[np.bool_] = ok
        return verdict


def _cos_sum(
    w: npt.NDArray[np.float64], start: npt.NDArray[np.float64], n: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """sum(cos(w t)) and sum(sin(w t)) for t = start..start+n-1 (Dirichlet kernel), elementwise."""
    half = np.sin(w / 2.0)
    small = np.abs(half) < 1e-12
    ratio = np.sin(n * w / 2.0) / np.where(small, 1.0, half)
    centre = (2.0 * start + n - 1.0) * w / 2.0
    c = np.where(small, n, ratio * np.cos(centre))
    s = np.where(small, 0.0, ratio * np.sin(centre))
    return c, s


def _gram(
    omega: npt.NDArray[np.float64], start: npt.NDArray[np.float64], n: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Gram matrices (m, 8, 8) of [cos(w_i t), sin(w_i t)] over start <= t < start + n, for m sets of 4
    frequencies."""
    a, b = omega[:, :, None], omega[:, None, :]
    t0, nn = start[:, None, None], n[:, None, None]
    c_minus, s_minus = _cos_sum(a - b, t0, nn)
    c_plus, s_plus = _cos_sum(a + b, t0, nn)
    cc = 0.5 * (c_minus + c_plus)
    ss = 0.5 * (c_minus - c_plus)
    cs = 0.5 * (s_plus - s_minus)  # sum cos(a t) sin(b t)
    top = np.concatenate([cc, cs], axis=2)
    bottom = np.concatenate([cs.transpose(0, 2, 1), ss], axis=2)
    return np.concatenate([top, bottom], axis=1)
