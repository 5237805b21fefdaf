"""WAV decoding: every supported encoding, chunk walking, streamed headers, limits and precise errors."""

from __future__ import annotations

import struct
import subprocess
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from media_signals import espeak_available

from opencomms.domain.media import PromptError, PromptFailure
from opencomms.media import wav as wav_module
from opencomms.media.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from opencomms.media.resample import resample
from opencomms.media.wav import decode_wav, encode_wav, read_format

EXT_GUID_SUFFIX = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


def chunk(chunk_id: bytes, body: bytes, size: int | None = None) -> bytes:
    """A RIFF chunk, padded to an even length; `size` overrides the size field."""
    pad = b"\x00" if len(body) % 2 else b""
    return chunk_id + struct.pack("<I", len(body) if size is None else size) + body + pad


def fmt_body(tag: int, channels: int, rate: int, bits: int, *, extensible: bool = False) -> bytes:
    block = channels * bits // 8
    if not extensible:
        return struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    base = struct.pack("<HHIIHH", 0xFFFE, channels, rate, rate * block, block, bits)
    return base + struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", tag) + EXT_GUID_SUFFIX


def riff(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def make_wav(tag: int, channels: int, rate: int, bits: int, data: bytes, *, extensible: bool = False) -> bytes:
    return riff(chunk(b"fmt ", fmt_body(tag, channels, rate, bits, extensible=extensible)), chunk(b"data", data))


def sine(freq: float, seconds: float, rate: int, dbfs: float = -6.0) -> npt.NDArray[np.int16]:
    t = np.arange(int(seconds * rate)) / rate
    return np.rint(32767 * 10 ** (dbfs / 20) * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def peak_hz(x: npt.NDArray[np.int16], rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / rate)[int(np.argmax(spectrum))])


def not_wav(data: bytes, match: str) -> None:
    with pytest.raises(PromptError, match=match) as info:
        decode_wav(data)
    assert info.value.failure is PromptFailure.NOT_WAV


# -- round trip and the fast path --------------------------------------------------------------------------


def test_encode_writes_a_canonical_header_and_decode_round_trips_exactly() -> None:
    x = np.random.default_rng(1).integers(-32768, 32767, 16000, dtype=np.int16)
    data = encode_wav(x)
    assert len(data) == 44 + 2 * x.size
    assert data[:4] == b"RIFF" and data[8:16] == b"WAVEfmt " and data[36:40] == b"data"
    assert struct.unpack("<IHHIIHH", data[16:36]) == (16, 1, 1, 16000, 32000, 2, 16)
    assert struct.unpack("<I", data[4:8])[0] == len(data) - 8
    assert struct.unpack("<I", data[40:44])[0] == 2 * x.size
    y = decode_wav(data)
    assert y.dtype == np.int16 and y.ndim == 1
    assert not y.flags.writeable
    np.testing.assert_array_equal(y, x)


def test_encode_at_another_rate_and_rejects_wrong_input() -> None:
    fmt = read_format(encode_wav(np.zeros(80, np.int16), rate=8000))
    assert (fmt.rate, fmt.channels, fmt.bits, fmt.frames) == (8000, 1, 16, 80)
    with pytest.raises(TypeError):
        encode_wav(np.zeros(10, np.float32))  # type: ignore[arg-type,unused-ignore]
    with pytest.raises(TypeError):
        encode_wav(np.zeros((2, 10), np.int16))


def test_sixty_seconds_of_16k_mono_decode_fast_without_resampling(monkeypatch: pytest.MonkeyPatch) -> None:
    x = sine(440, 60, 16000)
    data = encode_wav(x)

    def no_resampling(*_args: object, **_kw: object) -> None:
        raise AssertionError("16 kHz input must not be resampled")

    monkeypatch.setattr(wav_module, "resample", no_resampling)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        y = decode_wav(data, max_seconds=300)
        best = min(best, time.perf_counter() - start)
    np.testing.assert_array_equal(y, x)
    assert best < 0.010


# -- encodings --------------------------------------------------------------------------------------------


def test_pcm_8bit_is_unsigned_with_128_as_zero() -> None:
    y = decode_wav(make_wav(1, 1, 16000, 8, bytes([0, 64, 128, 192, 255])))
    np.testing.assert_array_equal(y, [-32768, -16384, 0, 16384, 32512])


def test_pcm_24bit_keeps_the_top_16_bits_rounded_and_saturated() -> None:
    values = [0x7FFFFF, 0x800000, 0x000100, 0xFFFF00, 0x000080, 0x000000]  # 24-bit two's complement
    data = b"".join(v.to_bytes(3, "little") for v in values)
    y = decode_wav(make_wav(1, 1, 16000, 24, data))
    np.testing.assert_array_equal(y, [32767, -32768, 1, -1, 0, 0])  # 0x80/256 = 0.5 rounds to even


def test_pcm_32bit() -> None:
    data = np.array([2**31 - 1, -(2**31), 65536 * 1000, -65536 * 7], dtype="<i4").tobytes()
    y = decode_wav(make_wav(1, 1, 16000, 32, data))
    np.testing.assert_array_equal(y, [32767, -32768, 1000, -7])


@pytest.mark.parametrize(("bits", "dtype"), [(32, "<f4"), (64, "<f8")])
def test_ieee_float_scales_clips_and_silences_nan(bits: int, dtype: str) -> None:
    data = np.array([0.5, -0.5, 1.0, -1.0, 1.5, -3.0, np.nan, np.inf, 0.0], dtype=dtype).tobytes()
    y = decode_wav(make_wav(3, 1, 16000, bits, data))
    np.testing.assert_array_equal(y, [16384, -16384, 32767, -32768, 32767, -32768, 0, 32767, 0])


@pytest.mark.parametrize(
    ("tag", "encode", "decode"), [(6, alaw_encode, alaw_decode), (7, ulaw_encode, ulaw_decode)], ids=["alaw", "ulaw"]
)
def test_g711_decodes_with_the_g711_tables(
    tag: int,
    encode: Callable[[npt.NDArray[np.int16]], npt.NDArray[np.uint8]],
    decode: Callable[..., npt.NDArray[np.int16]],
) -> None:
    x = sine(440, 0.1, 16000)
    codes = encode(x)
    y = decode_wav(make_wav(tag, 1, 16000, 8, codes.tobytes()))
    np.testing.assert_array_equal(y, decode(codes))
    at_8k = decode_wav(make_wav(tag, 1, 8000, 8, encode(sine(440, 0.1, 8000)).tobytes()))
    assert at_8k.size == 1600
    assert abs(peak_hz(at_8k) - 440) < 15


@pytest.mark.parametrize(
    ("tag", "bits", "payload"),
    [
        (1, 16, np.array([1000, -2000, 3000, -4000], "<i2").tobytes()),
        (1, 24, b"".join((v << 8 & 0xFFFFFF).to_bytes(3, "little") for v in (1000, -2000 & 0xFFFF, 3000, 4000))),
        (3, 32, np.array([0.25, -0.25, 0.5, 0.0], "<f4").tobytes()),
    ],
    ids=["pcm16", "pcm24", "float32"],
)
def test_wave_format_extensible_with_a_classic_subformat(tag: int, bits: int, payload: bytes) -> None:
    plain = decode_wav(make_wav(tag, 2, 16000, bits, payload))
    extensible = decode_wav(make_wav(tag, 2, 16000, bits, payload, extensible=True))
    np.testing.assert_array_equal(extensible, plain)
    assert plain.size == 2


def test_extensible_with_an_unknown_subformat_guid_or_tag_is_refused() -> None:
    body = bytearray(fmt_body(1, 1, 16000, 16, extensible=True))
    body[24:40] = bytes(range(16))
    not_wav(riff(chunk(b"fmt ", bytes(body)), chunk(b"data", b"\x00\x00")), "subformat")
    odd = fmt_body(2, 1, 16000, 16, extensible=True)  # MS ADPCM inside EXTENSIBLE
    not_wav(riff(chunk(b"fmt ", odd), chunk(b"data", b"\x00\x00")), "subformat tag 2")


# -- channels and rates -----------------------------------------------------------------------------------


def test_channels_are_averaged_to_mono() -> None:
    stereo = np.array([[1000, 3000], [32767, 32767], [-32768, -32768], [100, -100], [1, 2]], "<i2")
    np.testing.assert_array_equal(decode_wav(make_wav(1, 2, 16000, 16, stereo.tobytes())), [2000, 32767, -32768, 0, 2])
    six = np.tile(np.arange(6, dtype="<i2") * 100, (3, 1))  # 0,100,...,500 -> mean 250
    np.testing.assert_array_equal(decode_wav(make_wav(1, 6, 16000, 16, six.tobytes())), [250, 250, 250])


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 24000, 32000, 44100, 48000])
def test_other_rates_are_resampled_to_16k(rate: int) -> None:
    x = sine(1000, 0.5, rate)
    y = decode_wav(encode_wav(x, rate))
    assert y.size == -(-x.size * 16000 // rate)
    assert abs(peak_hz(y) - 1000) < 10
    np.testing.assert_array_equal(y, resample(x, rate, 16000))


def test_stereo_at_another_rate_mixes_then_resamples() -> None:
    left, right = sine(1000, 0.2, 8000), np.zeros(1600, np.int16)
    y = decode_wav(make_wav(1, 2, 8000, 16, np.stack([left, right], axis=1).astype("<i2").tobytes()))
    expected = resample(np.rint(left / 2).astype(np.int16), 8000, 16000)
    np.testing.assert_array_equal(y, expected)


# -- chunk walking and streamed files ---------------------------------------------------------------------


def test_chunks_are_walked_with_odd_size_padding_and_any_order() -> None:
    samples = np.array([1, -2, 3], "<i2").tobytes()
    fmt = chunk(b"fmt ", fmt_body(1, 1, 16000, 16))
    data = riff(chunk(b"LIST", b"INFOabc"), chunk(b"junk", b"x"), fmt, chunk(b"data", samples), chunk(b"id3 ", b"1"))
    np.testing.assert_array_equal(decode_wav(data), [1, -2, 3])
    fmt_last = riff(chunk(b"data", samples), chunk(b"odd ", b"12345"), fmt)
    np.testing.assert_array_equal(decode_wav(fmt_last), [1, -2, 3])
    # An 18-byte fmt (cbSize = 0), as many writers emit for PCM.
    fmt18 = riff(chunk(b"fmt ", fmt_body(1, 1, 16000, 16) + b"\x00\x00"), chunk(b"data", samples))
    np.testing.assert_array_equal(decode_wav(fmt18), [1, -2, 3])


@pytest.mark.parametrize("size", [0, 0xFFFFFFFF, 0x7FFFF000, 1000])
def test_streamed_data_size_takes_the_rest_of_the_file(size: int) -> None:
    samples = np.arange(-5, 5, dtype="<i2").tobytes()
    head = riff(chunk(b"fmt ", fmt_body(1, 1, 16000, 16)))
    data = head + b"data" + struct.pack("<I", size) + samples + b"\x07"  # trailing partial sample is dropped
    np.testing.assert_array_equal(decode_wav(data), np.arange(-5, 5))


def test_partial_trailing_frame_is_dropped() -> None:
    stereo = np.array([10, 20, 30, 40], "<i2").tobytes() + b"\x01\x00"  # two frames and half of a third
    data = riff(chunk(b"fmt ", fmt_body(1, 2, 16000, 16)), chunk(b"data", stereo))
    np.testing.assert_array_equal(decode_wav(data), [15, 35])


@pytest.mark.skipif(not espeak_available(), reason="espeak-ng not installed")
def test_espeak_ng_streamed_output_decodes() -> None:
    raw = subprocess.run(["espeak-ng", "--stdout", "one"], capture_output=True, check=True, timeout=30).stdout
    fmt = read_format(raw)
    assert fmt.rate == 22050 and fmt.channels == 1
    assert int.from_bytes(raw[40:44], "little") > len(raw)  # the size field lies
    pcm = np.frombuffer(raw[44 : 44 + (len(raw) - 44) // 2 * 2], "<i2").astype(np.int16)
    np.testing.assert_array_equal(decode_wav(raw), resample(pcm, 22050, 16000))


# -- errors -----------------------------------------------------------------------------------------------


def test_precise_not_wav_errors() -> None:
    fmt = chunk(b"fmt ", fmt_body(1, 1, 16000, 16))
    two = chunk(b"data", b"\x00\x00")
    not_wav(b"", "too short")
    not_wav(b"ID3\x03" + bytes(100), "not a RIFF file")
    not_wav(b"RF64" + bytes(100), "RF64")
    not_wav(b"RIFF\x00\x00\x00\x00AVI " + bytes(20), "not 'WAVE'")
    not_wav(riff(two), "no fmt chunk")
    not_wav(riff(fmt), "no data chunk")
    not_wav(riff(chunk(b"fmt ", fmt_body(2, 1, 16000, 4)), two), "unsupported format tag 2")
    not_wav(riff(chunk(b"fmt ", fmt_body(0x55, 1, 16000, 0)), two), "unsupported format tag 85")
    not_wav(riff(chunk(b"fmt ", fmt_body(1, 0, 16000, 16)), two), "zero channels")
    not_wav(riff(chunk(b"fmt ", fmt_body(1, 1, 96000, 16)), two), "sample rate 96000")
    not_wav(riff(chunk(b"fmt ", fmt_body(1, 1, 4000, 16)), two), "sample rate 4000")
    not_wav(riff(chunk(b"fmt ", fmt_body(1, 1, 16000, 12)), two), "PCM sample size of 12 bits")
    not_wav(riff(chunk(b"fmt ", fmt_body(3, 1, 16000, 16)), two), "IEEE float sample size of 16 bits")
    not_wav(riff(chunk(b"fmt ", fmt_body(6, 1, 16000, 16)), two), "A-law sample size of 16 bits")
    not_wav(riff(chunk(b"fmt ", b"\x01\x00\x01\x00")), "fmt chunk too short")
    not_wav(riff(chunk(b"fmt ", fmt_body(1, 1, 16000, 16)[:16], size=100)), "fmt chunk claims 100 bytes")
    not_wav(riff(fmt, chunk(b"data", b"")), "no samples")
    not_wav(riff(fmt, chunk(b"data", b"\x01")), "no samples")
    ext = fmt_body(1, 1, 16000, 16, extensible=True)[:30]
    not_wav(riff(chunk(b"fmt ", ext), two), "EXTENSIBLE fmt chunk too short")


def test_too_long_is_decided_from_the_header_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode_wav(np.zeros(10 * 8000, np.int16), 8000)

    def no_work(*_args: object, **_kw: object) -> None:
        raise AssertionError("nothing may be decoded or resampled for a file that is too long")

    monkeypatch.setattr(wav_module, "resample", no_work)
    monkeypatch.setattr(wav_module, "_as_int16", no_work)
    with pytest.raises(PromptError, match=r"10\.0 s, longer than the limit of 5 s") as info:
        decode_wav(data, max_seconds=5)
    assert info.value.failure is PromptFailure.TOO_LONG


def test_too_long_uses_the_bytes_present_not_a_lying_size_field() -> None:
    samples = np.zeros(16000, "<i2").tobytes()  # 1 s present, size field claims ~2**31 bytes
    data = riff(chunk(b"fmt ", fmt_body(1, 1, 16000, 16))) + b"data" + struct.pack("<I", 0x7FFFF000) + samples
    assert decode_wav(data, max_seconds=1.0).size == 16000
    with pytest.raises(PromptError) as info:
        decode_wav(data, max_seconds=0.5)
    assert info.value.failure is PromptFailure.TOO_LONG
