"""The RTP bank's Opus rows (relayed browsers, `webrtc.opus_in_node`): which rows code Opus, their decoders, and the
encoders shared by rows that hear the same mix.

In a meeting only the loudest few talk (the engine mixes the K loudest of a conference), so every listener hears the
very same 16 kHz frame: each tick the Opus rows are grouped by their frame's bytes and each distinct frame is encoded
once, its payload copied into every member's packet slot (each stream keeps its own RTP header: sequence, timestamp,
SSRC). A group keeps the encoder one of its members used last tick, so a listener's browser goes on decoding one
continuous encoder; a row whose mix changes (a listener who starts talking) takes a free encoder, reset, and its
browser's decoder hears a few ms of transition (as with FreeSWITCH's shared conference encoding). Digital silence is
not encoded and not sent (our DTX); libopus's own DTX frames (<= 2 bytes) are not sent either.

Received Opus arrives from the jitter buffer in 160-byte slots (stream.py `_opus_slot`: its length, then the
payload; a payload too large for a slot waits on its stream, `Stream.opus_payload` finds it); each is decoded into
the row's 16 kHz frame, a lost frame rebuilt from the in-band FEC of the packet after it when the jitter buffer
holds that one already (the answer asks browsers for `useinbandfec=1`), else concealed by libopus (PLC; comfort
noise after a DTX packet), a payload libopus refuses counted on the stream (`invalid_packets`) and concealed.

Owns: the Opus state of the bank's rows. Must not: do socket I/O or RTP numbering (bank.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from .opus import FRAME_SAMPLES, OpusDecoder, OpusEncoder, OpusSettings

if TYPE_CHECKING:
    from .stream import Stream

__all__ = ["OpusRows"]

_SILENCE = bytes(2 * FRAME_SAMPLES)
_SPARE = 32  # free encoders kept for rows whose mix changes


class OpusRows:
    def __init__(self, capacity: int, pcm: npt.NDArray[np.int16]) -> None:
        self.rows = np.zeros(capacity, dtype=np.bool_)
        self.lengths: list[int] = [0] * capacity
        """Per row: the Opus payload length written into its slot this tick (0: nothing to send)."""
        self._pcm = pcm
        self._base: int = pcm.ctypes.data
        self._stride: int = pcm.strides[0]
        self._settings: list[OpusSettings | None] = [None] * capacity
        self._decoders: list[OpusDecoder | None] = [None] * capacity
        self._encoders: list[OpusEncoder | None] = [None] * capacity  # the encoder each row was sent from last
        self._live: dict[OpusEncoder, None] = {}
        self._free: dict[OpusEncoder, None] = {}
        self.encodes = 0
        """Frames encoded (one per distinct mix per tick)."""
        self.frames = 0
        """Row-frames sent from those encodings."""
        self.recovered = 0
        """Lost frames decoded from the next packet's in-band FEC (libopus's PLC where that packet has none)."""

    def set(self, row: int, on: bool, settings: OpusSettings) -> None:
        """Make `row` an Opus row (fresh decoder) or not."""
        if on == bool(self.rows[row]):
            return
        self.rows[row] = on
        self._settings[row] = settings if on else None
        self._decoders[row] = OpusDecoder() if on else None
        self._encoders[row] = None
        self.lengths[row] = 0

    def encode(self, n: int, codes: npt.NDArray[np.uint8]) -> None:
        """Encode the 16 kHz frames of the Opus rows below `n` (the bank's `pcm`), once per distinct frame, into
        `codes` (each row's payload slot) and `lengths`."""
        pcm, lengths, last = self._pcm, self.lengths, self._encoders
        groups: dict[bytes, list[int]] = {}
        for row in np.flatnonzero(self.rows[:n]).tolist():
            key = pcm[row].tobytes()
            members = groups.get(key)
            if members is None:
                groups[key] = [row]
            else:
                members.append(row)
        claimed: dict[OpusEncoder, None] = {}
        free = self._free
        for key, members in sorted(groups.items(), key=lambda item: -len(item[1])):
            if key == _SILENCE:
                for row in members:
                    lengths[row] = 0
                continue
            encoder = None
            for row in members:
                mine = last[row]
                if mine is not None and mine not in claimed:
                    encoder = mine
                    free.pop(mine, None)
                    break
            if encoder is None:
                if free:
                    encoder = free.popitem()[0]
                    encoder.reset()
                else:
                    encoder = OpusEncoder(self._settings[members[0]])
            claimed[encoder] = None
            size = encoder.encode_at(self._base + members[0] * self._stride)
            self.encodes += 1
            self.frames += len(members)
            payload = encoder.packet[:size]
            for row in members:
                last[row] = encoder
                lengths[row] = size
                codes[row, :size] = payload
        for encoder in self._live:
            if encoder not in claimed and len(free) < _SPARE:
                free[encoder] = None
        self._live = claimed

    def decode(
        self,
        rx: npt.NDArray[np.uint8],
        up: npt.NDArray[np.int16],
        played: list[Stream],
        concealed: list[Stream],
    ) -> None:
        """Overwrite the 16 kHz frames of the Opus rows among `played` (decoded from their slots in `rx`) and
        `concealed` (libopus's concealment)."""
        rows, decoders = self.rows, self._decoders
        for st in played:
            row = st.row
            decoder = decoders[row]
            if rows[row] and decoder is not None:
                errors = decoder.errors
                up[row] = decoder.decode(st.opus_payload(rx[row].tobytes(), take=True))
                if decoder.errors != errors:
                    st.invalid_packets += 1
        for st in concealed:
            row = st.row
            decoder = decoders[row]
            if rows[row] and decoder is not None:
                following = st.jb.upcoming()  # the packet after the lost one, if it is here already
                payload = st.opus_payload(following, take=False) if following is not None else None
                if payload:
                    up[row] = decoder.recover(payload)
                    self.recovered += 1
                else:
                    up[row] = decoder.decode(None)
