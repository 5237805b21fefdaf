"""Issue 17's acceptance scenario on a real node: a meeting created over REST (POST /users/{id}/onlineMeetings) with
three phones (a SIPp phone that joins by the meeting's SIP address as an anonymous guest, VirtualCallers that dial
in) and two bots, one application-hosted receiving unmixed audio under the roster's sourceIds.

Phones hear each other and the bots' prompts; a server-muted phone is not heard; a removed phone gets a BYE; a
guest waits in the lobby, is admitted and then hears the meeting; recording status is announced to phones and
shows in every roster entry; delta rosters come in rosterSequenceNumber order; deleting the meeting ends every leg
with the same resultInfo (bots in their `deleted` notification, phones in the BYE's Reason header)."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from opencomms.config import MediaConfig, MeetingsConfig
from opencomms.sdk.media import AudioSocket, LocalMediaSession
from opencomms.testing.caller import VirtualCall
from opencomms.testing.platform import DIAL_IN_NUMBER, TestBot, TestPlatform, default_config
from tests.sipp.sipp import SCENARIO_DIR, run_sipp

from .test_dialin import phones, say
from .test_live_meetings import MEMBER, join, rosters, wait_roster

CALLS = "/communications/calls"
SERVICE_HOSTED = {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}
DELTA = {"callOptions": {"@odata.type": "#microsoft.graph.outgoingCallOptions", "isDeltaRosterEnabled": True}}


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[TestPlatform]:
    config = default_config(str(tmp_path))
    config = dataclasses.replace(
        config,
        media=MediaConfig(recordings_dir=str(tmp_path), app_hosted_allow_private=("127.0.0.1",)),
        meetings=MeetingsConfig(dial_in_number=DIAL_IN_NUMBER, anonymous_sip_guests=True),
    )
    async with TestPlatform(config) as p:
        yield p


async def organizer_meeting(platform: TestPlatform, lobby: dict[str, Any]) -> tuple[TestBot, dict[str, Any]]:
    """A bot with an application access policy for an organizer creates the meeting over REST."""
    node = platform.node
    organizer = node.directory.create_user(platform.tenant_id, "Megan Bowen", upn="megan@contoso.example")
    host = await platform.recording_bot("host", permissions=(*MEMBER, "OnlineMeetings.ReadWrite.All"))
    node.meetings.policies.grant(host.credentials.app_id, organizer.id)
    body = {
        "subject": "Acceptance",
        "lobbyBypassSettings": lobby,
        "joinMeetingIdSettings": {"isPasscodeRequired": False},
    }
    status, meeting, _ = await host.client.request("POST", f"/users/{organizer.id}/onlineMeetings", body)
    assert status == 201, meeting
    meeting["organizerId"] = organizer.id
    return host, meeting


def by_join_id(meeting: dict[str, Any], **extra: Any) -> dict[str, Any]:
    settings = meeting["joinMeetingIdSettings"]
    info = {"@odata.type": "#microsoft.graph.joinMeetingIdMeetingInfo", "joinMeetingId": settings["joinMeetingId"]}
    if settings.get("passcode"):
        info["passcode"] = settings["passcode"]
    return {"requestedModalities": ["audio"], "mediaConfig": SERVICE_HOSTED, "meetingInfo": info, **extra}


async def dial_in(platform: TestPlatform, number: str, meeting: dict[str, Any]) -> tuple[Any, VirtualCall]:
    audio, settings = meeting["audioConferencing"], meeting["joinMeetingIdSettings"]
    caller = platform.caller(number=number, display_name=f"Phone {number[-2:]}")
    await caller.start()
    passcode = settings["passcode"] if settings.get("isPasscodeRequired") else None
    return caller, await caller.dial_in(audio["tollNumber"], audio["conferenceId"], passcode)


def tone(freq: float, seconds: float = 1.2) -> np.ndarray[Any, np.dtype[np.int16]]:
    t = np.arange(int(16000 * seconds)) / 16000
    return (9000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def rms(samples: np.ndarray[Any, Any]) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if samples.size else 0.0


async def unmixed_sources(sock: AudioSocket, seconds: float) -> set[str]:
    """The sourceIds of the unmixed talkers the app-hosted bot got during the next `seconds`."""
    seen: set[str] = set()
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        frame = await sock.receive(timeout=2)
        seen.update(u.source_id for u in frame.unmixed if rms(np.frombuffer(u.pcm, "<i2")) > 300)
    return seen


async def quiet(*calls: VirtualCall, seconds: float = 0.4) -> None:
    await asyncio.gather(*(c.wait_for_silence(seconds) for c in calls))


async def test_phones_and_bots_hear_each_other_and_the_app_hosted_bot_gets_them_under_their_roster_source_ids(
    platform: TestPlatform, tmp_path: Path
) -> None:
    host, meeting = await organizer_meeting(platform, {"scope": "everyone", "isDialInBypassEnabled": True})
    host_call = await join(host, by_join_id(meeting))
    listener = await platform.recording_bot("listener", permissions=MEMBER)
    async with LocalMediaSession() as session:
        await join(listener, by_join_id(meeting, mediaConfig=session.media_config("listener")))
        sock = await session.audio_socket("listener", timeout=5)
        (ca, a), (cb, b) = await asyncio.gather(
            dial_in(platform, "+15550101", meeting), dial_in(platform, "+15550102", meeting)
        )
        try:
            roster = await wait_roster(host, host_call, lambda es: len(phones(es)) == 2)
            entry = {e["info"]["identity"]["phone"]["id"]: e for e in phones(roster)}
            source = {n: e["mediaStreams"][0]["sourceId"] for n, e in entry.items()}
            await quiet(a, b, seconds=1.0)  # the attendant's last prompt is over (its pauses are shorter)

            # the SIPp phone joins by the meeting's SIP address (no credentials: an anonymous guest) and plays the
            # in-band keys 4 7 * after 1 s; both dial-in phones hear them through the mix
            scenario = tmp_path / "guest_inband.xml"
            text = (SCENARIO_DIR / "node_uac_dtmf_inband.xml").read_text()
            scenario.write_text(text.replace('<pause milliseconds="1500"/>', '<pause milliseconds="3000"/>'))
            shutil.copy(SCENARIO_DIR / "node_dtmf_inband.pcap", tmp_path / "node_dtmf_inband.pcap")
            assert platform.node.sip is not None
            sipp = asyncio.create_task(
                asyncio.to_thread(
                    run_sipp,
                    scenario,
                    "127.0.0.1",
                    platform.node.sip.port,
                    service=f"meeting-{meeting['joinMeetingIdSettings']['joinMeetingId']}",
                    call_duration_ms=1000,
                    timeout=20,
                )
            )
            guest = await wait_roster(host, host_call, lambda es: any("guest" in e["info"]["identity"] for e in es))
            assert not next(e for e in guest if "guest" in e["info"]["identity"])["isInLobby"]  # scope everyone
            assert "47*" in await a.wait_for_tones(3, timeout=10)
            assert "47*" in await b.wait_for_tones(3, timeout=10)
            await quiet(a, b)

            # each dial-in phone hears the other; the app-hosted bot gets the talker unmixed under its sourceId
            await a.play_wav(tone(600.0), rate=16000, wait=False)
            await b.wait_for_speech(timeout=5)
            assert source["+15550101"] in await unmixed_sources(sock, 0.8)
            await quiet(a, b)
            await b.play_wav(tone(900.0), rate=16000, wait=False)
            await a.wait_for_speech(timeout=5)
            assert source["+15550102"] in await unmixed_sources(sock, 0.8)
            await quiet(a, b)

            # the service-hosted bot's prompt reaches every phone, and the app-hosted bot's speech too
            await say(host, host_call, "Hello everyone, this is the meeting bot.")
            await asyncio.gather(a.wait_for_speech(timeout=10), b.wait_for_speech(timeout=10))
            await quiet(a, b)
            speech = tone(450.0, 1.0).tobytes()
            for i in range(0, len(speech), 640):
                await sock.send(speech[i : i + 640])
            await asyncio.gather(a.wait_for_speech(timeout=5), b.wait_for_speech(timeout=5))
            result = await sipp  # meanwhile silent (its pcap is over), it hung up
            assert result.ok, result.describe()
            await wait_roster(host, host_call, lambda es: not any("guest" in e["info"]["identity"] for e in es))

        finally:
            await ca.close()
            await cb.close()


async def test_a_server_muted_phone_is_not_heard_and_a_removed_phone_gets_a_bye(platform: TestPlatform) -> None:
    host, meeting = await organizer_meeting(platform, {"scope": "everyone", "isDialInBypassEnabled": True})
    host_call = await join(host, by_join_id(meeting))
    listener = await platform.recording_bot("listener", permissions=MEMBER)
    async with LocalMediaSession() as session:
        await join(listener, by_join_id(meeting, mediaConfig=session.media_config("listener")))
        sock = await session.audio_socket("listener", timeout=5)
        (ca, a), (cb, b) = await asyncio.gather(
            dial_in(platform, "+15550101", meeting), dial_in(platform, "+15550102", meeting)
        )
        try:
            roster = await wait_roster(host, host_call, lambda es: len(phones(es)) == 2)
            entry = {e["info"]["identity"]["phone"]["id"]: e for e in phones(roster)}
            source = {n: e["mediaStreams"][0]["sourceId"] for n, e in entry.items()}
            await quiet(a, b, seconds=1.0)  # the attendant's last prompt is over (its pauses are shorter)

            # server mute: b's audio leaves the mix
            pid = entry["+15550102"]["id"]
            status, _, _ = await host.client.request("POST", f"{CALLS}/{host_call}/participants/{pid}/mute", {})
            assert status == 200
            await wait_roster(host, host_call, lambda es: any(e["id"] == pid and e["isMuted"] for e in es))
            await b.play_wav(tone(900.0, 1.5), rate=16000, wait=False)
            heard = await a.hear(1.2)
            assert rms(heard) < 200, rms(heard)
            assert source["+15550102"] not in await unmixed_sources(sock, 0.3)

            # remove: the phone gets a BYE and leaves the roster
            meetings = platform.node.live_meetings
            meetings.config = dataclasses.replace(meetings.config, remove_participant_apps=(host.credentials.app_id,))
            status, _, _ = await host.client.request("DELETE", f"{CALLS}/{host_call}/participants/{pid}")
            assert status == 204
            await b.wait_ended(timeout=5)
            assert b.ended_by == "far end"
            await wait_roster(host, host_call, lambda es: len(phones(es)) == 1)
        finally:
            await ca.close()
            await cb.close()


async def test_lobby_admission_recording_announcement_delta_rosters_and_delete_ending_every_leg_alike(
    platform: TestPlatform,
) -> None:
    host, meeting = await organizer_meeting(platform, {"scope": "organization", "isDialInBypassEnabled": True})
    host_call = await join(host, by_join_id(meeting, **DELTA))
    classic = await platform.recording_bot("classic", permissions=MEMBER)
    classic_call = await join(classic, by_join_id(meeting))
    cp, phone = await dial_in(platform, "+15550201", meeting)
    host_addr, port = platform.sip_address
    guest_caller = platform.caller(display_name="Gus Guest")
    await guest_caller.start()
    try:
        await wait_roster(host, host_call, lambda es: any("phone" in e["info"]["identity"] for e in es))

        # an anonymous guest by the meeting's SIP address waits in the lobby (scope organization)
        jid = meeting["joinMeetingIdSettings"]["joinMeetingId"]
        guest = await guest_caller.dial(f"sip:meeting-{jid}@{host_addr}:{port}")
        await guest.wait_answered()
        waiting = await wait_roster(
            classic, classic_call, lambda es: any("guest" in e["info"]["identity"] and e["isInLobby"] for e in es)
        )
        gid = next(e["id"] for e in waiting if "guest" in e["info"]["identity"])
        await guest.wait_for_speech()  # "please wait ..."
        await quiet(phone, seconds=1.0)
        await say(host, host_call, "Only members hear this.")
        await phone.wait_for_speech(timeout=10)
        status, _, _ = await host.client.request("POST", f"{CALLS}/{host_call}/participants/{gid}/admit", {})
        assert status == 200
        await wait_roster(classic, classic_call, lambda es: any(e["id"] == gid and not e["isInLobby"] for e in es))
        await quiet(guest, phone)
        await say(host, host_call, "Welcome, guest.")
        await guest.wait_for_speech(timeout=10)  # admitted, the guest hears the meeting
        await quiet(guest, phone)

        # recording status: announced to the phones, in every roster entry
        before = platform.node.announcer.spoken
        body = {"status": "recording", "clientContext": "rec"}
        status, _, _ = await host.client.request("POST", f"{CALLS}/{host_call}/updateRecordingStatus", body)
        assert status == 200
        entries = await wait_roster(
            classic, classic_call, lambda es: all(e["recordingInfo"]["recordingStatus"] == "recording" for e in es)
        )
        assert len(entries) == 4  # two bots, the phone and the guest
        await asyncio.gather(phone.wait_for_speech(timeout=10), guest.wait_for_speech(timeout=10))
        assert platform.node.announcer.spoken == before + 1

        # delta rosters: only changes after the first, in increasing rosterSequenceNumber order
        numbers = [[e["rosterSequenceNumber"] for e in n.resource_data] for n in rosters(host, host_call)]
        flat = [x for batch in numbers for x in batch]
        assert len(numbers) >= 4 and flat == sorted(flat) and len(set(flat)) == len(flat), numbers
        assert all(len(batch) <= 4 for batch in numbers)

        # deleting the meeting over REST ends every leg with the same resultInfo
        path = f"/users/{meeting['organizerId']}/onlineMeetings/{meeting['id']}"
        status, _, _ = await host.client.request("DELETE", path)
        assert status == 204
        ends = []
        for bot, call_id in ((host, host_call), (classic, classic_call)):
            found = await bot.webhook.wait_for(
                lambda n, c=call_id: n.resource_url.endswith(f"/calls/{c}") and n.change_type == "deleted"
            )
            ends.append(found[0].resource_data["resultInfo"])
        assert ends[0] == ends[1] and (ends[0]["code"], ends[0]["subcode"]) == (200, 5300)
        for call in (phone, guest):
            await call.wait_ended(timeout=5)
            assert call.ended_by == "far end"
            assert call.bye_reason is not None and "cause=200;subcode=5300" in call.bye_reason, call.bye_reason
        node = platform.node
        assert node.calls.active_calls == 0
    finally:
        await cp.close()
        await guest_caller.close()
