"""Media DSP for the 20 ms engine: frames, G.711, resampling, DTMF (in-band and RFC 4733) and VAD.

Pure, batched numpy code with no I/O and no clock; the engine that drives it per tick lives elsewhere.
(`resample()` stays in `opencomms.media.resample`: re-exporting it here would shadow that module.)
"""

from __future__ import annotations

from opencomms import blas as _blas  # noqa: F401  (pins BLAS threads before numpy loads)
from opencomms._compiled import activated as _compiled  # noqa: F401  (compiled media path, if built)

from .frames import FRAME_BYTES, FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE
from .resample import Resampler
from .slots import BankFullError
from .vad import VadBank, VadConfig, VadResult

__all__ = [
    "FRAME_BYTES",
    "FRAME_MS",
    "FRAME_SAMPLES",
    "SAMPLE_RATE",
    "BankFullError",
    "Resampler",
    "VadBank",
    "VadConfig",
    "VadResult",
]
