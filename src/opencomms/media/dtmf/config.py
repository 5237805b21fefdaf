"""Tuning of the in-band DTMF detector: one frozen dataclass, with the standard each default comes from.

Owns the acceptance thresholds only; it must not compute anything (goertzel.py, verify.py and detector.py
apply them).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DtmfDetectorConfig"]


@dataclass(frozen=True, slots=True)
class DtmfDetectorConfig:
    """Acceptance rules, after ITU-T Q.24 (AT&T column) and the usual open-source detector settings."""

    min_tone_dbm0: float = -42.0
    """Each of the two tones must be at least this loud (spandsp's practical floor; -36 dBm0 is accepted,
    -55 dBm0 rejected). 0 dBm0 = -3.17 dBFS with G.711 scaling."""
    normal_twist_db: float = 9.0
    """Low group may exceed the high group by this much (accept <= 8 dB, reject > ~10 dB)."""
    reverse_twist_db: float = 7.0
    """High group may exceed the low group by this much (accept <= 4 dB, reject > ~10 dB)."""
    relative_peak_db: float = 8.0
    """The winning row (column) must beat every other row (column) by this much."""
    min_tone_fraction: float = 0.5
    """Row + column tone power must be at least this share of the window's (DC-free) power: the
    signal-to-noise guard (15 dB SNR gives ~0.97) and the strongest talk-off guard."""
    row_harmonic_db: float = 12.0
    """Row tone over its own 2nd harmonic, tested over the whole span once per press (talk-off guard:
    voiced speech carries harmonics, generators do not). In-spec tones measure >= 18 dB."""
    col_harmonic_db: float = 15.0
    """Column tone over its own 2nd harmonic, likewise. In-spec tones measure >= 23 dB."""
    max_frequency_error: float = 0.025
    """Largest accepted deviation of either tone from nominal, measured over the span (Q.24: accept
    within +-1.5 %, reject beyond +-3.5 %)."""
    min_span_purity: float = 0.8
    """Share of the span's energy the two fitted tones must explain (15 dB SNR gives ~0.97; speech whose
    harmonics happen to sit on a row and a column always carries other harmonics too)."""
    min_duration_ms: float = 35.0
    """Report a key once its tone has lasted this long (Q.24: accept >= 40 ms, reject < ~23 ms)."""
    min_pause_ms: float = 30.0
    """A gap this long ends a key press, so the next tone counts again; shorter drop-outs are bridged
    (Q.24: pauses >= 40 ms must separate digits)."""

    def __post_init__(self) -> None:
        if self.min_duration_ms <= 0 or self.min_pause_ms <= 0:
            raise ValueError("durations must be positive")
        if not 0.0 < self.min_tone_fraction <= 1.0:
            raise ValueError("min_tone_fraction must be in (0, 1]")
