"""Phones call bots: SIPp as a real SIP peer against a real node; the bot answers over the REST API."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.integration.conftest import Platform, make_platform, node_config
from tests.sipp.sipp import LOOPBACK, run_sipp

NUMBER = "+14255550100"


async def _sipp(p: Platform, scenario: str, **kw: Any) -> Any:
    assert p.node.sip is not None
    return await asyncio.to_thread(run_sipp, scenario, LOOPBACK, p.node.sip.port, **kw)


async def test_phone_calls_bot_bot_answers_phone_hangs_up() -> None:
    async with make_platform(node_config(), ("bob",)) as p:
        p.node.directory.create_instance(p["bob"].app_id, "Reception", phone_number=NUMBER)
        sipp = asyncio.create_task(_sipp(p, "uac_basic.xml", service=NUMBER.lstrip("+"), call_duration_ms=1500))
        incoming = await p["bob"].bot.incoming(timeout=10)
        data = incoming.resource_data
        assert data["source"]["identity"]["user"]["id"].startswith("sip:sipp@")  # not a number: a user identity
        assert data["targets"][0]["identity"]["applicationInstance"]["displayName"] == "Reception"
        assert await p["bob"].client.answer(incoming.call_id) == 202
        await p["bob"].bot.wait_state(incoming.call_id, "established", timeout=10)
        result = await sipp
        assert result.ok, result.describe()
        end = await p["bob"].bot.wait_for(lambda n: n.change_type == "deleted", timeout=10)
        assert end[0].resource_data["resultInfo"]["subcode"] == 4097
        assert p.node.calls.active_calls == 0
        assert p.node.sip is not None and p.node.sip.active == 0


async def test_unknown_number_is_404_and_bot_reject_is_busy() -> None:
    async with make_platform(node_config(), ("bob",)) as p:
        result = await _sipp(p, "uac_basic.xml", service="19995550000", timeout=10)
        assert not result.ok
        assert p.node.calls.active_calls == 0
