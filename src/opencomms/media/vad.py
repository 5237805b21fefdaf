"""Energy-based voice activity detection for many channels at once, one 20 ms frame per call.

Owns per-channel levels, the adaptive noise floor (minimum statistics), onset and hangover counting.
Must not read a clock, know about calls or speakers, or keep audio: it sees frame energies only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .frames import DBFS_FLOOR, FRAME_MS, FULL_SCALE
from .slots import SlotTable

__all__ = ["VadBank", "VadConfig", "VadResult"]


@dataclass(frozen=True, slots=True)
class VadConfig:
    """Tuning of the voice activity detector (levels in dBFS: a full-scale sine is 0 dBFS)."""

    threshold_db: float = 9.0
    """A frame is loud enough for speech when it is this far above the channel's noise floor."""
    min_speech_dbfs: float = -50.0
    """...and above this absolute level (quiet lines are never speech)."""
    onset_ms: int = 40
    """Speech must last this long (consecutive loud frames) to switch a channel active."""
    hangover_ms: int = 300
    """A channel stays active this long after its last loud frame (bridges pauses between words)."""
    noise_window_ms: int = 2000
    """The noise floor is the quietest frame level over roughly this long (minimum statistics)."""
    noise_floor_min_dbfs: float = -80.0
    """The floor never goes below this (digital silence or packet loss does not drag it to -120)."""
    frame_ms: int = FRAME_MS
    """Duration of one frame, for converting the times above to frame counts."""

    def __post_init__(self) -> None:
        if self.frame_ms <= 0 or self.onset_ms < 0 or self.hangover_ms < 0 or self.noise_window_ms <= 0:
            raise ValueError("durations must be positive (onset and hangover may be 0)")


@dataclass(frozen=True, slots=True)
class VadResult:
    """One frame's decisions for every row processed (the prefix given to `process`; free rows read inactive)."""

    active: npt.NDArray[np.bool_]
    """Speech present (after onset and hangover)."""
    changed: npt.NDArray[np.bool_]
    """`active` differs from the previous frame (speech started or stopped)."""
    level_dbfs: npt.NDArray[np.float32]
    """Frame RMS level, DBFS_FLOOR for digital silence."""
    noise_floor_dbfs: npt.NDArray[np.float32]
    """Current noise-floor estimate."""


_SUBWINDOWS = 8
_MEAN_SQUARE_0DBFS = FULL_SCALE * FULL_SCALE / 2.0


class VadBank:
    """Voice activity for up to `capacity` channels: `process(frames)` takes an `(n, samples)` array (int16 or
    float32) and returns a VadResult of `n` rows. Channels occupy fixed rows, handed out lowest first by
    `add_channel()` and freed by `remove_channel(row)`, as in the DTMF bank (the same audio matrix can feed
    both). `n` may be anything from `end` (one past the highest row in use) to `capacity`, so a large bank
    with few channels in use processes only the prefix it is given.

    Each frame's level is compared with a noise floor tracked by minimum statistics: the minimum level
    over `noise_window_ms`, kept as 8 sub-window minima, so the floor falls at once when the line gets
    quieter and rises within one window when the noise gets louder, while pauses between words keep it
    down during long speech.
    """

    def __init__(self, capacity: int, config: VadConfig | None = None) -> None:
        self.config = cfg = config or VadConfig()
        self._slots = SlotTable(capacity)
        self._onset = max(1, math.ceil(cfg.onset_ms / cfg.frame_ms))
        self._hangover = math.ceil(cfg.hangover_ms / cfg.frame_ms)
        self._sub_len = max(1, math.ceil(cfg.noise_window_ms / cfg.frame_ms / _SUBWINDOWS))
        self._frame_count = 0
        self._minima = np.full((_SUBWINDOWS, capacity), np.inf, dtype=np.float32)
        self._current_min = np.full(capacity, np.inf, dtype=np.float32)
        self._loud_run = np.zeros(capacity, dtype=np.int32)
        self._hold = np.zeros(capacity, dtype=np.int32)
        self._active = np.zeros(capacity, dtype=np.bool_)
        self._min_floor = np.float32(cfg.noise_floor_min_dbfs)
        self._threshold = np.float32(cfg.threshold_db)
        self._min_speech = np.float32(cfg.min_speech_dbfs)

    @property
    def capacity(self) -> int:
        """Number of rows (the first dimension `process` expects)."""
        return self._slots.capacity

    @property
    def end(self) -> int:
        """One past the highest row in use: the fewest rows `process` accepts."""
        return self._slots.end

    def add_channel(self) -> int:
        """Claim a free row with fresh state; raises BankFullError when all are in use."""
        row = self._slots.add()
        self._minima[:, row] = np.inf
        self._current_min[row] = np.inf
        self._loud_run[row] = 0
        self._hold[row] = 0
        self._active[row] = False
        return row

    def remove_channel(self, row: int) -> None:
        """Free a row. Raises KeyError if it is not in use."""
        self._slots.remove(row)

    def process(self, frames: npt.NDArray[np.int16] | npt.NDArray[np.float32]) -> VadResult:
        """Classify one frame for each of the first `n` rows (`end <= n <= capacity`); rows from `n` on are
        not looked at and their state does not advance."""
        if frames.ndim != 2:
            raise ValueError(f"expected shape (n, samples), got {frames.shape}")
        n = frames.shape[0]
        self._slots.check_prefix(n)
        x = frames if frames.dtype == np.float32 else frames.astype(np.float32)
        mean_square = np.einsum("ij,ij->i", x, x) / np.float32(x.shape[1] * _MEAN_SQUARE_0DBFS)
        with np.errstate(divide="ignore"):
            level = np.maximum(np.float32(10.0) * np.log10(mean_square), np.float32(DBFS_FLOOR))
        level = level.astype(np.float32, copy=False)

        # Minimum statistics: running minimum of this sub-window, plus the last 8 sub-windows' minima.
        current_min = self._current_min[:n]
        np.minimum(current_min, np.maximum(level, self._min_floor), out=current_min)
        floor = np.minimum(self._minima[:, :n].min(axis=0), current_min)
        self._frame_count += 1
        if self._frame_count % self._sub_len == 0:
            self._minima[:, :n] = np.roll(self._minima[:, :n], 1, axis=0)
            self._minima[0, :n] = current_min
            current_min.fill(np.inf)

        loud = (level > floor + self._threshold) & (level > self._min_speech)
        loud_run = np.where(loud, self._loud_run[:n] + 1, 0)
        onset = loud_run >= self._onset
        was = self._active[:n].copy()
        hold = np.where(onset, self._hangover, np.where(loud & was, self._hangover, self._hold[:n] - 1))
        active = (onset | (was & (hold >= 0))) & self._slots.active[:n]
        self._loud_run[:n] = loud_run
        self._hold[:n] = np.maximum(hold, -1)
        self._active[:n] = active
        return VadResult(active, active != was, level, floor)
