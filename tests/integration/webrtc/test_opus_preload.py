"""The node's spawned rtpengine runs with the Opus tuning library preloaded and the `webrtc.opus_*` settings in its
environment (Debian 12's rtpengine 10.5 has no Opus encoder options of its own); without tuning it runs as it is."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from opencomms.gateway.opus_tuning import OpusTuning
from opencomms.gateway.rtpengine_daemon import RtpEngineDaemon, RtpEngineSettings
from tests.ports import free_port

pytestmark = pytest.mark.skipif(shutil.which("rtpengine") is None or shutil.which("cc") is None, reason="rtpengine, cc")


@pytest.mark.parametrize("tuning", [OpusTuning(complexity=4, max_bandwidth="wideband", mono=True), None])
async def test_spawned_rtpengine_loads_the_opus_tuning(tuning: OpusTuning | None) -> None:
    base = random.randrange(41000, 59000, 200)
    settings = RtpEngineSettings(ng_port=free_port(), port_min=base, port_max=base + 99, num_threads=1, opus=tuning)
    async with RtpEngineDaemon(settings) as daemon:
        assert daemon.process is not None
        proc = Path(f"/proc/{daemon.process.pid}")
        maps = (proc / "maps").read_text()
        environ = (proc / "environ").read_bytes().split(b"\0")
    if tuning is None:
        assert "opus_tuning.so" not in maps and b"OPENCOMMS_OPUS_COMPLEXITY=4" not in environ
    else:
        assert "opus_tuning.so" in maps
        assert b"OPENCOMMS_OPUS_COMPLEXITY=4" in environ and b"OPENCOMMS_OPUS_MAX_BANDWIDTH=1103" in environ
