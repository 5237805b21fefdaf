"""G711Rows: the RTP bank's G.711 payloads (8 kHz PCMU/PCMA) <-> the engine's 16 kHz frames, for many streams at once.

Owns, per bank row, the half-band rate conversion's history in both directions (media.resample.TELEPHONY) and the
last good 8 kHz frame (concealment), plus the G.711 code tables. One call per direction per tick: `encode` (engine
INPUT rows -> payload codes, written straight into the outgoing packets) and `decode` (each row's payload codes, a
fade of its last frame, or silence -> 16 kHz frames). Must not know streams, sockets, RTP headers or codecs other
than G.711 (the bank overwrites G.722 and Opus rows itself).

This file is the reference, in numpy (`OPENCOMMS_COMPILED=0`): FrameConverter with the TELEPHONY filter and
media.g711. `g711rows.pyx` is the same class compiled with Cython by `make compiled` (rtp/g711rows.pyx, listed in
_compiled/modules.txt): one pass per row over the filter's non-zero taps (`transcode.halfband_plan`) with no
temporaries. At a few hundred rows the numpy steps cost more in per-call overhead and temporary arrays than in
arithmetic; the compiled pass is ~8x cheaper. Both give the same samples up to the rounding of float sums (+-1 LSB,
hence now and then a neighbouring G.711 code).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ..media.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from ..media.resample import TELEPHONY
from .transcode import FrameConverter

__all__ = ["FRAME", "G711Rows"]

FRAME = 160
"""Samples (and G.711 codes) in one 20 ms payload at 8 kHz."""


class G711Rows:
    """G.711 coding and 8 <-> 16 kHz conversion for rows `[:n]` of `capacity` RTP streams (row r's history only meets
    row r; `reset(row)` when a row is handed to a new stream)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._down = FrameConverter(capacity, 16000, 8000, spec=TELEPHONY)
        self._up = FrameConverter(capacity, 8000, 16000, spec=TELEPHONY)
        self._last = np.zeros((capacity, FRAME), dtype=np.int16)
        self._pcm = np.zeros((capacity, 2 * FRAME), dtype=np.int16)

    def reset(self, row: int) -> None:
        """Forget a row's filter histories and last frame (a new stream starts in it)."""
        self._down.reset(row)
        self._up.reset(row)
        self._last[row] = 0

    def encode(
        self,
        inp: npt.NDArray[np.int32],
        erow: npt.NDArray[np.intp],
        live: npt.NDArray[np.bool_],
        alaw: npt.NDArray[np.bool_],
        out: npt.NDArray[np.uint8],
    ) -> None:
        """For each row r < n = len(erow): the 8 kHz G.711 codes (A-law where `alaw[r]`, else u-law) of the 16 kHz
        frame `inp[erow[r]]` (int16 range), or of silence where not `live[r]`, into `out[r, :160]` (`out` may be
        a strided view, e.g. the payloads of a packet buffer)."""
        n = erow.shape[0]
        pcm = self._pcm[:n]
        pcm[...] = inp[np.where(live, erow, 0)]
        pcm[~live] = 0
        pcm8 = self._down.process(pcm)
        codes = ulaw_encode(pcm8)
        if alaw.any():
            codes[alaw] = alaw_encode(pcm8[alaw])
        out[:, :FRAME] = codes

    def decode(
        self,
        codes: npt.NDArray[np.uint8],
        state: npt.NDArray[np.uint8],
        fade: npt.NDArray[np.float64],
        alaw: npt.NDArray[np.bool_],
        out: npt.NDArray[np.int16],
    ) -> None:
        """For each row r < n = len(state), the 16 kHz frame into `out[r]` of: its payload `codes[r, :160]` when
        `state[r] == 1` (kept as the row's last frame), its last frame times `fade[r]` (truncated) when 2, silence
        otherwise. Every row's filter history advances."""
        n = state.shape[0]
        pcm8 = ulaw_decode(codes[:n, :FRAME])
        if alaw.any():
            pcm8[alaw] = alaw_decode(codes[:n, :FRAME][alaw])
        good = state == 1
        pcm8[state == 0] = 0
        concealed = np.flatnonzero(state == 2)
        if concealed.size:
            pcm8[concealed] = (self._last[concealed] * fade[concealed, None]).astype(np.int16)
        self._last[:n][good] = pcm8[good]
        out[...] = self._up.process(pcm8)
