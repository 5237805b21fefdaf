"""The built-in hold music: a generated, audible, click-free loop shared by every listener."""

from __future__ import annotations

import numpy as np

from opencomms.media.hold_music import HOLD_MUSIC_SECONDS, SAMPLE_RATE, hold_music, loops_for


def test_the_loop_is_audible_not_clipped_shared_and_read_only() -> None:
    clip = hold_music()
    assert clip.dtype == np.int16 and clip.size == int(HOLD_MUSIC_SECONDS * SAMPLE_RATE)
    assert clip is hold_music() and not clip.flags.writeable
    level = float(np.sqrt(np.mean(clip.astype(np.float64) ** 2)))
    assert 1000 < level < 6000 and int(np.abs(clip).max()) < 32000
    for second in range(int(HOLD_MUSIC_SECONDS)):  # never a second of silence
        part = clip[second * SAMPLE_RATE : (second + 1) * SAMPLE_RATE].astype(np.float64)
        assert np.sqrt(np.mean(part**2)) > 300
    assert abs(int(clip[-1])) < 500 and abs(int(clip[0])) < 500  # loops without a click


def test_loops_cover_the_time_asked() -> None:
    assert loops_for(SAMPLE_RATE, 10.0) == 11
    assert loops_for(8 * SAMPLE_RATE, 3600.0) * 8 >= 3600
    assert loops_for(0, 5.0) == 1 and loops_for(SAMPLE_RATE, 0.0) == 1
