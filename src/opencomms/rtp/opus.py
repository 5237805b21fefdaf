"""Opus (RFC 6716) for the RTP bank's browser rows: a ctypes binding to the system libopus (Debian's libopus0, the
library rtpengine itself links), coding at the engine's own 16 kHz (no resampling; the RTP clock stays 48 kHz, RFC
7587, which the bank handles) in 20 ms frames of 320 mono samples.

One C call per frame and no allocation on the hot path: the encoder writes into its own preallocated packet buffer
from a frame's address (`encode_at`), the decoder into its own preallocated 16 kHz frame (`decode`; None is a lost
frame, concealed by libopus's PLC, which after a DTX packet is its comfort noise; `recover(next payload)` rebuilds a
lost frame from the in-band FEC of the packet after it). A payload libopus refuses is
counted (`errors`) and concealed, never raised: a browser's bad packet costs one frame, not the call.

Owns: the binding, the encoder settings (complexity, bitrate, VBR, DTX, voice, wideband at most) and the decoder.
Must not: know RTP, streams or the bank's rows.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "FRAME_SAMPLES",
    "LARGE_SLOT",
    "MAX_PACKET",
    "MAX_RECEIVED",
    "OpusDecoder",
    "OpusEncoder",
    "OpusError",
    "OpusSettings",
    "available",
]

RATE = 16000
"""The rate libopus codes at here: the engine's."""
FRAME_SAMPLES = 320
"""20 ms at 16 kHz."""
MAX_PACKET = 159
"""Largest payload the encoder may produce (fits the bank's packet slot; 63 kbit/s at 20 ms, far above what a
wideband voice encoder at <= 40 kbit/s writes)."""
MAX_RECEIVED = 1276
"""Largest Opus packet of one 20 ms frame (RFC 6716: a TOC byte and 1275 bytes): what a peer may send, whatever the
answer's `maxaveragebitrate` asked (aiortc sends ~290 bytes, stereo fullband)."""
LARGE_SLOT = 255
"""The length byte of a jitter-buffer slot whose payload did not fit it (over MAX_PACKET): the payload waits in the
stream's `opus_large`, under the key in the slot's next four bytes (rtp/stream.py, rtp/opus_rows.py)."""
_MAX_DECODED = 6 * FRAME_SAMPLES  # 120 ms, the longest Opus packet

_APPLICATION_VOIP = 2048
_SET_BITRATE = 4002
_SET_MAX_BANDWIDTH = 4004
_SET_VBR = 4006
_SET_COMPLEXITY = 4010
_SET_INBAND_FEC = 4012
_SET_PACKET_LOSS_PERC = 4014
_SET_DTX = 4016
_SET_SIGNAL = 4024
_SIGNAL_VOICE = 3001
_BANDWIDTH_WIDEBAND = 1103
_RESET_STATE = 4028


class OpusError(RuntimeError):
    """libopus is missing or refused to create a coder."""


_lib: Any = None


def _load() -> Any:
    global _lib
    if _lib is not None:
        return _lib
    name = ctypes.util.find_library("opus") or "libopus.so.0"
    try:
        lib = ctypes.CDLL(name)
    except OSError as exc:
        raise OpusError(f"libopus not found ({name}): install libopus0") from exc
    lib.opus_encoder_create.argtypes = (ctypes.c_int32, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_int))
    lib.opus_encoder_create.restype = ctypes.c_void_p
    lib.opus_encoder_destroy.argtypes = (ctypes.c_void_p,)
    lib.opus_encoder_destroy.restype = None
    lib.opus_encode.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int32)
    lib.opus_encode.restype = ctypes.c_int32
    lib.opus_decoder_create.argtypes = (ctypes.c_int32, ctypes.c_int, ctypes.POINTER(ctypes.c_int))
    lib.opus_decoder_create.restype = ctypes.c_void_p
    lib.opus_decoder_destroy.argtypes = (ctypes.c_void_p,)
    lib.opus_decoder_destroy.restype = None
    lib.opus_decode.argtypes = (
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_int32,
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_int,
    )
    lib.opus_decode.restype = ctypes.c_int
    lib.opus_encoder_ctl.restype = ctypes.c_int  # variadic: (st, request, opus_int32)
    _lib = lib
    return lib


def available() -> bool:
    """True when the system libopus can be loaded."""
    try:
        _load()
    except OpusError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class OpusSettings:
    """How the node encodes Opus toward browsers (`rtp.opus_*`)."""

    complexity: int = 1
    """libopus complexity 0..10: 0-3 is what SFUs and PBXs run for voice; wideband SILK at 1 costs a fraction of
    the default 10 and sounds the same at 16 kHz."""
    bitrate: int = 24000
    """Target bits per second (VBR); 6000..40000 (the packet must fit the bank's slot)."""
    dtx: bool = False
    """libopus's discontinuous transmission (frames its VAD finds inactive are not sent; a comfort-noise update every
    400 ms). Off by default: its VAD also discontinues steady tones (a 440 Hz test tone, hold music); the bank sends
    nothing for digital silence anyway, which is what a meeting's listeners hear when nobody talks."""

    def __post_init__(self) -> None:
        if not 0 <= self.complexity <= 10:
            raise ValueError("Opus complexity must be 0..10")
        if not 6000 <= self.bitrate <= 40000:
            raise ValueError("Opus bitrate must be 6000..40000 bit/s")


