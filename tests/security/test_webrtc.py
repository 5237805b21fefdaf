"""The WebRTC edge against hostile or broken input, on a real node with a real rtpengine: a WebSocket without a valid
credential is refused before it opens, a ticket works once and for its one target only, an application cannot get a
ticket for another application's bot, and rtpengine not running fails a browser's call at once (503, Warning) and
shows in /healthz and /readyz instead of hanging the call."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from pathlib import Path

import aiohttp
import pytest

from tests.integration.conftest import make_platform
from tests.integration.webrtc.support import final_status, invite, ticket, webrtc_config

BOB = "sip:support@bob.example"
ALICE = "sip:desk@alice.example"


def _ws_url(p: object, query: str) -> str:
    edge = p.node.webrtc  # type: ignore[attr-defined]
    return f"{edge.ws_url}?{query}"


async def _handshake_status(url: str, **kw: object) -> int:
    async with aiohttp.ClientSession() as http:
        try:
            async with http.ws_connect(url, protocols=("sip",), **kw):  # type: ignore[arg-type]
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


async def test_websocket_needs_a_valid_single_use_credential() -> None:
    async with make_platform(webrtc_config(), ("alice", "bob")) as p:
        p.node.directory.create_instance(p["bob"].app_id, "Support", sip_uri=BOB)
        assert await _handshake_status(_ws_url(p, "")) == 401
        assert await _handshake_status(_ws_url(p, "ticket=forged")) == 401
        await p["bob"].client.authenticate()
        assert await _handshake_status(_ws_url(p, f"access_token={p['bob'].client.token}")) == 401  # app token
        issued = await ticket(p, "bob", BOB)
        assert issued["status"] == 201, issued
        assert issued["callUrl"].startswith("/web/call#ticket=")
        evil = {"Origin": "https://evil.example"}
        assert await _handshake_status(_ws_url(p, f"ticket={issued['ticket']}"), headers=evil) == 403
        async with aiohttp.ClientSession() as http:  # no 'sip' subprotocol: refused, and the ticket not spent
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(_ws_url(p, f"ticket={issued['ticket']}"))
            assert refused.value.status == 400
        assert await _handshake_status(_ws_url(p, f"ticket={issued['ticket']}")) == 101
        assert await _handshake_status(_ws_url(p, f"ticket={issued['ticket']}")) == 401  # used once already
        assert p.node.webrtc.refused >= 4  # type: ignore[union-attr]


async def test_tickets_are_for_an_own_instance_and_its_address_only() -> None:
    async with make_platform(webrtc_config(), ("alice", "bob")) as p:
        p.node.directory.create_instance(p["bob"].app_id, "Support", sip_uri=BOB)
        p.node.directory.create_instance(p["alice"].app_id, "Desk", sip_uri=ALICE)
        assert (await ticket(p, "alice", BOB))["status"] == 403  # another application's bot
        issued = await ticket(p, "bob", BOB)
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(_ws_url(p, f"ticket={issued['ticket']}"), protocols=("sip",)) as ws,
        ):
            await ws.send_str(invite(ALICE))  # the ticket is for Bob's support address, not Alice's desk
            status, text = await final_status(ws)
            assert status == 403, text
        assert not p["alice"].bot.notifications


async def test_rtpengine_down_fails_the_call_quickly_and_is_a_health_error() -> None:
    async with make_platform(webrtc_config(spawn=False), ("bob",)) as p:  # nothing listens at the ng address
        p.node.directory.create_instance(p["bob"].app_id, "Support", sip_uri=BOB)
        issued = await ticket(p, "bob", BOB)
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(_ws_url(p, f"ticket={issued['ticket']}"), protocols=("sip",)) as ws:
                started = time.monotonic()
                await ws.send_str(invite(BOB))
                status, text = await final_status(ws)
                assert status == 503 and "rtpengine" in text, text
                assert time.monotonic() - started < 3.0
            async with http.get(f"{p.node.public_url}/healthz") as resp:
                assert (await resp.json())["webrtc"]["rtpengine"] == "unreachable"
            async with http.get(f"{p.node.public_url}/readyz") as resp:
                body = await resp.json()
                assert resp.status == 503 and "rtpengine" in body["failing"], body
        await asyncio.sleep(0)
        assert not p["bob"].bot.notifications and p.node.sip is not None and p.node.sip.active == 0


async def test_an_sdp_rtpengine_cannot_handle_fails_the_call_with_its_reason() -> None:
    async with make_platform(webrtc_config(), ("bob",)) as p:
        p.node.directory.create_instance(p["bob"].app_id, "Support", sip_uri=BOB)
        issued = await ticket(p, "bob", BOB)
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(_ws_url(p, f"ticket={issued['ticket']}"), protocols=("sip",)) as ws,
        ):
            await ws.send_str(invite(BOB, sdp="v=0\r\ns=-\r\n"))
            status, text = await final_status(ws)
            assert status == 488 and "media relay refused the offer" in text, text
        assert not p["bob"].bot.notifications and p.node.sip is not None and p.node.sip.active == 0


async def test_a_signed_in_users_token_opens_the_websocket_for_bots_of_their_tenant_only() -> None:
    async with make_platform(webrtc_config(), ("bob",)) as p:
        node = p.node
        node.directory.create_instance(p["bob"].app_id, "Support", sip_uri=BOB)
        user = node.directory.create_user(p.tenant_id, "Ursula User")
        other_tenant = node.directory.create_tenant("Fabrikam", "fabrikam.example")
        stranger = node.directory.create_user(other_tenant.id, "Sam Stranger")
        audience = node.tokens.audiences[0]

        def token(tenant_id: str, user_id: str) -> str:
            issued, _ = node.tokens.issue_delegated_token(
                tenant_id=tenant_id,
                app_id=p["bob"].app_id,
                user_id=user_id,
                scopes=["Calls"],
                audience=audience,
                now=node.clock(),
            )
            return issued

        async with aiohttp.ClientSession() as http:
            url = _ws_url(p, f"access_token={token(other_tenant.id, stranger.id)}")
            async with http.ws_connect(url, protocols=("sip",)) as ws:
                await ws.send_str(invite(BOB))  # another tenant's bot
                status, text = await final_status(ws)
                assert status == 403, text
            url = _ws_url(p, f"access_token={token(p.tenant_id, user.id)}")
            async with http.ws_connect(url, protocols=("sip",)) as ws:
                await ws.send_str(invite(BOB))
                incoming = await p["bob"].bot.incoming(timeout=10)
                caller = incoming.resource_data["source"]["identity"]["user"]
                assert caller["id"] == user.id and caller["displayName"] == "Ursula User"


async def test_the_web_routes_answer_bad_requests_with_short_json_and_a_strict_policy() -> None:
    async with make_platform(webrtc_config(), ("bob",)) as p:
        base = p.node.public_url
        await p["bob"].client.authenticate()
        auth = {"Authorization": f"Bearer {p['bob'].client.token}"}
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/web/tickets", json={"target": BOB}) as resp:
                assert resp.status == 401
            async with http.post(f"{base}/web/tickets", data=b"{not json", headers=auth) as resp:
                assert resp.status == 400 and (await resp.json())["error"]["code"] == "BadRequest"
            async with http.post(f"{base}/web/tickets", data=b"x" * 10_000, headers=auth) as resp:
                assert resp.status == 413
            async with http.post(f"{base}/web/tickets", json={"target": "sip:nobody@nowhere"}, headers=auth) as resp:
                assert resp.status == 403
            async with http.get(f"{base}/web/tickets") as resp:
                assert resp.status == 405
            async with http.get(f"{base}/web/static/../app.py") as resp:
                assert resp.status == 404
            async with http.get(f"{base}/web/call") as resp:
                page = await resp.text()
                policy = resp.headers["content-security-policy"]
                assert resp.status == 200 and "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
                assert p.node.webrtc is not None and p.node.webrtc.ws_url in page
                assert "ticket" not in page  # the ticket stays in the fragment: never in the page or a log


async def test_tickets_carry_time_limited_turn_credentials_when_coturn_is_configured(tmp_path: Path) -> None:
    (tmp_path / "turn.secret").write_text("coturn-static-auth-secret\n")
    config = webrtc_config(
        ice_servers=("turn:127.0.0.1:3478?transport=udp",), turn_secret_file=str(tmp_path / "turn.secret")
    )
    async with make_platform(config, ("bob",)) as p:
        p.node.directory.create_instance(p["bob"].app_id, "Support", sip_uri=BOB)
        issued = await ticket(p, "bob", BOB)
        (turn,) = issued["iceServers"]
        expiry, _, _ = turn["username"].partition(":")
        assert 0 < int(expiry) - p.node.clock() <= 3600
        digest = hmac.new(b"coturn-static-auth-secret", turn["username"].encode(), hashlib.sha1).digest()
        assert turn["credential"] == base64.b64encode(digest).decode()
        assert "&ice=" in issued["callUrl"]  # in the fragment: never sent to a server
