"""The web client's meeting routes against hostile input, on a real node with a real rtpengine (no browser: Python
WebSockets speak SIP and the feed): the feed opens only with the ticket of an open SIP WebSocket whose call is in a
meeting, serves that meeting only and closes with it; guest joins are checked and rate-limited; the join page
escapes what it shows and runs no inline script."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from opencomms.domain.meetings import LobbyScope
from opencomms.testing.platform import TestPlatform
from tests.integration.webrtc.browsers import join_url, meeting_node
from tests.integration.webrtc.support import final_status, invite

BOB = "sip:support@bob.example"


async def _guest(http: aiohttp.ClientSession, p: TestPlatform, body: Any) -> tuple[int, dict[str, Any]]:
    async with http.post(f"{p.node.public_url}/web/join", data=orjson.dumps(body)) as resp:
        return resp.status, await resp.json(content_type=None)


def _feed_url(p: TestPlatform, query: str) -> str:
    edge = p.node.webrtc
    assert edge is not None
    return edge.ws_url.replace("/sip/ws", "/web/feed") + query


async def _feed_status(http: aiohttp.ClientSession, url: str, **kw: Any) -> int:
    try:
        async with http.ws_connect(url, **kw):
            return 101
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status


async def test_the_feed_needs_the_ticket_of_an_open_call_in_a_meeting_and_serves_only_that_meeting(
    tmp_path: Path,
) -> None:
    async with TestPlatform(meeting_node(tmp_path)) as p, aiohttp.ClientSession() as http:
        meeting = p.add_meeting(
            subject="Secret", passcode=None, passcode_required=False, lobby_scope=LobbyScope.EVERYONE
        )
        other = p.add_meeting(subject="Other", passcode=None, passcode_required=False, lobby_scope=LobbyScope.EVERYONE)
        assert await _feed_status(http, _feed_url(p, "")) == 401
        assert await _feed_status(http, _feed_url(p, "?ticket=forged")) == 401
        status, issued = await _guest(http, p, {"thread": meeting.thread_id, "displayName": "Eve"})
        assert status == 201, issued
        assert await _feed_status(http, _feed_url(p, f"?ticket={issued['ticket']}")) == 401  # no SIP WebSocket yet
        edge = p.node.webrtc
        assert edge is not None
        async with http.ws_connect(f"{edge.ws_url}?ticket={issued['ticket']}", protocols=("sip",)) as sip:
            await sip.send_str(invite(issued["target"]))
            code, _ = await final_status(sip)
            assert code == 200
            evil = {"Origin": "https://evil.example"}
            assert await _feed_status(http, _feed_url(p, f"?ticket={issued['ticket']}"), headers=evil) == 403
            async with http.ws_connect(_feed_url(p, f"?ticket={issued['ticket']}")) as feed:
                first = orjson.loads((await feed.receive(timeout=5)).data)
                assert first["type"] == "roster" and first["me"]
                assert [e["name"] for e in first["participants"]] == ["Eve"]  # this meeting's roster only
                await feed.send_str('{"type": "mute", "muted": "yes"}')  # not a boolean: ignored
                await feed.send_str("x" * 4096)  # over the feed's message limit: closed
                closed = await feed.receive(timeout=5)
                assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
            assert other.thread_id not in str(first)
        # the SIP WebSocket closed: its ticket opens no feed any more
        assert await _feed_status(http, _feed_url(p, f"?ticket={issued['ticket']}")) == 401


async def test_a_ticket_for_a_bot_call_opens_no_meeting_feed(tmp_path: Path) -> None:
    async with TestPlatform(meeting_node(tmp_path)) as p, aiohttp.ClientSession() as http:
        bot = await p.recording_bot("bob")
        p.node.directory.create_instance(bot.credentials.app_id, "Support", sip_uri=BOB)
        async with http.post(
            f"{p.node.public_url}/web/tickets",
            json={"target": BOB},
            headers={"Authorization": f"Bearer {bot.client.token}"},
        ) as resp:
            assert resp.status == 201
            issued = await resp.json()
        edge = p.node.webrtc
        assert edge is not None
        async with http.ws_connect(f"{edge.ws_url}?ticket={issued['ticket']}", protocols=("sip",)) as sip:
            await sip.send_str(invite(BOB))
            await bot.webhook.incoming(timeout=10)  # ringing the bot: a call, not a meeting
            assert await _feed_status(http, _feed_url(p, f"?ticket={issued['ticket']}")) == 404


async def test_guest_joins_are_checked_and_rate_limited(tmp_path: Path) -> None:
    async with TestPlatform(meeting_node(tmp_path)) as p, aiohttp.ClientSession() as http:
        meeting = p.add_meeting(passcode=None, passcode_required=False)
        async with http.get(f"{p.node.public_url}/web/join") as resp:
            assert resp.status == 405
        assert (await _guest(http, p, {"thread": "19:nope@thread.v2", "displayName": "Eve"}))[0] == 404
        assert (await _guest(http, p, {"thread": meeting.thread_id, "displayName": "   "}))[0] == 400
        assert (await _guest(http, p, ["not", "an", "object"]))[0] == 400
        async with http.post(f"{p.node.public_url}/web/join", data=b"{not json") as resp:
            assert resp.status == 400
        async with http.post(f"{p.node.public_url}/web/join", data=b"x" * 10_000) as resp:
            assert resp.status == 413
        statuses = [
            (await _guest(http, p, {"thread": meeting.thread_id, "displayName": f"G{i}"}))[0]
            for i in range(p.node.config.webrtc.guest_join_burst + 2)
        ]
        assert 429 in statuses and statuses.count(201) <= p.node.config.webrtc.guest_join_burst


async def test_a_node_without_web_guests_refuses_guest_joins(tmp_path: Path) -> None:
    config = meeting_node(tmp_path)
    config = dataclasses.replace(config, webrtc=dataclasses.replace(config.webrtc, web_guests=False))
    async with TestPlatform(config) as p, aiohttp.ClientSession() as http:
        meeting = p.add_meeting(passcode=None, passcode_required=False)
        assert (await _guest(http, p, {"thread": meeting.thread_id, "displayName": "Eve"}))[0] == 403
        async with http.get(join_url(p.node.public_url, meeting)) as resp:
            assert 'data-guests=""' in await resp.text()


async def test_the_join_page_escapes_the_subject_and_runs_no_inline_script(tmp_path: Path) -> None:
    async with TestPlatform(meeting_node(tmp_path)) as p, aiohttp.ClientSession() as http:
        meeting = p.add_meeting(subject='<script>alert("x")</script>', passcode=None, passcode_required=False)
        async with http.get(join_url(p.node.public_url, meeting)) as resp:
            page = await resp.text()
            csp = resp.headers["content-security-policy"]
            assert resp.status == 200
        assert '<script>alert("x")' not in page and "&lt;script&gt;" in page
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src", 1)[1].split(";", 1)[0]
        assert page.count("<script") == 1 and '<script src="/web/static/meeting.js"></script>' in page
        gone = dataclasses.replace(meeting, thread_id="19:gone@thread.v2")
        async with http.get(join_url(p.node.public_url, gone)) as resp:
            assert resp.status == 404 and "Traceback" not in await resp.text()
