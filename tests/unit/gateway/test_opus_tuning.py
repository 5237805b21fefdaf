"""The Opus tuning toward browsers: the ng codec spec, the rtpengine config, the knobs' validation, and the preload
library itself (loaded into this process ahead of libopus, it must leave a libopus encoder with our settings when
ffmpeg sets complexity 10)."""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
from pathlib import Path

import pytest

from opencomms.config import WebRtcConfig
from opencomms.gateway.opus_tuning import OpusTuning, build_preload
from opencomms.gateway.rtpengine import webrtc_to_plain
from opencomms.gateway.rtpengine_daemon import RtpEngineSettings, render_config


def test_the_codec_spec_carries_bitrate_and_complexity_to_the_browsers_opus() -> None:
    assert OpusTuning(complexity=4, bitrate=24000).codec_spec() == "opus/48000/2/24000///compression_level=4"
    assert OpusTuning().codec_spec() == "opus/48000/2////compression_level=3"
    flags = webrtc_to_plain(("G722", "PCMU"), OpusTuning().codec_spec())
    assert flags["codec"]["set"] == ["opus/48000/2////compression_level=3"]
    assert flags["codec"]["accept"] == ["opus"] and "set" not in webrtc_to_plain()["codec"]


def test_threads_reach_the_config_only_when_asked() -> None:
    assert "num-threads = 1" in render_config(RtpEngineSettings(num_threads=1))
    assert "num-threads" not in render_config(RtpEngineSettings())


def test_fifo_scheduling_reaches_the_config_only_when_asked() -> None:
    text = render_config(RtpEngineSettings(realtime_priority=5))
    assert "scheduling = fifo" in text and "priority = 5" in text
    assert "scheduling" not in render_config(RtpEngineSettings())


@pytest.mark.parametrize(
    "bad",
    [
        {"opus_complexity": 11},
        {"opus_max_bandwidth": "ultra"},
        {"opus_bitrate": 100},
        {"rtpengine_threads": -1},
        {"rtpengine_latency_slice_ms": 0.01},
        {"rtpengine_realtime_priority": 100},
    ],
)
def test_bad_opus_settings_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="webrtc"):
        WebRtcConfig(**bad)  # type: ignore[arg-type]


@pytest.mark.skipif(shutil.which("cc") is None or not ctypes.util.find_library("opus"), reason="needs cc and libopus")
def test_the_preload_library_sets_our_complexity_bandwidth_and_channels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in OpusTuning(complexity=2, max_bandwidth="wideband", mono=True).environment().items():
        monkeypatch.setenv(key, value)
    lib = build_preload(tmp_path)
    assert lib is not None
    shim = ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)  # first, so that its RTLD_NEXT is libopus
    opus = ctypes.CDLL(ctypes.util.find_library("opus"), mode=ctypes.RTLD_GLOBAL)
    opus.opus_multistream_encoder_create.restype = ctypes.c_void_p
    err = ctypes.c_int()
    mapping = (ctypes.c_ubyte * 2)(0, 1)
    enc = opus.opus_multistream_encoder_create(48000, 2, 1, 1, mapping, 2049, ctypes.byref(err))
    assert err.value == 0 and enc
    try:
        assert shim.opus_multistream_encoder_ctl(ctypes.c_void_p(enc), 4010, ctypes.c_int(10)) == 0  # as ffmpeg does

        stream = ctypes.c_void_p()  # OPUS_MULTISTREAM_GET_ENCODER_STATE(0): the one (coupled) stream's encoder
        assert opus.opus_multistream_encoder_ctl(ctypes.c_void_p(enc), 5120, 0, ctypes.byref(stream)) == 0

        def get(request: int) -> int:
            out = ctypes.c_int32()
            assert opus.opus_encoder_ctl(stream, request, ctypes.byref(out)) == 0
            return out.value

        assert get(4011) == 2  # OPUS_GET_COMPLEXITY
        assert get(4005) == 1103  # OPUS_GET_MAX_BANDWIDTH: wideband
        assert get(4023) == 1  # OPUS_GET_FORCE_CHANNELS
        assert shim.opus_multistream_encoder_ctl(ctypes.c_void_p(enc), 4006, ctypes.c_int(0)) == 0  # passes on
        assert get(4007) == 0  # OPUS_GET_VBR
    finally:
        opus.opus_multistream_encoder_destroy(ctypes.c_void_p(enc))


@pytest.mark.skipif(shutil.which("cc") is None or not ctypes.util.find_library("opus"), reason="needs cc and libopus")
def test_the_preload_library_hands_out_libopus_own_48k_mode(tmp_path: Path) -> None:
    lib = build_preload(tmp_path)
    assert lib is not None
    shim = ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
    opus = ctypes.CDLL(ctypes.util.find_library("opus"), mode=ctypes.RTLD_GLOBAL)
    for f in (shim.opus_custom_mode_create, opus.opus_custom_mode_create):
        f.restype = ctypes.c_void_p
    err = ctypes.c_int(-9)
    real = opus.opus_custom_mode_create(48000, 960, ctypes.byref(err))
    assert real and err.value == 0
    for _ in range(2):  # the first call asks libopus, the next ones are remembered
        err.value = -9
        assert shim.opus_custom_mode_create(48000, 960, ctypes.byref(err)) == real and err.value == 0
