"""WAV (RIFF/WAVE) decoding to the internal 16 kHz mono int16 format, and a minimal 16-bit PCM encoder.

Owns the RIFF chunk walk, the `fmt ` interpretation (PCM 8/16/24/32-bit, IEEE float 32/64, A-law, mu-law and
WAVE_FORMAT_EXTENSIBLE wrapping any of them), mixing down to mono and the one call to the resampler.
Must not do I/O, cache, or know where the bytes came from: it is a pure function of the bytes and the limit.
Every malformed or unsupported input raises `PromptError(NOT_WAV, reason)`; audio longer than the caller's
limit raises `PromptError(TOO_LONG, ...)`, decided from the header before any sample is converted.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from opencomms.domain.media import PromptError, PromptFailure

from .frames import SAMPLE_RATE
from .g711 import alaw_decode, ulaw_decode
from .resample import resample

__all__ = ["MAX_RATE", "MIN_RATE", "WavFormat", "decode_wav", "encode_wav", "read_format"]

MIN_RATE = 8_000
"""Lowest sample rate accepted, in Hz."""
MAX_RATE = 48_000
"""Highest sample rate accepted, in Hz."""

_PCM = 0x0001
_IEEE_FLOAT = 0x0003
_ALAW = 0x0006
_MULAW = 0x0007
_EXTENSIBLE = 0xFFFE
_TAG_NAMES = {_PCM: "PCM", _IEEE_FLOAT: "IEEE float", _ALAW: "A-law", _MULAW: "mu-law"}
_GUID_SUFFIX = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
"""Bytes 2..15 of every KSDATAFORMAT_SUBTYPE_* GUID that wraps a classic format tag (in its first two bytes)."""
_SUPPORTED_BITS = {_PCM: (8, 16, 24, 32), _IEEE_FLOAT: (32, 64), _ALAW: (8,), _MULAW: (8,)}
_STREAMED_SIZES = (0, 0xFFFFFFFF)
"""data sizes written by encoders that stream and never seek back (espeak-ng writes 0x7FFFF000 instead:
that case is caught as 'larger than the file')."""
_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")


@dataclass(frozen=True, slots=True)
class WavFormat:
    """What the header of a WAV file says, after validation."""

    format_tag: int
    """The effective format tag (the subformat for WAVE_FORMAT_EXTENSIBLE): 1, 3, 6 or 7."""
    channels: int
    rate: int
    bits: int
    """Container bits per sample."""
    data_offset: int
    """Offset of the first sample byte in the file."""
    data_bytes: int
    """Bytes of sample data actually present (whole frames only)."""

    @property
    def frame_bytes(self) -> int:
        """Bytes per sample frame (one sample of every channel)."""
        return self.channels * (self.bits // 8)

    @property
    def frames(self) -> int:
        return self.data_bytes // self.frame_bytes

    @property
    def seconds(self) -> float:
        return self.frames / self.rate


def _fail(reason: str) -> PromptError:
    return PromptError(PromptFailure.NOT_WAV, reason)


def _parse_fmt(body: memoryview) -> tuple[int, int, int, int]:
    """(format tag, channels, rate, bits) from a `fmt ` chunk body, resolving WAVE_FORMAT_EXTENSIBLE."""
    if len(body) < 16:
        raise _fail(f"fmt chunk too short ({len(body)} bytes, need 16)")
    tag, channels, rate, _byte_rate, _block_align, bits = struct.unpack_from("<HHIIHH", body)
    if tag == _EXTENSIBLE:
        if len(body) < 40:
            raise _fail(f"WAVE_FORMAT_EXTENSIBLE fmt chunk too short ({len(body)} bytes, need 40)")
        guid = bytes(body[24:40])
        if guid[2:] != _GUID_SUFFIX:
            raise _fail(f"unsupported WAVE_FORMAT_EXTENSIBLE subformat {guid.hex()}")
        tag = int.from_bytes(guid[:2], "little")
        if tag not in _SUPPORTED_BITS:
            raise _fail(f"unsupported WAVE_FORMAT_EXTENSIBLE subformat tag {tag}")
    elif tag not in _SUPPORTED_BITS:
        raise _fail(f"unsupported format tag {tag}")
    if channels == 0:
        raise _fail("zero channels")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise _fail(f"unsupported sample rate {rate} Hz (need {MIN_RATE}..{MAX_RATE})")
    if bits not in _SUPPORTED_BITS[tag]:
        raise _fail(f"unsupported {_TAG_NAMES[tag]} sample size of {bits} bits")
    return tag, channels, rate, bits


def read_format(data: bytes | bytearray | memoryview) -> WavFormat:
    """Walk the RIFF chunks and validate the header; no sample is converted.

    The walk honours odd-size padding and stops at the data chunk when that chunk claims to run to the end
    of the file (a size field of 0, 0xFFFFFFFF or more than the bytes left: a streamed WAV). Chunks after a
    properly sized data chunk are walked too, so a `fmt ` chunk placed after the data is still found.
    """
    view = memoryview(data).cast("B")
    if len(view) < 12:
        raise _fail(f"too short for a RIFF header ({len(view)} bytes)")
    magic, form = bytes(view[0:4]), bytes(view[8:12])
    if magic != b"RIFF":
        raise _fail("not a RIFF file" + (" (RF64 is not supported)" if magic == b"RF64" else ""))
    if form != b"WAVE":
        raise _fail(f"RIFF form type is {form!r}, not 'WAVE'")
    fmt: tuple[int, int, int, int] | None = None
    data_range: tuple[int, int] | None = None
    pos, end = 12, len(view)
    while pos + 8 <= end:
        chunk_id = bytes(view[pos : pos + 4])
        size = int.from_bytes(view[pos + 4 : pos + 8], "little")
        body_start = pos + 8
        if chunk_id == b"data":
            if data_range is None:
                streamed = size in _STREAMED_SIZES or size > end - body_start
                data_range = (body_start, end if streamed else body_start + size)
                if streamed:
                    break
        elif chunk_id == b"fmt " and fmt is None:
            if size > end - body_start:
                raise _fail(f"fmt chunk claims {size} bytes but only {end - body_start} remain")
            fmt = _parse_fmt(view[body_start : body_start + size])
        pos = body_start + size + (size & 1)
    if fmt is None:
        raise _fail("no fmt chunk")
    if data_range is None:
        raise _fail("no data chunk")
    tag, channels, rate, bits = fmt
    frame_bytes = channels * (bits // 8)
    usable = (data_range[1] - data_range[0]) // frame_bytes * frame_bytes
    if usable == 0:
        raise _fail("no samples")
    return WavFormat(tag, channels, rate, bits, data_range[0], usable)


def _channels_as_float(fmt: WavFormat, raw: memoryview) -> npt.NDArray[np.float32]:
    """Samples as an `(frames, channels)` float32 array on the int16 scale (full scale = 32768)."""
    n = fmt.frames * fmt.channels
    x: npt.NDArray[np.float32]
    if fmt.format_tag == _IEEE_FLOAT:
        dtype = "<f4" if fmt.bits == 32 else "<f8"
        floats = np.frombuffer(raw, dtype=dtype, count=n)
        x = np.nan_to_num(floats.astype(np.float32), nan=0.0, posinf=1.0, neginf=-1.0)
        x *= np.float32(32768.0)
    elif fmt.bits == 24:
        b = np.frombuffer(raw, dtype=np.uint8, count=3 * n).reshape(n, 3)
        wide = np.zeros((n, 4), dtype=np.uint8)
        wide[:, 1:] = b  # little-endian: the 24-bit value lands in the top three bytes of an int32
        x = wide.view("<i4").reshape(n).astype(np.float32) / np.float32(65536.0)
    elif fmt.bits == 32:
        x = np.frombuffer(raw, dtype="<i4", count=n).astype(np.float32) / np.float32(65536.0)
    else:
        x = _as_int16(fmt, raw).astype(np.float32)
    return x.reshape(fmt.frames, fmt.channels)


def _as_int16(fmt: WavFormat, raw: memoryview) -> npt.NDArray[np.int16]:
    """Interleaved samples of the 8- and 16-bit formats, exactly, as a new int16 array."""
    n = fmt.frames * fmt.channels
    if fmt.format_tag == _ALAW:
        return alaw_decode(np.frombuffer(raw, dtype=np.uint8, count=n))
    if fmt.format_tag == _MULAW:
        return ulaw_decode(np.frombuffer(raw, dtype=np.uint8, count=n))
    if fmt.bits == 8:  # unsigned, 128 = silence
        shifted: npt.NDArray[np.int16] = (np.frombuffer(raw, dtype=np.uint8, count=n).astype(np.int16) - 128) << 8
        return shifted
    return np.frombuffer(raw, dtype="<i2", count=n).astype(np.int16)


def _round_int16(x: npt.NDArray[np.float32]) -> npt.NDArray[np.int16]:
    np.rint(x, out=x)
    np.clip(x, -32768, 32767, out=x)
    return x.astype(np.int16)


def decode_wav(data: bytes | bytearray | memoryview, *, max_seconds: float | None = None) -> npt.NDArray[np.int16]:
    """Decode a WAV file to 16 kHz mono int16 (a new, read-only array).

    Channels are averaged; other rates in 8000..48000 Hz are resampled. 16 kHz mono 8/16-bit/G.711 input
    never touches floating point. Raises `PromptError(NOT_WAV)` for anything it cannot decode and
    `PromptError(TOO_LONG)` when the audio lasts more than `max_seconds` (checked from the header first).
    """
    fmt = read_format(data)
    if max_seconds is not None and fmt.seconds > max_seconds:
        raise PromptError(
            PromptFailure.TOO_LONG, f"audio lasts {fmt.seconds:.1f} s, longer than the limit of {max_seconds:g} s"
        )
    raw = memoryview(data).cast("B")[fmt.data_offset : fmt.data_offset + fmt.data_bytes]
    mono: npt.NDArray[np.int16]
    if fmt.channels == 1 and fmt.bits <= 16 and fmt.format_tag != _IEEE_FLOAT:
        mono = _as_int16(fmt, raw)
    else:
        samples = _channels_as_float(fmt, raw)
        mixed = samples[:, 0].copy() if fmt.channels == 1 else samples.mean(axis=1, dtype=np.float32)
        mono = _round_int16(mixed)
    if fmt.rate != SAMPLE_RATE:
        mono = resample(mono, fmt.rate, SAMPLE_RATE)
    mono.flags.writeable = False
    return mono


def encode_wav(samples: npt.NDArray[np.int16], rate: int = SAMPLE_RATE) -> bytes:
    """A canonical 44-byte-header WAV file: 16-bit PCM, mono, at `rate` Hz."""
    if samples.dtype != np.int16 or samples.ndim != 1:
        raise TypeError("expected a 1-D int16 signal")
    if rate <= 0:
        raise ValueError("sample rate must be positive")
    body = samples.astype("<i2", copy=False).tobytes()
    if len(body) > 0xFFFFFFFF - 36:
        raise ValueError("too many samples for a RIFF file")
    header = _HEADER.pack(
        b"RIFF", 36 + len(body), b"WAVE", b"fmt ", 16, _PCM, 1, rate, 2 * rate, 2, 16, b"data", len(body)
    )
    return header + body