class OpusEncoder:
    """One Opus encoder, mono 16 kHz, 20 ms frames. `encode_at(address)` encodes the 320 int16 samples at that
    address into `packet` and returns the payload length (<= 2: a DTX frame, not to be sent)."""

    def __init__(self, settings: OpusSettings | None = None) -> None:
        s = settings or OpusSettings()
        lib = self._lib = _load()
        err = ctypes.c_int(0)
        handle = lib.opus_encoder_create(RATE, 1, _APPLICATION_VOIP, ctypes.byref(err))
        if not handle or err.value != 0:
            raise OpusError(f"opus_encoder_create failed ({err.value})")
        self._handle: int = handle
        ctl = lib.opus_encoder_ctl
        for request, value in (
            (_SET_COMPLEXITY, s.complexity),
            (_SET_BITRATE, s.bitrate),
            (_SET_VBR, 1),
            (_SET_DTX, 1 if s.dtx else 0),
            (_SET_SIGNAL, _SIGNAL_VOICE),
            (_SET_MAX_BANDWIDTH, _BANDWIDTH_WIDEBAND),
            (_SET_INBAND_FEC, 0),
            (_SET_PACKET_LOSS_PERC, 0),
        ):
            ctl(ctypes.c_void_p(handle), ctypes.c_int(request), ctypes.c_int32(value))
        self.packet = np.zeros(MAX_PACKET, dtype=np.uint8)
        """The last payload (its first `encode_at()` bytes)."""
        self._packet_addr: int = self.packet.ctypes.data
        self._encode = lib.opus_encode
        self.errors = 0

    def encode_at(self, address: int) -> int:
        """Encode the 20 ms frame at `address` (320 native int16); the payload is `packet[:n]`; 0 on error."""
        n: int = self._encode(self._handle, address, FRAME_SAMPLES, self._packet_addr, MAX_PACKET)
        if n < 0:
            self.errors += 1
            return 0
        return n

    def reset(self) -> None:
        """Forget the audio encoded so far (an encoder taken over for another stream)."""
        self._lib.opus_encoder_ctl(ctypes.c_void_p(self._handle), ctypes.c_int(_RESET_STATE))

    def encode(self, pcm: npt.NDArray[np.int16]) -> bytes:
        """One frame (320 samples) to its Opus payload (convenience: copies)."""
        frame = np.ascontiguousarray(pcm, dtype=np.int16)
        if frame.shape != (FRAME_SAMPLES,):
            raise ValueError(f"an Opus frame here is {FRAME_SAMPLES} samples")
        n = self.encode_at(frame.ctypes.data)
        return self.packet[:n].tobytes()

    def __del__(self) -> None:
        handle, self._handle = getattr(self, "_handle", 0), 0
        if handle:
            self._lib.opus_encoder_destroy(handle)


class OpusDecoder:
    """One Opus decoder to mono 16 kHz. `decode(payload)` returns the 20 ms frame (a view of the decoder's own
    buffer, valid until the next call); `decode(None)` conceals a lost frame."""

    def __init__(self) -> None:
        lib = self._lib = _load()
        err = ctypes.c_int(0)
        handle = lib.opus_decoder_create(RATE, 1, ctypes.byref(err))
        if not handle or err.value != 0:
            raise OpusError(f"opus_decoder_create failed ({err.value})")
        self._handle: int = handle
        self._pcm = np.zeros(_MAX_DECODED, dtype=np.int16)
        self._pcm_addr: int = self._pcm.ctypes.data
        self.frame = self._pcm[:FRAME_SAMPLES]
        self._decode = lib.opus_decode
        self.errors = 0
        """Payloads libopus refused (concealed instead)."""
        self.long_packets = 0
        """Packets longer than 20 ms (only their first 20 ms is played)."""

    def decode(self, payload: bytes | None) -> npt.NDArray[np.int16]:
        """The 320 samples of `payload`, or concealment for a lost frame (None, or a payload libopus refuses)."""
        if payload:
            n = self._decode(self._handle, payload, len(payload), self._pcm_addr, _MAX_DECODED, 0)
            if n >= FRAME_SAMPLES:
                if n > FRAME_SAMPLES:
                    self.long_packets += 1
                return self.frame
            self.errors += 1
        n = self._decode(self._handle, None, 0, self._pcm_addr, FRAME_SAMPLES, 0)
        if n != FRAME_SAMPLES:
            self.frame[:] = 0
        return self.frame

    def recover(self, following: bytes) -> npt.NDArray[np.int16]:
        """The lost 20 ms just before the packet `following`, from that packet's in-band FEC (its LBRR data, RFC
        6716 §2.1.7); libopus conceals (PLC) when it carries none. `following` is then decoded as usual."""
        n = self._decode(self._handle, following, len(following), self._pcm_addr, FRAME_SAMPLES, 1)
        return self.frame if n == FRAME_SAMPLES else self.decode(None)

    def __del__(self) -> None:
        handle, self._handle = getattr(self, "_handle", 0), 0
        if handle:
            self._lib.opus_decoder_destroy(handle)
