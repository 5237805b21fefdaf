"""DTMF tables, Graph tone names, RFC 4733 codes, tone synthesis and the frame sequencer."""

from __future__ import annotations

import numpy as np
import pytest

from opencomms.media.dtmf import (
    FLASH_KEY,
    KEYS,
    DtmfKeyError,
    ToneSequencer,
    detect_keys,
    event_code,
    generate_dtmf,
    key_for_event,
    key_frequencies,
)
from opencomms.media.dtmf.goertzel import goertzel_power
from opencomms.media.frames import level_dbfs


def test_keypad_frequencies() -> None:
    assert key_frequencies("1") == (697.0, 1209.0)
    assert key_frequencies("5") == (770.0, 1336.0)
    assert key_frequencies("9") == (852.0, 1477.0)
    assert key_frequencies("*") == (941.0, 1209.0)
    assert key_frequencies("0") == (941.0, 1336.0)
    assert key_frequencies("#") == (941.0, 1477.0)
    assert key_frequencies("a") == (697.0, 1633.0)
    assert key_frequencies("D") == (941.0, 1633.0)
    with pytest.raises(DtmfKeyError):
        key_frequencies(FLASH_KEY)
    with pytest.raises(DtmfKeyError):
        key_frequencies("E")


def test_event_codes() -> None:
    assert [event_code(k) for k in KEYS] == list(range(16))
    assert event_code(FLASH_KEY) == 16
    assert [key_for_event(c) for c in range(17)] == [*KEYS, FLASH_KEY]
    assert key_for_event(17) is None and key_for_event(255) is None


@pytest.mark.parametrize("key", list(KEYS))
def test_generated_tone_has_two_equal_components_at_the_right_frequencies(key: str) -> None:
    tone = generate_dtmf(key, 100)
    assert tone.dtype == np.int16 and tone.size == 1600
    f_row, f_col = key_frequencies(key)
    powers = {f: goertzel_power(tone, f, 16000) for f in (697, 770, 852, 941, 1209, 1336, 1477, 1633)}
    assert 10 * np.log10(powers[f_row] / powers[f_col]) == pytest.approx(0.0, abs=0.5)  # no twist
    others = [p for f, p in powers.items() if f not in (f_row, f_col)]
    assert max(others) < powers[f_row] / 100
    # Each tone at -10 dBFS: the pair reads -7 dBFS.
    assert level_dbfs(tone) == pytest.approx(-7.0, abs=0.1)


def test_generation_rate_and_level() -> None:
    tone = generate_dtmf("0", 50, level_dbfs=-20, rate=8000)
    assert tone.size == 400
    assert level_dbfs(tone) == pytest.approx(-17.0, abs=0.1)


def test_sequencer_emits_frames_with_tones_and_gaps() -> None:
    seq = ToneSequencer("12#", tone_ms=100, gap_ms=60)
    assert seq.total_frames == 24  # 3 x 160 ms = 480 ms
    frames = list(seq)
    assert len(frames) == 24 and seq.done
    signal = np.concatenate(frames)
    np.testing.assert_array_equal(signal[:1600], generate_dtmf("1", 100))
    assert not signal[1600:2560].any()
    np.testing.assert_array_equal(signal[2560:4160], generate_dtmf("2", 100))
    assert [e.key for e in detect_keys(signal)] == ["1", "2", "#"]
    assert not seq.next_frame().any()


def test_sequencer_handles_gaps_that_do_not_align_with_frames_and_flash() -> None:
    seq = ToneSequencer(["3", FLASH_KEY, "3"], tone_ms=70, gap_ms=45)
    signal = np.concatenate(list(seq))
    assert signal.size == seq.total_frames * 320
    assert [e.key for e in detect_keys(signal)] == ["3", "3"]
    starts = [e.start_time for e in detect_keys(signal)]
    assert starts[1] - starts[0] == pytest.approx(0.230, abs=0.004)
    with pytest.raises(DtmfKeyError):
        ToneSequencer("1x")
