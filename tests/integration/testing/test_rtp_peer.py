"""The virtual phone's media side on its own: two RtpPeers on loopback, each heard by a Listener.

Audio crosses G.711 and 8/16 kHz conversion intact, RFC 4733 keys and in-band tones are each recognised once,
speech and silence are found, and everything stops on close."""

from __future__ import annotations

import asyncio

import numpy as np

from opencomms.media.dtmf.tones import generate_dtmf
from opencomms.media.resample import resample
from opencomms.rtp.offer_answer import LocalSdp
from opencomms.testing import contains, speechlike
from opencomms.testing.listen import Listener
from opencomms.testing.rtp_peer import RtpPeer


async def test_two_peers_hear_each_others_audio_and_keys() -> None:
    ears = Listener()
    a = RtpPeer()
    b = RtpPeer(on_audio=ears.feed, on_key=ears.key_received)
    sdp_a, sdp_b = LocalSdp("127.0.0.1", await a.open()), LocalSdp("127.0.0.1", await b.open())
    reply = sdp_b.answer(sdp_a.offer())
    a.start(sdp_a.accept_answer(reply.sdp))
    b.start(reply.media)
    try:
        voice = speechlike(1.0)
        await a.queue_audio(resample(voice, 16000, 8000))
        await a.queue_keys("12", duration_ms=80, gap_ms=60)
        await a.queue_audio(np.concatenate([generate_dtmf("#", 100, rate=8000), np.zeros(1600, np.int16)]))
        await ears.until(lambda: len(ears.tones) >= 3, 2.0, "three keys")
        await ears.until(lambda: ears.quiet_for >= 0.3, 2.0, "quiet")
        assert "".join(t.key for t in ears.tones) == "12#"
        assert [t.method for t in ears.tones] == ["rfc4733", "rfc4733", "inband"]
        assert contains(ears.audio(), voice) > 0.9
        assert ears.segments and ears.segments[0].end is not None
        assert 0.9 <= ears.segments[0].end - ears.segments[0].start <= 1.2, ears.segments
        assert a.stats.events_sent == 2 and b.stats.packets_lost == 0
    finally:
        await a.close()
        await b.close()
    sent = a.stats.packets_sent
    await asyncio.sleep(0.1)
    assert a.stats.packets_sent == sent  # stopped
