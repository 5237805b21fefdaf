"""DTMF from a bot to a phone, end to end on real SIP/RTP: a bot answers a VirtualCaller and sends "12#" with
sendDtmfTones. A phone that negotiated telephone-event gets each key once as RFC 4733 events (codes, durations,
three end packets, one timestamp per key spaced by tone + delayBetweenTonesMs) and no tone in its audio; a phone
without telephone-event hears the tones in-band, once each."""

from __future__ import annotations

import itertools
import struct
from typing import Any

from opencomms.media.dtmf import detect_keys
from opencomms.testing import TestBot, TestPlatform, VirtualCall

TONE_UNITS = 800  # 100 ms (calling/media.py TONE_MS) at 8 kHz
PERIOD_UNITS = 2400  # 100 ms tone + 200 ms delayBetweenTonesMs


async def _send_tones(bot: TestBot, call_id: str) -> None:
    body = {"tones": ["tone1", "tone2", "pound"], "delayBetweenTonesMs": 200}
    status, op, _ = await bot.client.request("POST", f"/communications/calls/{call_id}/sendDtmfTones", body)
    assert status == 200, op
    done = await bot.webhook.wait_for(lambda n: n.resource_url.endswith(op["id"]) and n.change_type == "deleted")
    assert done[0].resource_data["status"] == "completed"


def _capture_events(call: VirtualCall) -> list[tuple[int, bool, int, int]]:
    """Every telephone-event packet the phone receives, as (event code, end bit, duration, RTP timestamp)."""
    packets: list[tuple[int, bool, int, int]] = []
    peer: Any = call._rtp
    original = peer._event

    def spy(payload: bytes, timestamp: int) -> None:
        code, flags, duration = struct.unpack("!BBH", payload[:4])
        packets.append((code, bool(flags & 0x80), duration, timestamp))
        original(payload, timestamp)

    peer._event = spy
    return packets


async def _answered_call(platform: TestPlatform, caller: Any) -> tuple[TestBot, VirtualCall, str]:
    bot = await platform.recording_bot("keys")
    call = await caller.dial(bot.number)
    incoming = await bot.webhook.incoming(timeout=10)
    assert await bot.client.answer(incoming.call_id) == 202
    await call.wait_answered()
    await bot.webhook.wait_state(incoming.call_id, "established")
    return bot, call, incoming.call_id


async def test_a_phone_with_telephone_event_gets_the_bots_keys_as_rfc4733_only() -> None:
    async with TestPlatform() as platform, platform.caller() as caller:
        bot, call, call_id = await _answered_call(platform, caller)
        packets = _capture_events(call)
        await call.hear(0.1)
        await _send_tones(bot, call_id)
        await call.hear(0.4)  # the last end packets, and anything late
        assert call.heard_tones == "12#"
        assert [t.method for t in call.tone_events] == ["rfc4733"] * 3
        assert detect_keys(call.heard_audio()) == []  # not in the audio as well

        by_ts: dict[int, list[tuple[int, bool, int, int]]] = {}
        for packet in packets:
            by_ts.setdefault(packet[3], []).append(packet)
        stamps = list(by_ts)
        assert [by_ts[ts][0][0] for ts in stamps] == [1, 2, 11]  # RFC 4733 codes of 1, 2, #
        for ts in stamps:
            key = by_ts[ts]
            assert len({code for code, *_ in key}) == 1
            ends = [p for p in key if p[1]]
            assert len(ends) == 3 and all(p[2] == TONE_UNITS for p in ends) and key[-3:] == ends
            durations = [p[2] for p in key if not p[1]]
            assert durations == sorted(durations) and 0 < durations[0] <= 160 and durations[-1] <= TONE_UNITS
        gaps = [(b - a) & 0xFFFFFFFF for a, b in itertools.pairwise(stamps)]
        assert all(abs(gap - PERIOD_UNITS) <= 160 for gap in gaps), gaps
        await call.hang_up()


async def test_a_phone_without_telephone_event_hears_the_keys_in_band_once() -> None:
    async with TestPlatform() as platform, platform.caller(rfc4733=False) as caller:
        bot, call, call_id = await _answered_call(platform, caller)
        packets = _capture_events(call)
        await call.hear(0.1)
        await _send_tones(bot, call_id)
        await call.hear(0.3)
        assert call.heard_tones == "12#"
        assert [t.method for t in call.tone_events] == ["inband"] * 3
        assert [d.key for d in detect_keys(call.heard_audio())] == ["1", "2", "#"]
        assert packets == []
        await call.hang_up()
