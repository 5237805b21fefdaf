"""The lobby on a real node: someone admitted from it is announced to the meeting's phones (isEntryExitAnnounced),
as a direct join is; a PATCH of the meeting's lobbyBypassSettings admits those already waiting whom the new
settings let in (roster, media, the lobby's hold music stops) and leaves the others waiting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from opencomms.domain.meetings import LobbyScope
from opencomms.testing.platform import TestPlatform

from .test_dialin import phones, say, settled
from .test_live_meetings import CALLS, GUEST, MEMBER, by_chat, by_id, join, wait_roster


@pytest.fixture
async def platform() -> AsyncIterator[TestPlatform]:
    async with TestPlatform() as p:
        yield p


def guests(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if "guest" in e["info"]["identity"]]


async def test_a_guest_admitted_from_the_lobby_is_announced_to_the_phones(platform: TestPlatform) -> None:
    meeting = platform.add_meeting(
        conference_id="626262",
        passcode_required=False,
        passcode=None,
        dial_in_bypass=True,
        entry_exit_announced=True,
        lobby_scope=LobbyScope.ORGANIZATION,
    )
    host = await platform.recording_bot("host", permissions=MEMBER)
    a = await join(host, by_chat(meeting))
    announcer = platform.node.announcer
    async with platform.caller(number="+15550161") as caller:
        call = await caller.dial_in(platform.dial_in_number, "626262")
        await wait_roster(host, a, lambda es: len(phones(es)) == 1)
        await settled(lambda: announcer.spoken == 1)  # the phone's own entry
        await call.wait_for_silence(1.0)  # the attendant and the announcement are over
        guest = await platform.recording_bot("visitor", permissions=GUEST)
        g = await join(guest, by_id(meeting, None), state="establishing")
        waiting = guests(await wait_roster(host, a, lambda es: any(e["isInLobby"] for e in guests(es))))[0]
        await asyncio.sleep(0.5)
        assert announcer.spoken == 1  # waiting in the lobby is not joining the meeting
        status, _, _ = await host.client.request("POST", f"{CALLS}/{a}/participants/{waiting['id']}/admit", {})
        assert status == 200
        await guest.webhook.wait_state(g, "established")
        await call.wait_for_speech(timeout=10)  # "visitor has joined."
        assert announcer.spoken == 2


async def test_patching_the_lobby_bypass_admits_whom_it_now_lets_in(platform: TestPlatform) -> None:
    lobby = {"scope": "organizer", "isDialInBypassEnabled": False}
    meeting = await platform.create_meeting("Olga Organizer", subject="Lobby", lobbyBypassSettings=lobby)
    required = meeting.raw["joinMeetingIdSettings"].get("isPasscodeRequired")
    host = await platform.recording_bot("host", permissions=MEMBER)
    a = await join(host, by_chat(meeting))  # type: ignore[arg-type]
    guest = await platform.recording_bot("visitor", permissions=GUEST)
    g = await join(guest, by_id(meeting, meeting.passcode), state="establishing")  # type: ignore[arg-type]
    async with platform.caller(number="+15550162") as caller:
        call = await caller.dial_in(
            meeting.dial_in_number, meeting.conference_id, meeting.passcode if required else None
        )
        roster = await wait_roster(host, a, lambda es: len(phones(es)) == 1 and len(guests(es)) == 1)
        assert phones(roster)[0]["isInLobby"] and guests(roster)[0]["isInLobby"]
        await call.wait_for_silence(0.3)
        await call.wait_for_speech()  # "please wait ...", then the lobby's hold music (the attendant's voice plays it)
        dialin = platform.node.dialin
        assert dialin is not None and dialin.health()["attending"] == 1

        # dial-in bypass on: the phone is let in, the guest bot (organization scope) still waits
        await platform.update_meeting(
            meeting, lobbyBypassSettings={"scope": "organization", "isDialInBypassEnabled": True}
        )
        roster = await wait_roster(host, a, lambda es: phones(es) and not phones(es)[0]["isInLobby"])
        assert guests(roster)[0]["isInLobby"] is True
        await call.wait_for_silence(0.5, timeout=5)  # the hold music stopped
        await settled(lambda: dialin.health()["attending"] == 0)  # the attendant let go of the phone
        await say(host, a, "Welcome to the meeting.")
        await call.wait_for_speech(timeout=10)  # in the mix: the phone hears the bot
        assert [n.state for n in guest.webhook.for_call(g)] == ["establishing"]

        # everyone: the guest bot is let in as well
        await platform.update_meeting(meeting, lobbyBypassSettings={"scope": "everyone"})
        await guest.webhook.wait_state(g, "established")
        await wait_roster(host, a, lambda es: len(es) == 3 and not any(e["isInLobby"] for e in es))
