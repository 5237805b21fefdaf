"""Call records for calls without SIP legs, read over Graph's REST: a group call between three bots gets a
`groupCall` record with one session per bot leg (each against the conference service), a bot-to-bot call a
`peerToPeer` record with one session between the two bots; the list pages with `@odata.nextLink` and filters on
startDateTime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from opencomms.testing.harness import app_target
from tests.integration.conftest import ALL_CALL_PERMISSIONS, Platform, make_platform, node_config

PERMS = [*ALL_CALL_PERMISSIONS, "CallRecords.Read.All"]
RECORDS = "/communications/callRecords"


async def _ended(p: Platform, who: str, call_id: str) -> None:
    await p[who].bot.wait_for(lambda n: n.call_id == call_id and n.change_type == "deleted", timeout=10)


async def _record(p: Platform, chain: str) -> dict[str, Any]:
    status, record, _ = await p["alice"].client.request("GET", f"{RECORDS}/{chain}?$expand=sessions($expand=segments)")
    assert status == 200, record
    result: dict[str, Any] = record
    return result


async def test_group_and_bot_to_bot_calls_have_records_listed_with_paging() -> None:
    perms = {"alice": PERMS}
    async with make_platform(node_config(), ("alice", "bob", "carol"), perms) as p:
        alice = p["alice"]
        status, group = await alice.client.create_call(
            alice.bot.url, [app_target(p["bob"].app_id), app_target(p["carol"].app_id)]
        )
        assert status == 201, group
        legs = {"alice": group["id"]}
        for name in ("bob", "carol"):
            incoming = await p[name].bot.incoming()
            legs[name] = incoming.call_id
            assert await p[name].client.answer(incoming.call_id) == 202
        await alice.bot.wait_state(group["id"], "established")
        for name in ("alice", "bob"):  # the group call lasts until one is left alone (then that leg ends too)
            assert await p[name].client.hang_up(legs[name]) == 204
        for name, leg in legs.items():
            await _ended(p, name, leg)

        status, pair = await alice.client.create_call(alice.bot.url, [app_target(p["bob"].app_id)])
        assert status == 201
        incoming = await p["bob"].bot.incoming(index=1)
        assert await p["bob"].client.answer(incoming.call_id) == 202
        await alice.bot.wait_state(pair["id"], "established")
        assert await p["bob"].client.hang_up(incoming.call_id) == 204
        await _ended(p, "alice", pair["id"])

        record = await _record(p, group["callChainId"])
        assert record["type"] == "groupCall" and len(record["sessions"]) == 3, record
        for session in record["sessions"]:
            assert session["callee"]["@odata.type"].endswith("serviceEndpoint") or session["caller"][
                "@odata.type"
            ].endswith("serviceEndpoint")
            assert session["segments"][0]["media"][0]["label"] == "main-audio"
        apps = {p[n].app_id for n in ("alice", "bob", "carol")}
        assert {pt["application"]["id"] for pt in record["participants"] if "application" in pt} <= apps

        record = await _record(p, pair["callChainId"])
        (session,) = record["sessions"]
        assert record["type"] == "peerToPeer" and session["failureInfo"] is None
        assert session["caller"]["identity"]["application"]["id"] == alice.app_id

        # paging: one per page, in startDateTime order, the filter kept in the nextLink
        since = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
        status, page, _ = await alice.client.request("GET", f"{RECORDS}?$top=1&$filter=startDateTime ge {since}")
        assert status == 200 and [r["id"] for r in page["value"]] == [group["callChainId"]], page
        assert "sessions" not in page["value"][0] and "%24filter=" in page["@odata.nextLink"]
        status, page, _ = await alice.client.request("GET", page["@odata.nextLink"])
        assert status == 200 and [r["id"] for r in page["value"]] == [pair["callChainId"]], page
        assert "@odata.nextLink" not in page
        status, body, _ = await alice.client.request("GET", f"{RECORDS}?$top=1&$skiptoken=not-a-token")
        assert status == 400 and body["error"]["code"] == "invalidRequest"
