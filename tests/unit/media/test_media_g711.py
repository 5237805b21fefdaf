"""G.711: exhaustive comparison with a scalar transliteration of the ITU-T G.191 reference code."""

from __future__ import annotations

import numpy as np
import pytest

from opencomms.media import g711


def ref_ulaw_compress(x: int) -> int:
    """ITU-T G.191 STL g711.c ulaw_compress, one 16-bit sample."""
    absno = ((~x) >> 2) + 33 if x < 0 else (x >> 2) + 33
    absno = min(absno, 0x1FFF)
    i = absno >> 6
    segno = 1
    while i != 0:
        segno += 1
        i >>= 1
    high_nibble = 0x0008 - segno
    low_nibble = 0x000F - ((absno >> segno) & 0x000F)
    out = (high_nibble << 4) | low_nibble
    if x >= 0:
        out |= 0x0080
    return out


def ref_ulaw_expand(code: int) -> int:
    """ITU-T G.191 STL g711.c ulaw_expand, one code."""
    sign = -1 if code < 0x80 else 1
    mantissa = ~code
    exponent = (mantissa >> 4) & 0x0007
    segment = exponent + 1
    mantissa &= 0x000F
    step = 4 << segment
    return sign * ((0x0080 << exponent) + step * mantissa + step // 2 - 4 * 33)


def ref_alaw_compress(x: int) -> int:
    """ITU-T G.191 STL g711.c alaw_compress, one 16-bit sample."""
    ix = (~x) >> 4 if x < 0 else x >> 4
    if ix > 15:
        iexp = 1
        while ix > 16 + 15:
            ix >>= 1
            iexp += 1
        ix -= 16
        ix += iexp << 4
    if x >= 0:
        ix |= 0x0080
    return ix ^ 0x0055


def ref_alaw_expand(code: int) -> int:
    """ITU-T G.191 STL g711.c alaw_expand, one code."""
    ix = (code ^ 0x0055) & 0x007F
    iexp = ix >> 4
    mant = ix & 0x000F
    if iexp > 0:
        mant += 16
    mant = (mant << 4) + 0x0008
    if iexp > 1:
        mant <<= iexp - 1
    return mant if code > 127 else -mant


ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int64).astype(np.int16)
ALL_CODES = np.arange(256, dtype=np.uint8)


def test_ulaw_encode_matches_reference_for_every_sample() -> None:
    expected = np.array([ref_ulaw_compress(int(x)) for x in ALL_SAMPLES], dtype=np.uint8)
    np.testing.assert_array_equal(g711.ulaw_encode(ALL_SAMPLES), expected)


def test_alaw_encode_matches_reference_for_every_sample() -> None:
    expected = np.array([ref_alaw_compress(int(x)) for x in ALL_SAMPLES], dtype=np.uint8)
    np.testing.assert_array_equal(g711.alaw_encode(ALL_SAMPLES), expected)


def test_decoders_match_reference_for_every_code() -> None:
    np.testing.assert_array_equal(g711.ulaw_decode(ALL_CODES), [ref_ulaw_expand(int(c)) for c in ALL_CODES])
    np.testing.assert_array_equal(g711.alaw_decode(ALL_CODES), [ref_alaw_expand(int(c)) for c in ALL_CODES])


@pytest.mark.parametrize(
    ("decode", "code", "value"),
    [
        (g711.ulaw_decode, 0xFF, 0),
        (g711.ulaw_decode, 0x7F, 0),
        (g711.ulaw_decode, 0x80, 32124),
        (g711.ulaw_decode, 0x00, -32124),
        (g711.alaw_decode, 0xD5, 8),
        (g711.alaw_decode, 0x55, -8),
        (g711.alaw_decode, 0xAA, 32256),
        (g711.alaw_decode, 0x2A, -32256),
    ],
)
def test_known_codes(decode: object, code: int, value: int) -> None:
    assert callable(decode)
    assert int(decode(bytes([code]))[0]) == value


def test_silence_encodes_to_the_silence_codes() -> None:
    zeros = np.zeros(160, dtype=np.int16)
    assert set(g711.ulaw_encode(zeros).tolist()) == {g711.ULAW_SILENCE}
    assert set(g711.alaw_encode(zeros).tolist()) == {g711.ALAW_SILENCE}


def test_decode_then_encode_is_identity_except_negative_zero() -> None:
    ulaw = g711.ulaw_encode(g711.ulaw_decode(ALL_CODES))
    differs = np.flatnonzero(ulaw != ALL_CODES)
    assert differs.tolist() == [0x7F]  # -0 decodes to 0, which encodes as +0 (0xFF)
    np.testing.assert_array_equal(g711.alaw_encode(g711.alaw_decode(ALL_CODES)), ALL_CODES)


def test_quantisation_error_stays_within_half_a_step() -> None:
    for encode, decode in ((g711.ulaw_encode, g711.ulaw_decode), (g711.alaw_encode, g711.alaw_decode)):
        x = ALL_SAMPLES[np.abs(ALL_SAMPLES.astype(np.int32)) < 32000]
        y = decode(encode(x)).astype(np.int32)
        err = np.abs(y - x)
        # Relative error of a logarithmic quantiser: at most ~1/32 of the value above the linear segment.
        assert np.all(err <= np.maximum(16, np.abs(x.astype(np.int32)) // 16))


def test_batched_shapes_and_transcoding() -> None:
    rng = np.random.default_rng(7)
    frames = rng.integers(-32768, 32768, size=(5, 160)).astype(np.int16)
    u = g711.ulaw_encode(frames)
    assert u.shape == (5, 160) and u.dtype == np.uint8
    np.testing.assert_array_equal(g711.ulaw_to_alaw(u), g711.alaw_encode(g711.ulaw_decode(u)))
    a = g711.alaw_encode(frames)
    np.testing.assert_array_equal(g711.alaw_to_ulaw(a), g711.ulaw_encode(g711.alaw_decode(a)))
    np.testing.assert_array_equal(g711.ulaw_decode(u[0].tobytes()), g711.ulaw_decode(u[0]))


def test_wrong_dtypes_are_rejected() -> None:
    with pytest.raises(TypeError):
        g711.ulaw_encode(np.zeros(4, dtype=np.int32))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        g711.alaw_decode(np.zeros(4, dtype=np.int16))  # type: ignore[arg-type]
