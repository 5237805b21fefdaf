"""G711Rows (compiled with Cython, or the numpy reference on the pure pass): the same codes and samples as the
TELEPHONY filter applied by FrameConverter plus media.g711, up to the rounding of float sums; rows independent."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from opencomms.media.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from opencomms.media.resample import STREAMING, TELEPHONY
from opencomms.rtp.g711rows import FRAME, G711Rows
from opencomms.rtp.transcode import FrameConverter, halfband_plan

RNG = np.random.default_rng(11)


def codes_of(pcm: npt.NDArray[np.int16], alaw: npt.NDArray[np.bool_]) -> npt.NDArray[np.uint8]:
    codes = ulaw_encode(pcm)
    codes[alaw] = alaw_encode(pcm[alaw])
    return codes


def samples_of(codes: npt.NDArray[np.uint8], alaw: npt.NDArray[np.bool_]) -> npt.NDArray[np.int16]:
    pcm = ulaw_decode(codes)
    pcm[alaw] = alaw_decode(codes[alaw])
    return pcm


def test_the_telephony_filter_is_half_band_and_its_plans_are_exact() -> None:
    down, up = halfband_plan(16000, 8000, TELEPHONY), halfband_plan(8000, 16000, TELEPHONY)
    assert down.down and not up.down and down.taps.size == up.taps.size == 24
    assert down.centre == pytest.approx(0.5, abs=1e-3) and up.centre == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ValueError):
        halfband_plan(16000, 8000, STREAMING)  # 70 dB to 4.4 kHz: not symmetric about 4 kHz


def test_encode_gives_the_reference_codes_into_a_packet_buffer() -> None:
    rows, n = 40, 30
    g711 = G711Rows(n)
    ref = FrameConverter(n, 16000, 8000, spec=TELEPHONY)
    erow = RNG.permutation(rows)[:n].astype(np.intp)
    alaw = RNG.random(n) < 0.3
    packets = np.zeros((n, 12 + FRAME), dtype=np.uint8)
    for tick in range(12):
        inp = RNG.integers(-30000, 30000, size=(rows, 320)).astype(np.int32)
        inp[erow[0]] = 0 if tick % 2 else 32767  # full scale and silence: the clip and the zero code
        live = RNG.random(n) < 0.9
        g711.encode(inp, erow, live, alaw, packets[:, 12:])
        y = ref.process(np.where(live[:, None], inp[erow], 0).astype(np.int16)).astype(np.int32)
        near = [codes_of(np.clip(y + d, -32768, 32767).astype(np.int16), alaw) for d in (-1, 0, 1)]
        got = packets[:, 12:]
        assert ((got == near[0]) | (got == near[1]) | (got == near[2])).all()  # +-1 LSB before coding
        assert (got == near[1]).mean() > 0.99
        assert not packets[:, :12].any()  # the RTP headers' bytes are not touched


def test_decode_gives_the_reference_frames_with_concealment_and_silence() -> None:
    n = 25
    g711 = G711Rows(n)
    ref = FrameConverter(n, 8000, 16000, spec=TELEPHONY)
    alaw = RNG.random(n) < 0.4
    last = np.zeros((n, FRAME), dtype=np.int16)
    out = np.zeros((n, 320), dtype=np.int16)
    for _tick in range(12):
        codes = RNG.integers(0, 256, size=(n, FRAME)).astype(np.uint8)
        state = RNG.choice(np.array([0, 1, 2], dtype=np.uint8), size=n, p=[0.1, 0.7, 0.2])
        fade = RNG.choice(np.array([1.0, 0.5, 0.25]), size=n)
        g711.decode(codes, state, fade, alaw, out)
        pcm8 = samples_of(codes, alaw)
        pcm8[state == 0] = 0
        pcm8[state == 2] = (last[state == 2] * fade[state == 2, None]).astype(np.int16)
        last[state == 1] = pcm8[state == 1]
        want = ref.process(pcm8)
        assert np.abs(out.astype(np.int32) - want).max() <= 1


def test_reset_forgets_one_rows_history_and_last_frame() -> None:
    g711 = G711Rows(3)
    loud = np.full((3, FRAME), ulaw_encode(np.array([20000], dtype=np.int16))[0], dtype=np.uint8)
    out = np.zeros((3, 320), dtype=np.int16)
    no_alaw = np.zeros(3, dtype=np.bool_)
    g711.decode(loud, np.ones(3, dtype=np.uint8), np.ones(3), no_alaw, out)
    g711.reset(1)
    g711.decode(loud, np.full(3, 2, dtype=np.uint8), np.ones(3), no_alaw, out)  # conceal: the last frame again
    assert np.abs(out[1]).max() == 0 and out[0].min() > 15000 and out[2].min() > 15000


@pytest.mark.parametrize(("freq", "passes"), [(1000.0, True), (3000.0, True), (6000.0, False)])
def test_a_tone_keeps_its_level_through_both_ways_and_the_alias_band_is_removed(freq: float, passes: bool) -> None:
    g711 = G711Rows(1)
    t = np.arange(320 * 50) / 16000
    x = (10000 * np.sin(2 * np.pi * freq * t)).astype(np.int32).reshape(-1, 1, 320)
    packets = np.zeros((1, FRAME), dtype=np.uint8)
    no = np.zeros(1, dtype=np.bool_)
    heard = np.zeros((1, 320), dtype=np.int16)
    back = []
    for frame in x:
        g711.encode(frame, np.zeros(1, dtype=np.intp), np.ones(1, dtype=np.bool_), no, packets)
        g711.decode(packets, np.ones(1, dtype=np.uint8), np.ones(1), no, heard)
        back.append(heard[0].copy())
    rms = float(np.sqrt(np.mean(np.concatenate(back)[800:].astype(float) ** 2)))
    if passes:
        assert rms == pytest.approx(10000 / np.sqrt(2), rel=0.03)
    else:
        assert rms < 15  # about -53 dB: the filter's -60 dB under G.711's own noise
