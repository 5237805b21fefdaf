"""Bot-to-bot calls end to end: real node, real bot webhooks, real HTTP, signed notifications."""

from __future__ import annotations

import asyncio

from opencomms.testing.harness import app_target
from tests.integration.conftest import Platform, make_platform, node_config


async def place_call(p: Platform, caller: str = "alice", callee: str = "bob") -> tuple[str, str]:
    """caller calls callee; returns (caller's call id, callee's call id) once the callee saw it ring."""
    status, call = await p[caller].client.create_call(p[caller].bot.url, [app_target(p[callee].app_id)])
    assert status == 201, call
    assert call["state"] == "establishing" and call["direction"] == "outgoing"
    incoming = await p[callee].bot.incoming()
    return call["id"], incoming.call_id


async def test_call_answer_and_hang_up(platform: Platform) -> None:
    p = platform
    a_id, b_id = await place_call(p)
    incoming = p["bob"].bot.notifications[0]
    data = incoming.resource_data
    assert data["state"] == "incoming" and data["direction"] == "incoming"
    assert data["source"]["identity"]["application"]["id"] == p["alice"].app_id
    assert incoming.claims["aud"] == p["bob"].app_id and incoming.claims["tid"] == p.tenant_id

    assert await p["bob"].client.answer(b_id) == 202
    await p["bob"].bot.wait_state(b_id, "established")
    await p["alice"].bot.wait_state(a_id, "established")
    b_states = [n.state for n in p["bob"].bot.for_call(b_id)]
    assert b_states == ["incoming", "establishing", "established"]

    status, call, _ = await p["alice"].client.request("GET", f"/communications/calls/{a_id}")
    assert status == 200 and call["state"] == "established"
    status, parts, _ = await p["alice"].client.request("GET", f"/communications/calls/{a_id}/participants")
    assert status == 200 and len(parts["value"]) == 2

    assert await p["alice"].client.hang_up(a_id) == 204
    a_end = await p["alice"].bot.wait_for(lambda n: n.call_id == a_id and n.change_type == "deleted")
    b_end = await p["bob"].bot.wait_for(lambda n: n.call_id == b_id and n.change_type == "deleted")
    assert [n.state for n in p["alice"].bot.for_call(a_id)] == [
        "establishing",
        "established",
        "terminating",
        "terminated",
    ]
    assert (
        a_end[0].resource_data["resultInfo"]["code"],
        a_end[0].resource_data["resultInfo"]["subcode"],
    ) == (200, 5001)
    assert (
        b_end[0].resource_data["resultInfo"]["code"],
        b_end[0].resource_data["resultInfo"]["subcode"],
    ) == (200, 4097)
    status, _, _ = await p["alice"].client.request("GET", f"/communications/calls/{a_id}")
    assert status == 404
    assert p.node.calls.active_calls == 0


async def test_far_side_hangs_up(platform: Platform) -> None:
    p = platform
    a_id, b_id = await place_call(p)
    await p["bob"].client.answer(b_id)
    await p["alice"].bot.wait_state(a_id, "established")
    assert await p["bob"].client.hang_up(b_id) == 204
    end = await p["alice"].bot.wait_for(lambda n: n.call_id == a_id and n.change_type == "deleted")
    assert end[0].resource_data["resultInfo"]["subcode"] == 4097


async def test_reject_busy(platform: Platform) -> None:
    p = platform
    a_id, b_id = await place_call(p)
    status, _, _ = await p["bob"].client.request("POST", f"/communications/calls/{b_id}/reject", {"reason": "Busy"})
    assert status == 202
    end = await p["alice"].bot.wait_for(lambda n: n.call_id == a_id and n.change_type == "deleted")
    assert end[0].resource_data["resultInfo"]["code"] == 486
    await p["bob"].bot.wait_for(lambda n: n.call_id == b_id and n.change_type == "deleted")
    assert p.node.calls.active_calls == 0


async def test_redirect_to_third_bot(platform: Platform) -> None:
    p = platform
    a_id, b_id = await place_call(p)
    status, _, _ = await p["bob"].client.request(
        "POST",
        f"/communications/calls/{b_id}/redirect",
        {"targets": [app_target(p["carol"].app_id)], "timeout": 20},
    )
    assert status == 202
    await p["bob"].bot.wait_for(lambda n: n.call_id == b_id and n.change_type == "deleted")
    c_in = await p["carol"].bot.incoming()
    assert c_in.resource_data["source"]["identity"]["application"]["id"] == p["alice"].app_id
    await p["carol"].client.answer(c_in.call_id)
    await p["alice"].bot.wait_state(a_id, "established")
    routes = [n for n in p["alice"].bot.for_call(a_id) if "callRoutes" in (n.resource_data or {})]
    assert routes and routes[0].resource_data["callRoutes"][0]["routingType"] == "forwarded"


async def test_transfer_to_third_bot(platform: Platform) -> None:
    p = platform
    a_id, b_id = await place_call(p)
    await p["bob"].client.answer(b_id)
    await p["bob"].bot.wait_state(b_id, "established")
    status, _, _ = await p["bob"].client.request(
        "POST", f"/communications/calls/{b_id}/transfer", {"transferTarget": app_target(p["carol"].app_id)}
    )
    assert status == 202
    await p["bob"].bot.wait_state(b_id, "transferring")
    c_in = await p["carol"].bot.incoming()
    ctx = c_in.resource_data["incomingContext"]
    assert ctx["transferor"]["application"]["id"] == p["bob"].app_id
    await p["carol"].client.answer(c_in.call_id)
    await p["carol"].bot.wait_state(c_in.call_id, "established")
    end = await p["bob"].bot.wait_for(lambda n: n.call_id == b_id and n.change_type == "deleted")
    assert [n.state for n in p["bob"].bot.for_call(b_id)][-3:] == [
        "transferring",
        "transferAccepted",
        "terminated",
    ]
    assert (end[0].resource_data["resultInfo"]["code"], end[0].resource_data["resultInfo"]["subcode"]) == (
        0,
        7015,
    )
    # alice now talks to carol: carol hanging up ends alice's call
    await p["carol"].client.hang_up(c_in.call_id)
    await p["alice"].bot.wait_for(lambda n: n.call_id == a_id and n.change_type == "deleted")


