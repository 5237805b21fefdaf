"""Frame constants and helpers."""

from __future__ import annotations

import numpy as np
import pytest

from opencomms.media import frames as fr


def test_constants() -> None:
    assert (fr.SAMPLE_RATE, fr.FRAME_MS, fr.FRAME_SAMPLES, fr.FRAME_BYTES) == (16000, 20, 320, 640)
    assert fr.samples_per_frame(8000) == 160
    assert fr.samples_per_frame(48000) == 960
    with pytest.raises(fr.FrameError):
        fr.samples_per_frame(11025)


def test_silence_frame_is_fresh_zeros() -> None:
    a, b = fr.silence_frame(), fr.silence_frame()
    assert a.shape == (320,) and a.dtype == np.int16 and not a.any()
    a[0] = 1
    assert b[0] == 0


def test_bytes_round_trip_is_little_endian() -> None:
    frame = np.arange(-160, 160, dtype=np.int16)
    data = fr.frame_to_bytes(frame)
    assert len(data) == fr.FRAME_BYTES
    assert data[:2] == (-160).to_bytes(2, "little", signed=True)
    np.testing.assert_array_equal(fr.frame_from_bytes(data), frame)
    with pytest.raises(fr.FrameError):
        fr.frame_from_bytes(data[:-2])


def test_levels() -> None:
    t = np.arange(16000) / 16000
    full = np.rint(32767 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    assert fr.level_dbfs(full) == pytest.approx(0.0, abs=0.01)
    quiet = np.rint(32767 * 0.1 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    assert fr.level_dbfs(quiet) == pytest.approx(-20.0, abs=0.01)
    assert fr.level_dbfs(np.zeros(320, np.int16)) == fr.DBFS_FLOOR
    rows = np.stack([full[:320], quiet[:320], np.zeros(320, np.int16)])
    levels = fr.levels_dbfs(rows)
    assert levels.dtype == np.float32
    np.testing.assert_allclose(levels[:2], [fr.level_dbfs(full[:320]), fr.level_dbfs(quiet[:320])], atol=1e-3)
    assert levels[2] == fr.DBFS_FLOOR


def test_frames_from_signal_pads_the_tail() -> None:
    sig = np.arange(1, 701, dtype=np.int16)
    frames = fr.frames_from_signal(sig)
    assert frames.shape == (3, 320)
    np.testing.assert_array_equal(frames.ravel()[:700], sig)
    assert not frames.ravel()[700:].any()
    assert fr.frames_from_signal(np.zeros(0, np.int16)).shape == (0, 320)
    assert fr.frames_from_signal(sig, 160).shape == (5, 160)
