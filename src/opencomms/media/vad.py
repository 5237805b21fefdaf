"""Energy-based voice activity detection for many channels at once, one 20 ms frame per call.

Owns the configuration, the channels' rows and the results; the per-row numbers (levels, the adaptive noise floor by
minimum statistics, onset and hangover counting) are vadrows.VadRows, which has a compiled twin. Must not read a
clock, know about calls or speakers, or keep audio: it sees frame energies only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .frames import FRAME_MS
from .slots import SlotTable
from .vadrows import SUBWINDOWS, VadRows

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
        self._rows = VadRows(
            capacity,
            onset=max(1, math.ceil(cfg.onset_ms / cfg.frame_ms)),
            hangover=math.ceil(cfg.hangover_ms / cfg.frame_ms),
            sub_len=max(1, math.ceil(cfg.noise_window_ms / cfg.frame_ms / SUBWINDOWS)),
            threshold=cfg.threshold_db,
            min_speech=cfg.min_speech_dbfs,
            min_floor=cfg.noise_floor_min_dbfs,
        )

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
        self._rows.reset(row)
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
        x: npt.NDArray[np.float32] = frames.astype(np.float32, copy=False)
        active, changed, level, floor = self._rows.process(x, self._slots.active[:n])
        return VadResult(active, changed, level, floor)