async def test_transfer_rejected_keeps_call(platform: Platform) -> None:
    p = platform
    a_id, b_id = await place_call(p)
    await p["bob"].client.answer(b_id)
    await p["bob"].bot.wait_state(b_id, "established")
    await p["bob"].client.request(
        "POST", f"/communications/calls/{b_id}/transfer", {"transferTarget": app_target(p["carol"].app_id)}
    )
    c_in = await p["carol"].bot.incoming()
    await p["carol"].client.request("POST", f"/communications/calls/{c_in.call_id}/reject", {})
    back = await p["bob"].bot.wait_for(
        lambda n: n.call_id == b_id and n.state == "established" and "resultInfo" in n.resource_data
    )
    assert (back[0].resource_data["resultInfo"]["code"], back[0].resource_data["resultInfo"]["subcode"]) == (
        500,
        7000,
    )
    status, call, _ = await p["alice"].client.request("GET", f"/communications/calls/{a_id}")
    assert status == 200 and call["state"] == "established"


async def test_group_call_roster(platform: Platform) -> None:
    p = platform
    status, _ = await p["alice"].client.create_call(
        p["alice"].bot.url, [app_target(p["bob"].app_id), app_target(p["carol"].app_id)]
    )
    assert status == 201
    b_in = await p["bob"].bot.incoming()
    c_in = await p["carol"].bot.incoming()
    await p["bob"].client.answer(b_in.call_id)
    await p["carol"].client.answer(c_in.call_id)
    rosters = await p["alice"].bot.wait_for(
        lambda n: n.resource_url.endswith("/participants") and len(n.resource_data) == 3
    )
    assert all(r["@odata.type"] == "#microsoft.graph.participant" for r in rosters[0].resource_data)
    await p["bob"].client.hang_up(b_in.call_id)
    await p["alice"].bot.wait_for(lambda n: n.resource_url.endswith("/participants") and len(n.resource_data) == 2)


async def test_unanswered_call_times_out() -> None:
    from opencomms.config import CallsConfig

    async with make_platform(node_config(calls=CallsConfig(answer_timeout=0.5))) as p:
        a_id, b_id = await place_call(p)
        b_end = await p["bob"].bot.wait_for(lambda n: n.call_id == b_id and n.change_type == "deleted", timeout=5)
        a_end = await p["alice"].bot.wait_for(lambda n: n.call_id == a_id and n.change_type == "deleted", timeout=5)
        assert b_end[0].resource_data["resultInfo"]["subcode"] == 1106
        assert a_end[0].resource_data["resultInfo"]["code"] == 408


async def test_keepalive_lapse_ends_call() -> None:
    from opencomms.config import CallsConfig

    async with make_platform(node_config(calls=CallsConfig(keepalive_timeout=1.0))) as p:
        a_id, b_id = await place_call(p)
        await p["bob"].client.answer(b_id)
        await p["alice"].bot.wait_state(a_id, "established")
        for _ in range(3):  # alice keeps her leg alive; bob does not
            await asyncio.sleep(0.3)
            status, _, _ = await p["alice"].client.request("POST", f"/communications/calls/{a_id}/keepAlive")
            assert status == 200
        b_end = await p["bob"].bot.wait_for(lambda n: n.call_id == b_id and n.change_type == "deleted", timeout=5)
        assert (
            b_end[0].resource_data["resultInfo"]["code"],
            b_end[0].resource_data["resultInfo"]["subcode"],
        ) == (
            408,
            8537,
        )
        await p["alice"].bot.wait_for(lambda n: n.call_id == a_id and n.change_type == "deleted", timeout=5)
        status, _, _ = await p["alice"].client.request("POST", f"/communications/calls/{a_id}/keepAlive")
        assert status == 404


async def test_call_to_unknown_targets_fails(platform: Platform) -> None:
    p = platform
    user = p.node.directory.create_user(p.tenant_id, "Adele Vance")
    status, call = await p["alice"].client.create_call(p["alice"].bot.url, [{"identity": {"user": {"id": user.id}}}])
    assert status == 201
    end = await p["alice"].bot.wait_for(lambda n: n.call_id == call["id"] and n.change_type == "deleted")
    assert (end[0].resource_data["resultInfo"]["code"], end[0].resource_data["resultInfo"]["subcode"]) == (
        480,
        10037,
    )


async def test_group_call_hung_up_before_answer_stops_ringing(platform: Platform) -> None:
    p = platform
    status, call = await p["alice"].client.create_call(
        p["alice"].bot.url, [app_target(p["bob"].app_id), app_target(p["carol"].app_id)]
    )
    assert status == 201
    b_in = await p["bob"].bot.incoming()
    c_in = await p["carol"].bot.incoming()
    assert await p["alice"].client.hang_up(call["id"]) == 204
    await p["bob"].bot.wait_for(lambda n: n.call_id == b_in.call_id and n.change_type == "deleted")
    await p["carol"].bot.wait_for(lambda n: n.call_id == c_in.call_id and n.change_type == "deleted")
    assert await p["bob"].client.answer(b_in.call_id) == 404
    assert p.node.calls.active_calls == 0
