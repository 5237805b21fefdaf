"""The web client's meeting page in headless Debian Chromium, opened at a meeting's joinWebUrl: a guest waits in the
lobby until a bot admits them; the roster the page shows comes from the node's feed (lobby, admission, the page's
own mute as isMuted in the bot's roster, a bot's server mute, the recording indicator when updateRecordingStatus
says recording); the device picker switches the microphone; a bot removes the browser like a phone. A signed-in
user signs in in the page (authorization code + PKCE), joins past the lobby as a user, and leaves.

Screenshots (gitignored) in `test-output/webrtc/` at the repository root: lobby.png and meeting-control.png.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import aiohttp
import pytest
from playwright import async_api as playwright

from opencomms.domain.meetings import LobbyScope
from opencomms.testing.platform import TestPlatform
from tests.integration.meetings.test_live_meetings import MEMBER, join, wait_roster
from tests.integration.webrtc.browsers import (
    build_bundles,
    chromium,
    join_url,
    meeting_node,
    open_as_guest,
    page_value,
    participant,
    screenshot,
    wait_page,
)
from tests.integration.webrtc.support import final_status, invite

CALLS = "/communications/calls"
SERVICE_HOSTED = {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}


@pytest.fixture(scope="module", autouse=True)
def bundles() -> None:
    build_bundles()


def by_join_id(join_meeting_id: str) -> dict[str, object]:
    info = {"@odata.type": "#microsoft.graph.joinMeetingIdMeetingInfo", "joinMeetingId": join_meeting_id}
    return {"requestedModalities": ["audio"], "mediaConfig": SERVICE_HOSTED, "meetingInfo": info}


async def test_a_guest_waits_in_the_lobby_is_admitted_mutes_sees_recording_and_is_removed_by_a_bot(
    tmp_path: Path,
) -> None:
    async with TestPlatform(meeting_node(tmp_path)) as p, playwright.async_playwright() as pw:
        meeting = p.add_meeting(
            subject="Web standup",
            passcode=None,
            passcode_required=False,
            lobby_scope=LobbyScope.ORGANIZATION,
            conference_id="314159",
        )
        host = await p.recording_bot("host", permissions=MEMBER)
        call = await join(host, by_join_id(meeting.join_meeting_id))
        p.node.live_meetings.config = dataclasses.replace(
            p.node.live_meetings.config, remove_participant_apps=(host.credentials.client_id,)
        )
        async with chromium(pw) as browser:
            page = await open_as_guest(browser, join_url(p.node.public_url, meeting), "Gail Guest")
            assert await page.title() == "Web standup"
            assert "conference id" in await page.locator("#phone").inner_text()

            # a guest waits in the lobby: the page says so, the bot's roster shows it in the lobby
            await wait_page(page, "m.status() === 'lobby'")
            roster = await wait_roster(host, call, lambda es: (e := participant(es, "Gail Guest")) and e["isInLobby"])
            gail = participant(roster, "Gail Guest")
            assert gail is not None and gail["mediaStreams"][0]["sourceId"]
            assert await page_value(page, "m.roster().length") == 1  # the lobby sees only itself
            await screenshot(page, "lobby.png")

            # the bot admits the guest: the page is in the meeting and sees the bot
            status, _, _ = await host.client.request("POST", f"{CALLS}/{call}/participants/{gail['id']}/admit", {})
            assert status == 200
            await wait_page(page, "m.status() === 'in-meeting' && m.roster().some(p => p.kind === 'application')")
            assert await page.locator("#roster").get_attribute("aria-live") == "polite"  # roster changes are spoken
            assert await page.evaluate("document.activeElement.id") == "mute"  # keyboard users land on the controls

            # mute in the page shows in the bot's roster (isMuted) and in the page's
            await page.get_by_role("button", name="Mute").click()
            await wait_roster(host, call, lambda es: (e := participant(es, "Gail Guest")) and e["isMuted"])
            await wait_page(page, "m.roster().some(p => p.me && p.isMuted)")
            assert await page.get_by_role("button", name="Unmute").get_attribute("aria-pressed") == "true"

            # the device picker lists the microphones (enumerateDevices) and switches the one the call sends
            mics = await page.locator("#mic option").all_text_contents()
            assert mics and all(mics), mics
            await page.get_by_label("Microphone").select_option(label=mics[-1])
            await wait_page(page, f"m.microphone() === {mics[-1]!r}")

            # the recording indicator follows updateRecordingStatus
            assert not await page.locator("#recording").is_visible()
            body = {"status": "recording", "clientContext": "rec"}
            status, _, _ = await host.client.request("POST", f"{CALLS}/{call}/updateRecordingStatus", body)
            assert status == 200
            await wait_page(page, "m.recording() === 'recording'")
            assert await page.locator("#recording").is_visible()

            # unmuted in the page; then the bot server-mutes the browser like a phone, and the page shows it
            await page.get_by_role("button", name="Unmute").focus()
            await page.keyboard.press("Space")  # by keyboard
            await wait_roster(host, call, lambda es: (e := participant(es, "Gail Guest")) and not e["isMuted"])
            status, _, _ = await host.client.request(
                "POST", f"{CALLS}/{call}/participants/{gail['id']}/mute", {"clientContext": "m"}
            )
            assert status == 200
            await wait_page(page, "m.roster().some(p => p.me && p.serverMuted)")
            await screenshot(page, "meeting-control.png")

            # the bot removes the browser like a phone: the page's call ends
            status, _, _ = await host.client.request("DELETE", f"{CALLS}/{call}/participants/{gail['id']}")
            assert status == 204
            await wait_page(page, "m.status() === 'left'")
            await wait_roster(host, call, lambda es: participant(es, "Gail Guest") is None)


async def test_a_signed_in_user_signs_in_in_the_page_with_pkce_and_joins_past_the_lobby_as_a_user(
    tmp_path: Path,
) -> None:
    async with TestPlatform(meeting_node(tmp_path)) as p, playwright.async_playwright() as pw:
        directory = p.node.directory
        user = directory.create_user(p.tenant_id, "Sam Signed", upn="sam@contoso.example")
        directory.set_password(user.id, "correct horse battery staple")
        app, _ = directory.create_app(p.tenant_id, "Meeting page")
        redirect = f"{p.node.public_url}/web/meeting"
        directory.update_app(dataclasses.replace(app, redirect_uris=(redirect,), public_client=True))
        meeting = p.add_meeting(
            subject="Signed in", passcode=None, passcode_required=False, lobby_scope=LobbyScope.ORGANIZATION
        )
        host = await p.recording_bot("host", permissions=MEMBER)
        call = await join(host, by_join_id(meeting.join_meeting_id))
        async with chromium(pw) as browser:
            page = await browser.new_page()
            await page.goto(join_url(p.node.public_url, meeting))
            await page.get_by_role("button", name="Sign in").click()
            await page.get_by_label("User name").fill("sam@contoso.example")
            await page.get_by_label("Password").fill("correct horse battery staple")
            await page.get_by_role("button", name="Sign in").click()  # the node's sign-in form
            # back on /web/meeting: the page redeems the code with its verifier and joins with the access token
            await wait_page(page, "m.status() === 'in-meeting'")
            assert "code=" not in page.url  # the code left the address bar
            roster = await wait_roster(host, call, lambda es: participant(es, "Sam Signed") is not None)
            sam = participant(roster, "Sam Signed")
            assert sam is not None and sam["info"]["identity"]["user"]["id"] == user.id and not sam["isInLobby"]
            assert await page_value(page, "m.roster().some(p => p.me && p.kind === 'user')")

            # Leave ends the browser's participation for the bot too
            await page.get_by_role("button", name="Leave").click()
            await wait_page(page, "m.status() === 'left'")
            await wait_roster(host, call, lambda es: participant(es, "Sam Signed") is None)


async def test_a_real_online_meetings_join_web_url_opens_the_join_page_and_a_guest_gets_in_by_it(
    tmp_path: Path,
) -> None:
    """No browser: the onlineMeeting resource's own joinWebUrl serves the page, and its guest ticket joins."""
    async with TestPlatform(meeting_node(tmp_path)) as p, aiohttp.ClientSession() as http:
        meeting = await p.create_meeting(subject="Planning")
        async with http.get(meeting.join_web_url) as resp:
            page = await resp.text()
            assert resp.status == 200 and "<title>Planning</title>" in page
        target = f"sip:meeting-{meeting.join_meeting_id}@"
        assert f'data-target="{target}' in page and 'src="/web/static/meeting.js"' in page
        body = {"thread": meeting.thread_id, "displayName": "Gus"}
        async with http.post(f"{p.node.public_url}/web/join", json=body) as resp:
            assert resp.status == 201
            issued = await resp.json()
        assert issued["target"].startswith(target)
        async with http.ws_connect(f"{issued['wsUrl']}?ticket={issued['ticket']}", protocols=("sip",)) as sip:
            await sip.send_str(invite(issued["target"]))
            status, _ = await final_status(sip)
            assert status == 200  # in the lobby (a guest), answered: the link holder needs no passcode
