"""baresip (Debian) as a real softphone against a real node: it registers with an account made through the
accounts API, calls the IVR bot's number and sends DTMF the bot receives as toneInfo, hangs up; and it is
called by a bot and auto-answers. Both legs end cleanly and every RTP port is released."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from opencomms.config import SipConfig
from tests.baresip.baresip import Baresip
from tests.integration.conftest import BotHandle, Platform, make_platform, node_config

NUMBER = "+14255550142"
PASSWORD = "baresip-secret"
PROMPT = {"@odata.type": "#opencomms.textPrompt", "text": "Press one, then pound.", "voice": "en-us"}


async def registered(p: Platform, username: str, timeout: float = 5.0) -> None:
    assert p.node.sip is not None
    deadline = time.monotonic() + timeout
    while not p.node.sip.registrations.bindings(username):
        assert time.monotonic() < deadline, f"{username} did not register"
        await asyncio.sleep(0.05)


async def nothing_leaked(p: Platform, within: float = 3.0) -> None:
    gateway = p.node.sip
    assert gateway is not None
    deadline = time.monotonic() + within
    while gateway.active or gateway.ports.in_use or p.node.calls.active_calls:
        assert time.monotonic() < deadline, (gateway.active, gateway.ports.in_use, p.node.calls.active_calls)
        await asyncio.sleep(0.05)


@asynccontextmanager
async def softphone(p: Platform, answermode: str = "manual", **account: Any) -> AsyncIterator[Baresip]:
    """An account 'alice' (accounts API) and baresip registered with it."""
    assert p.node.sip is not None
    p.node.sip.registrations.accounts.add(p.tenant_id, "alice", PASSWORD, **account)
    aor = f"<sip:alice@127.0.0.1:{p.node.sip.port};transport=udp>"
    async with Baresip(f"{aor};auth_pass={PASSWORD};regint=60;answermode={answermode}") as phone:
        await registered(p, "alice")
        yield phone
    assert p.node.sip.registrations.bindings("alice") == []  # baresip unregisters (Expires: 0) when it quits


async def action(bot: BotHandle, call_id: str, name: str, body: Any = None) -> int:
    status, _, _ = await bot.client.request("POST", f"/communications/calls/{call_id}/{name}", body)
    return status


async def test_baresip_registers_calls_the_ivr_sends_dtmf_and_hangs_up() -> None:
    async with make_platform(node_config(sip=SipConfig(port=0)), ("ivr",)) as p:
        ivr = p["ivr"]
        p.node.directory.create_instance(ivr.app_id, "IVR", phone_number=NUMBER)
        assert p.node.sip is not None
        async with softphone(p) as phone:
            await phone.command("dial", f"sip:{NUMBER}@127.0.0.1:{p.node.sip.port}")
            incoming = await ivr.bot.incoming(timeout=10)
            call_id = incoming.call_id
            assert incoming.resource_data["source"]["identity"]["user"]["id"].startswith("sip:alice@")
            assert await ivr.client.answer(call_id) == 202
            await ivr.bot.wait_state(call_id, "established", timeout=10)
            await phone.event("CALL_ESTABLISHED")
            assert await action(ivr, call_id, "subscribeToTone", {"clientContext": "menu"}) == 200
            assert await action(ivr, call_id, "playPrompt", {"prompts": [PROMPT]}) == 200
            await phone.event("CALL_RTPESTAB")  # the node's audio reaches baresip

            phone.keys("1")
            await asyncio.sleep(0.4)
            phone.keys("#")
            found = await ivr.bot.wait_for(
                lambda n: n.call_id == call_id and bool((n.resource_data or {}).get("toneInfo")), count=2, timeout=10
            )
            infos = sorted((n.resource_data["toneInfo"] for n in found), key=lambda t: t["sequenceId"])
            assert [t["tone"] for t in infos] == ["tone1", "pound"]

            await phone.command("hangup")
            await phone.event("CALL_CLOSED")
            end = await ivr.bot.wait_state(call_id, "terminated", timeout=10)
            assert end.resource_data["resultInfo"]["code"] == 200
            await nothing_leaked(p)


async def test_bot_calls_the_registered_baresip_user_which_auto_answers() -> None:
    async with make_platform(node_config(sip=SipConfig(port=0)), ("bot",)) as p:
        bot = p["bot"]
        user = p.node.directory.create_user(p.tenant_id, "Alice Example")
        async with softphone(p, answermode="auto", user_id=user.id) as phone:
            target = {
                "@odata.type": "#microsoft.graph.invitationParticipantInfo",
                "identity": {"@odata.type": "#microsoft.graph.identitySet", "user": {"id": user.id}},
            }
            status, call = await bot.client.create_call(bot.bot.url, [target])
            assert status == 201, call
            await bot.bot.wait_state(call["id"], "established", timeout=10)
            await phone.event("CALL_ESTABLISHED")
            status, roster, _ = await bot.client.request("GET", f"/communications/calls/{call['id']}/participants")
            assert status == 200
            users = [m["info"]["identity"].get("user") for m in roster["value"]]
            assert {"id": user.id, "displayName": "Alice Example"}.items() <= next(u for u in users if u).items()
            assert await action(bot, call["id"], "playPrompt", {"prompts": [PROMPT]}) == 200
            await phone.event("CALL_RTPESTAB")
            assert await bot.client.hang_up(call["id"]) == 204
            await phone.event("CALL_CLOSED")
            await bot.bot.wait_state(call["id"], "terminated", timeout=10)
            await nothing_leaked(p)


async def test_baresip_calls_a_bot_by_its_sip_uri() -> None:
    async with make_platform(node_config(sip=SipConfig(port=0)), ("ivr",)) as p:
        ivr = p["ivr"]
        p.node.directory.create_instance(ivr.app_id, "Front desk", sip_uri="sip:frontdesk@127.0.0.1")
        assert p.node.sip is not None
        async with softphone(p) as phone:
            await phone.command("dial", f"sip:frontdesk@127.0.0.1:{p.node.sip.port}")
            incoming = await ivr.bot.incoming(timeout=10)
            target = incoming.resource_data["targets"][0]["identity"]["applicationInstance"]
            assert target["displayName"] == "Front desk"
            assert await ivr.client.answer(incoming.call_id) == 202
            await phone.event("CALL_ESTABLISHED")
            await phone.command("hangup")
            await ivr.bot.wait_state(incoming.call_id, "terminated", timeout=10)
            await nothing_leaked(p)
