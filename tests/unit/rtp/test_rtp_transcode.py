"""Batched 16k <-> 8k frame conversion: identical to the streaming Resampler, rows independent, reset per row."""

from __future__ import annotations

import numpy as np
import pytest

from opencomms.media.resample import Resampler
from opencomms.rtp.transcode import FrameConverter


@pytest.mark.parametrize(("src", "dst"), [(16000, 8000), (8000, 16000)])
def test_matches_the_streaming_resampler(src: int, dst: int) -> None:
    rng = np.random.default_rng(5)
    conv = FrameConverter(4, src, dst)
    refs = [Resampler(src, dst) for _ in range(3)]
    signals = rng.integers(-12000, 12000, size=(3, conv.frame_in * 30)).astype(np.int16)
    for k in range(30):
        frames = signals[:, k * conv.frame_in : (k + 1) * conv.frame_in]
        out = conv.process(np.ascontiguousarray(frames))
        assert out.shape == (3, conv.frame_out)
        for row in range(3):
            ref = refs[row].process(frames[row]).astype(np.int32)
            assert np.abs(out[row].astype(np.int32) - ref).max() <= 1  # float32 summation order: +-1 LSB
    assert conv.delay == refs[0].delay


def test_reset_clears_one_row_only_and_prefix_processing() -> None:
    conv = FrameConverter(3, 8000, 16000)
    loud = np.full((3, 160), 10000, dtype=np.int16)
    conv.process(loud)
    conv.reset(1)
    out = conv.process(np.zeros((3, 160), dtype=np.int16))
    assert np.abs(out[1]).max() == 0 and np.abs(out[0]).max() > 1000 and np.abs(out[2]).max() > 1000
    assert conv.process(np.zeros((2, 160), dtype=np.int16)).shape == (2, 320)  # the prefix only
    with pytest.raises(ValueError):
        conv.process(np.zeros((4, 160), dtype=np.int16))
    with pytest.raises(ValueError):
        conv.process(np.zeros((2, 161), dtype=np.int16))
    with pytest.raises(ValueError):
        FrameConverter(2, 16000, 8000, block=7)


def test_tone_passes_and_alias_band_is_removed() -> None:
    down = FrameConverter(1, 16000, 8000)
    t = np.arange(320 * 40) / 16000
    for freq, expect_pass in ((1000.0, True), (6000.0, False)):
        x = (10000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)
        y = np.concatenate([down.process(x[None, k * 320 : (k + 1) * 320].copy())[0].copy() for k in range(40)])
        rms = float(np.sqrt(np.mean(y[400:].astype(float) ** 2)))
        if expect_pass:
            assert rms == pytest.approx(10000 / np.sqrt(2), rel=0.02)
        else:
            assert rms < 10  # -60 dB and more
