"""G.722 (ITU-T, 64 kbit/s SB-ADPCM) on 16 kHz 16-bit linear frames, one stateful coder per stream and direction.

Owns the wrapper around the compiled `G722` extension (PyPI `g722`, Sippy's libg722: the bit-exact C coder of
spandsp lineage, used in wideband mode, so audio goes 16 kHz in and out without passing through 8 kHz). G.722 is an
ADPCM coder: each direction of each stream needs its own coder, fed every frame in order. 20 ms = 320 samples =
160 bytes, and RTP stamps it with an 8000 Hz clock (RFC 3551 §4.5.2), so the jitter buffer and packet geometry of
G.711 hold for it too. Must not resample, frame or packetise audio.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from G722 import G722 as _Coder

__all__ = ["FRAME_BYTES", "FRAME_SAMPLES", "G722_SILENCE", "SAMPLE_RATE", "G722Decoder", "G722Encoder"]

SAMPLE_RATE = 16_000
"""Linear audio rate on both sides of the coder."""
FRAME_SAMPLES = 320
"""Samples in 20 ms."""
FRAME_BYTES = 160
"""G.722 bytes in 20 ms at 64 kbit/s (two samples per byte)."""
G722_SILENCE = 0xFC
"""A code byte that a decoder, fed it repeatedly, turns into digital silence (fill for gaps inside a frame)."""
_BIT_RATE = 64_000


class G722Encoder:
    """Encodes one stream's outgoing 16 kHz audio, frame after frame (the coder's state carries over)."""

    __slots__ = ("_coder",)

    def __init__(self) -> None:
        self._coder = _Coder(SAMPLE_RATE, _BIT_RATE)

    def encode(self, pcm: npt.NDArray[np.int16]) -> bytes:
        """`pcm`: 1-D int16 at 16 kHz, an even number of samples; half as many bytes come back."""
        out: bytes = self._coder.encode(np.ascontiguousarray(pcm, dtype=np.int16))
        return out


class G722Decoder:
    """Decodes one stream's incoming G.722 bytes to 16 kHz audio, in order (the coder's state carries over)."""

    __slots__ = ("_coder",)

    def __init__(self) -> None:
        self._coder = _Coder(SAMPLE_RATE, _BIT_RATE)

    def decode(self, codes: bytes | bytearray | memoryview) -> npt.NDArray[np.int16]:
        """Two int16 samples at 16 kHz per byte."""
        out: npt.NDArray[np.int16] = np.frombuffer(self._coder.decode(bytes(codes)), dtype=np.int16)
        return out
