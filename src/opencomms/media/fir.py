"""Windowed-sinc FIR low-pass design with a Kaiser window, in plain numpy.

Owns filter design only (coefficients from a cutoff, a transition width and an attenuation); it must not
filter or resample signals itself, and must not depend on scipy.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["design_lowpass", "kaiser_beta", "kaiser_length"]


def kaiser_beta(attenuation_db: float) -> float:
    """Kaiser window shape parameter for a stop-band attenuation in dB (Kaiser's empirical formula)."""
    a = attenuation_db
    if a > 50.0:
        return 0.1102 * (a - 8.7)
    if a >= 21.0:
        return float(0.5842 * (a - 21.0) ** 0.4 + 0.07886 * (a - 21.0))
    return 0.0


def kaiser_length(attenuation_db: float, transition_hz: float, rate: float) -> int:
    """Taps needed for `attenuation_db` with a transition band of `transition_hz` at `rate` Hz."""
    if transition_hz <= 0.0:
        raise ValueError("transition width must be positive")
    width = 2.0 * math.pi * transition_hz / rate
    return max(3, math.ceil((attenuation_db - 7.95) / (2.285 * width)) + 1)


def design_lowpass(
    num_taps: int, cutoff_hz: float, rate: float, attenuation_db: float, gain: float = 1.0
) -> npt.NDArray[np.float64]:
    """Linear-phase low-pass FIR: sinc at `cutoff_hz` (the -6 dB point) times a Kaiser window.

    The taps are scaled so that the DC gain is exactly `gain` (an interpolator by L uses gain=L).
    """
    if num_taps < 1:
        raise ValueError("num_taps must be positive")
    if not 0.0 < cutoff_hz < rate / 2.0:
        raise ValueError(f"cutoff {cutoff_hz} Hz must lie between 0 and half of {rate} Hz")
    centre = (num_taps - 1) / 2.0
    n = np.arange(num_taps, dtype=np.float64) - centre
    taps = np.sinc(2.0 * cutoff_hz / rate * n) * np.kaiser(num_taps, kaiser_beta(attenuation_db))
    scaled: npt.NDArray[np.float64] = taps * (gain / taps.sum())
    return scaled
