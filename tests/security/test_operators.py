"""Operators' surfaces attacked against a running node: call records and their subscriptions stay within the
application and tenant that own them, refuse malformed queries with Graph's 400, and a notificationUrl is held to
the node's egress policy before anything is sent to it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.integration.conftest import ALL_CALL_PERMISSIONS, Platform, make_platform, node_config
from tests.integration.operators.test_graph_sdk_call_records import Receiver

PERMS = [*ALL_CALL_PERMISSIONS, "CallRecords.Read.All"]


def subscription(url: str) -> dict[str, str]:
    return {
        "changeType": "created",
        "notificationUrl": url,
        "resource": "/communications/callRecords",
        "expirationDateTime": (datetime.now(UTC) + timedelta(minutes=30)).isoformat(),
    }


async def test_records_and_subscriptions_are_guarded() -> None:
    perms = {"alice": PERMS, "bob": PERMS, "carol": ALL_CALL_PERMISSIONS}
    async with make_platform(node_config(), ("alice", "bob", "carol"), perms) as p:
        alice, bob, carol = p["alice"].client, p["bob"].client, p["carol"].client
        for bad in ("endDateTime ge 2026-01-01T00:00:00Z", "startDateTime ge 'x'", "startDateTime ge 1;drop"):
            status, body, _ = await alice.request("GET", f"/communications/callRecords?$filter={bad}")
            assert status == 400 and body["error"]["code"] == "invalidRequest", body
        status, body, _ = await carol.request("GET", "/communications/callRecords")
        assert status == 403, body  # no CallRecords.Read.All
        status, body, _ = await carol.request("POST", "/subscriptions", subscription(p["alice"].bot.url))
        assert status == 403, body

        # a destination the egress policy refuses (link-local metadata address) is never contacted
        status, body, _ = await alice.request("POST", "/subscriptions", subscription("http://169.254.169.254/x"))
        assert status == 400 and "allowed destination" in body["error"]["message"], body

        # a subscription is its creator's: another application neither sees, renews nor deletes it
        sub_id = await _subscribe(p)
        for method, body_ in (
            ("GET", None),
            ("PATCH", {"expirationDateTime": "2099-01-01T00:00:00Z"}),
            ("DELETE", None),
        ):
            status, body, _ = await bob.request(method, f"/subscriptions/{sub_id}", body_)
            assert status == 404, (method, body)
        status, body, _ = await bob.request("GET", "/subscriptions")
        assert status == 200 and body["value"] == []
        status, body, _ = await alice.request(
            "PATCH", f"/subscriptions/{sub_id}", {"expirationDateTime": "2099-01-01T00:00:00Z"}
        )
        assert status == 400 and "4230" in body["error"]["message"], body
        renewed = (datetime.now(UTC) + timedelta(minutes=4000)).isoformat()
        status, body, _ = await alice.request("PATCH", f"/subscriptions/{sub_id}", {"expirationDateTime": renewed})
        assert status == 200 and body["expirationDateTime"].startswith(renewed[:16]), body


async def _subscribe(p: Platform) -> str:
    """A subscription of alice's, its notificationUrl a loopback receiver that passes the handshake."""
    async with Receiver() as receiver:
        status, body, _ = await p["alice"].client.request("POST", "/subscriptions", subscription(receiver.url))
        assert status == 201, body
        return str(body["id"])
