"""The internal audio frame: 16 kHz mono int16, 20 ms = 320 samples = 640 bytes, and small helpers on it.

Owns the frame constants, byte/array conversion, levels in dBFS and cutting signals into frames.
Must not know codecs, RTP, sample-rate conversion or any clock: these are pure functions of their inputs.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = [
    "DBFS_FLOOR",
    "FRAME_BYTES",
    "FRAME_MS",
    "FRAME_SAMPLES",
    "FULL_SCALE",
    "SAMPLE_RATE",
    "FrameError",
    "frame_from_bytes",
    "frame_to_bytes",
    "frames_from_signal",
    "level_dbfs",
    "levels_dbfs",
    "samples_per_frame",
    "silence_frame",
]

SAMPLE_RATE = 16_000
"""Internal sample rate in Hz."""
FRAME_MS = 20
"""Internal frame duration in milliseconds (one media-engine tick)."""
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000
"""Samples per internal frame (320)."""
FRAME_BYTES = FRAME_SAMPLES * 2
"""Bytes per internal frame as 16-bit little-endian PCM (640)."""
FULL_SCALE = 32767.0
"""Peak of a full-scale int16 sine: the 0 dBFS reference (AES17: a full-scale sine reads 0 dBFS)."""
DBFS_FLOOR = -120.0
"""Level reported for digital silence instead of minus infinity."""

_MEAN_SQUARE_0DBFS = FULL_SCALE * FULL_SCALE / 2.0
_LE_INT16 = np.dtype("<i2")


class FrameError(ValueError):
    """An audio buffer has the wrong size or shape for the operation."""


def samples_per_frame(rate: int, frame_ms: int = FRAME_MS) -> int:
    """Samples in one frame of `frame_ms` at `rate` Hz (160 at 8 kHz, 320 at 16 kHz, 960 at 48 kHz)."""
    samples, rem = divmod(rate * frame_ms, 1000)
    if rem or samples <= 0:
        raise FrameError(f"{frame_ms} ms at {rate} Hz is not a whole number of samples")
    return samples


def silence_frame(samples: int = FRAME_SAMPLES) -> npt.NDArray[np.int16]:
    """A new all-zero frame (a fresh array each call, so callers may write into it)."""
    return np.zeros(samples, dtype=np.int16)


def frame_from_bytes(data: bytes | bytearray | memoryview, samples: int = FRAME_SAMPLES) -> npt.NDArray[np.int16]:
    """Decode exactly one frame of 16-bit little-endian PCM into a new native int16 array."""
    if len(data) != 2 * samples:
        raise FrameError(f"expected {2 * samples} bytes of L16, got {len(data)}")
    return np.frombuffer(data, dtype=_LE_INT16).astype(np.int16)


def frame_to_bytes(frame: npt.NDArray[np.int16]) -> bytes:
    """Encode int16 samples as 16-bit little-endian PCM (any length, 1-D)."""
    if frame.ndim != 1:
        raise FrameError(f"expected a 1-D frame, got shape {frame.shape}")
    return frame.astype(_LE_INT16, copy=False).tobytes()


def level_dbfs(frame: npt.NDArray[np.int16] | npt.NDArray[np.floating]) -> float:
    """RMS level in dBFS (a full-scale sine is 0 dBFS, a full-scale square +3 dBFS); DBFS_FLOOR if silent."""
    if frame.size == 0:
        return DBFS_FLOOR
    x = frame.astype(np.float64, copy=False)
    mean_square = float(np.dot(x.ravel(), x.ravel())) / frame.size
    if mean_square <= 0.0:
        return DBFS_FLOOR
    return max(DBFS_FLOOR, 10.0 * math.log10(mean_square / _MEAN_SQUARE_0DBFS))


def levels_dbfs(frames: npt.NDArray[np.int16] | npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """Per-row RMS level in dBFS of an `(N, samples)` array, batched; DBFS_FLOOR for silent rows."""
    if frames.ndim != 2:
        raise FrameError(f"expected an (N, samples) array, got shape {frames.shape}")
    x = frames.astype(np.float32, copy=False)
    mean_square = np.einsum("ij,ij->i", x, x) / max(1, frames.shape[1])
    with np.errstate(divide="ignore"):
        db = 10.0 * np.log10(mean_square / np.float32(_MEAN_SQUARE_0DBFS))
    levels: npt.NDArray[np.float32] = np.maximum(db, np.float32(DBFS_FLOOR)).astype(np.float32)
    return levels


def frames_from_signal(signal: npt.NDArray[np.int16], samples: int = FRAME_SAMPLES) -> npt.NDArray[np.int16]:
    """Cut a 1-D signal into an `(n_frames, samples)` array, zero-padding the last partial frame.

    An empty signal gives zero frames. The result is a new array (the input is not aliased).
    """
    if signal.ndim != 1:
        raise FrameError(f"expected a 1-D signal, got shape {signal.shape}")
    if samples <= 0:
        raise FrameError("frame size must be positive")
    n_frames = -(-signal.size // samples)
    out = np.zeros(n_frames * samples, dtype=np.int16)
    out[: signal.size] = signal
    return out.reshape(n_frames, samples)
