"""Attacks on the dial-in number and on meetings' SIP addresses, replayed against a running node: a key flood at
the attendant, guessing conference ids, an unauthenticated or wrongly authenticated softphone, and a softphone
account of another tenant trying to walk into a meeting as one of its users."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from opencomms.domain.meetings import LobbyScope
from opencomms.testing.platform import TestPlatform
from tests.integration.meetings.test_live_meetings import MEMBER, by_chat, join, wait_roster


@pytest.fixture
async def platform() -> AsyncIterator[TestPlatform]:
    async with TestPlatform() as p:
        yield p


async def test_a_key_flood_and_guessed_conference_ids_end_in_a_goodbye(platform: TestPlatform) -> None:
    platform.add_meeting(conference_id="393939", passcode="1")
    async with platform.caller() as caller:
        call = await caller.dial(platform.dial_in_number)
        await call.wait_answered()
        await call.press("7" * 45, duration_ms=60, gap_ms=50)  # entries cut at 20 digits, each a wrong one
        await call.press("111111#", duration_ms=60, gap_ms=50)
        await call.wait_ended(timeout=30)
        assert call.ended_by == "far end"
    node = platform.node
    assert node.dialin is not None and node.dialin.stats["refused"] == 1 and node.dialin.stats["joined"] == 0
    for _ in range(40):
        if node.sip is not None and node.sip.ports.in_use == 0:
            break
        await asyncio.sleep(0.05)
    assert node.sip is not None and node.sip.active == 0 and node.sip.ports.in_use == 0


async def test_meeting_addresses_need_the_accounts_digest(platform: TestPlatform) -> None:
    meeting = platform.add_meeting()
    host, port = platform.sip_address
    address = f"sip:meeting-{meeting.join_meeting_id}@{host}:{port}"
    async with platform.caller() as anonymous:
        call = await anonymous.dial(address)
        await call.wait_ended()
        assert call.status == 401
    async with platform.caller(credentials=("nobody", "guess")) as stranger:
        call = await stranger.dial(address)
        await call.wait_ended()
        assert call.status == 401
    assert platform.node.calls.active_calls == 0


async def test_another_tenants_account_joins_only_as_a_guest_in_the_lobby(platform: TestPlatform) -> None:
    node = platform.node
    assert node.sip is not None
    other = node.directory.create_tenant("Fabrikam", "fabrikam.example")
    node.sip.registrations.accounts.add(other.id, "mallory", "m4llory-pass")
    meeting = platform.add_meeting(lobby_scope=LobbyScope.ORGANIZATION)
    bot = await platform.recording_bot("host", permissions=MEMBER)
    call_id = await join(bot, by_chat(meeting))
    host, port = platform.sip_address
    async with platform.caller(credentials=("mallory", "m4llory-pass")) as softphone:
        call = await softphone.dial(f"sip:meeting-{meeting.join_meeting_id}@{host}:{port}")
        await call.wait_answered()
        roster = await wait_roster(bot, call_id, lambda es: any("guest" in e["info"]["identity"] for e in es))
        guest = next(e for e in roster if "guest" in e["info"]["identity"])
        assert guest["isInLobby"] is True and "user" not in guest["info"]["identity"]
