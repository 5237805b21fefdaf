"""Bots call phones through a SIP trunk: SIPp plays the trunk against a real node, the bot drives the call over REST.

Covers the digest challenge (407, MD5) and retry, RTP both ways (SIPp echoes it), a prompt on the phone call,
hang-up from each side, a 302 followed to another host and a redirect loop that ends, and every failure a bot must
tell apart: busy, decline, unreachable, no answer (ring timeout -> CANCEL to the trunk) and a failing trunk.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from opencomms.config import SipConfig
from tests.integration.conftest import Platform, make_platform, node_config
from tests.sipp.sipp import SCENARIO_DIR, SippResult, SippServer, free_port

NUMBER = "+14255550123"
USER, PASSWORD = "opencomms", "trunk-secret"  # what trunk_auth.xml checks


def phone_target(number: str = NUMBER) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.invitationParticipantInfo",
        "identity": {
            "@odata.type": "#microsoft.graph.identitySet",
            "phone": {"@odata.type": "#microsoft.graph.identity", "id": number},
        },
    }


@asynccontextmanager
async def trunk_platform(trunk_port: int, **sip: Any) -> AsyncIterator[Platform]:
    config = node_config(
        sip=SipConfig(
            port=0,
            trunk_uri=f"sip:127.0.0.1:{trunk_port}",
            trunk_username=USER,
            trunk_password=PASSWORD,
            media_timeout=5.0,
            **sip,
        )
    )
    async with make_platform(config, ("alice",)) as p:
        yield p


def variant(tmp: Path, scenario: str, old: str, new: str) -> Path:
    """A copy of one of our scenarios with `old` replaced (what sipp must know when it loads the file)."""
    text = (SCENARIO_DIR / scenario).read_text()
    assert old in text
    path = tmp / f"{Path(scenario).stem}-{abs(hash(new))}.xml"
    path.write_text(text.replace(old, new))
    return path


@asynccontextmanager
async def trunk(scenario: str | Path, port: int, **kw: Any) -> AsyncIterator[SippServer]:
    server = SippServer(scenario, port=port, calls=1, timeout=20, **kw)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


async def finished(server: SippServer, timeout: float = 10.0) -> SippResult:
    return await asyncio.to_thread(server.wait, timeout)


async def call_phone(p: Platform) -> str:
    status, call = await p["alice"].client.create_call(p["alice"].bot.url, [phone_target()])
    assert status == 201, call
    return str(call["id"])


async def ended(p: Platform, call_id: str, timeout: float = 10.0) -> dict[str, Any]:
    found = await p["alice"].bot.wait_for(
        lambda n: n.resource_url.endswith(call_id) and n.change_type == "deleted", timeout=timeout
    )
    info: dict[str, Any] = found[0].resource_data["resultInfo"]
    return info


async def test_trunk_challenge_answered_media_flows_prompt_plays_bot_hangs_up() -> None:
    port = free_port()
    async with (
        trunk_platform(port) as p,
        trunk("trunk_auth.xml", port, extra_args=["-rtp_echo"]) as sipp,
    ):
        call_id = await call_phone(p)
        await p["alice"].bot.wait_state(call_id, "established", timeout=10)
        status, op, _ = await p["alice"].client.request(
            "POST",
            f"/communications/calls/{call_id}/playPrompt",
            {"prompts": [{"@odata.type": "#opencomms.textPrompt", "text": "hello from the bot"}]},
        )
        assert status == 200, op
        done = await p["alice"].bot.wait_for(
            lambda n: n.resource_url.endswith(f"/operations/{op['id']}") and n.change_type == "deleted", timeout=10
        )
        assert done[0].resource_data["status"] == "completed"
        assert p.node.sip is not None
        legs = [c for c in p.node.calls.calls.values() if c.is_external]
        assert len(legs) == 1
        quality = p.node.sip.quality(legs[0].id)
        assert quality is not None and quality.packets_sent > 50 and quality.packets_received > 50, quality
        assert await p["alice"].client.hang_up(call_id) == 204
        info = await ended(p, call_id)
        assert info["subcode"] == 5001, info
        result = await finished(sipp)
        assert result.ok, result.describe()  # the retry carried valid credentials, and the BYE arrived
        assert p.node.calls.active_calls == 0 and p.node.sip.active == 0


async def test_redirect_is_followed_and_the_phone_hangs_up(tmp_path: Path) -> None:
    port, target_port = free_port(), free_port()
    redirect = variant(tmp_path, "trunk_redirect.xml", "127.0.0.1:5099", f"127.0.0.1:{target_port}")
    async with (
        trunk_platform(port) as p,
        trunk(redirect, port) as r,
        trunk("trunk_answer_bye.xml", target_port, extra_args=["-d", "500", "-trace_logs"]) as t,
    ):
        call_id = await call_phone(p)
        await p["alice"].bot.wait_state(call_id, "established", timeout=10)
        info = await ended(p, call_id)
        assert (info["code"], info["subcode"]) == (200, 4097)
        for result in (await finished(r), await finished(t)):
            assert result.ok, result.describe()
        logged = "".join(f.read_text() for f in result.workdir.glob("*_logs.log"))
        assert f"request line: INVITE sip:4255550199@127.0.0.1:{target_port}" in logged, logged
        assert p.node.sip is not None and p.node.sip.active == 0


async def test_redirect_loop_ends_the_call() -> None:
    port = free_port()
    async with (
        trunk_platform(port) as p,
        trunk("trunk_redirect_loop.xml", port) as sipp,
    ):
        call_id = await call_phone(p)
        info = await ended(p, call_id)
        assert info["code"] == 480 and "302" in info["message"], info
        result = await finished(sipp)
        assert result.ok, result.describe()  # two INVITEs (the number, then sip:loop once), no third
        assert p.node.calls.active_calls == 0


async def test_failures_map_to_result_info(tmp_path: Path) -> None:
    cases = [
        (486, "Busy Here", 486, 0),
        (603, "Decline", 603, 0),
        (404, "Not Found", 480, 10076),
        (480, "Temporarily Unavailable", 480, 10076),
        (503, "Service Unavailable", 502, 9131),
    ]
    port = free_port()
    async with trunk_platform(port) as p:
        for status, reason, code, subcode in cases:
            scenario = variant(tmp_path, "trunk_reject.xml", "486 Busy Here", f"{status} {reason}")
            async with trunk(scenario, port) as sipp:
                call_id = await call_phone(p)
                info = await ended(p, call_id)
                assert (info["code"], info["subcode"]) == (code, subcode), (status, info)
                result = await finished(sipp)
                assert result.ok, result.describe()  # our ACK for the failure response arrived
        assert p.node.calls.active_calls == 0
        assert p.node.sip is not None and p.node.sip.active == 0


async def test_no_answer_cancels_at_the_trunk() -> None:
    port = free_port()
    async with trunk_platform(port) as p, trunk("trunk_ring_cancel.xml", port) as sipp:
        p.node.calls.timeouts = dataclasses.replace(p.node.calls.timeouts, dial_timeout=1.5)
        call_id = await call_phone(p)
        info = await ended(p, call_id)
        assert (info["code"], info["subcode"]) == (408, 10057)
        result = await finished(sipp)
        assert result.ok, result.describe()  # CANCEL, 487, ACK
        assert p.node.sip is not None and p.node.sip.active == 0


async def rung(p: Platform, timeout: float = 5.0) -> None:
    """Until an outgoing INVITE of the gateway got a provisional response (the phone rings: it can be cancelled)."""
    assert p.node.sip is not None
    calls = p.node.sip._by_key.values()
    deadline = asyncio.get_running_loop().time() + timeout
    while not any(sc.dialing and sc.dialing.handle and sc.dialing.handle.provisional for sc in calls):
        assert asyncio.get_running_loop().time() < deadline, "the phone never rang"
        await asyncio.sleep(0.02)


async def test_answer_crossing_the_cancel_of_a_bot_that_hung_up_is_acked_and_ended() -> None:
    port = free_port()
    async with trunk_platform(port) as p, trunk("uas_answer_after_cancel.xml", port) as sipp:
        call_id = await call_phone(p)
        await rung(p)
        assert await p["alice"].client.hang_up(call_id) == 204
        await ended(p, call_id)
        result = await finished(sipp)
        assert result.ok, result.describe()  # CANCEL, the 200 anyway, our ACK and BYE
        assert p.node.calls.active_calls == 0
        assert p.node.sip is not None and p.node.sip.active == 0 and not p.node.sip.endpoint.dialogs
