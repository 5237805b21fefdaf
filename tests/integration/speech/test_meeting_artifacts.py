"""Meeting transcripts and recordings on Graph's API, on a real node: a bot records and transcribes a real
onlineMeeting, two phones speak (espeak-ng voices), and an application with OnlineMeetingTranscript.Read.All /
OnlineMeetingRecording.Read.All (and an access policy on the organizer) lists the meeting's callTranscript and
callRecording and downloads them: VTT whose voice tags name each phone, and the mix as WAV. Nothing is kept of a
meeting that never recorded; the permissions and the policy are Graph's."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from opencomms.config import MediaConfig, SpeechConfig
from opencomms.media.wav import decode_wav
from opencomms.subscriptions.model import iso
from opencomms.testing import TestPlatform
from opencomms.testing.harness import GraphClient
from opencomms.testing.platform import TestMeeting, default_config
from tests.integration.speech.test_live_transcription import MEMBER, SILENCE, joined, speak

pytestmark = pytest.mark.slow

CALLS = "/communications/calls"
READ_ALL = ("OnlineMeetingTranscript.Read.All", "OnlineMeetingRecording.Read.All")


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[TestPlatform]:
    base = default_config(str(tmp_path))
    config = dataclasses.replace(
        base,
        speech=SpeechConfig(enabled=True),
        media=MediaConfig(recordings_dir=str(tmp_path)),
        meetings=dataclasses.replace(base.meetings, transcript_grace=0.5, record_meetings=True),
    )
    async with TestPlatform(config) as p:
        yield p


async def reader(platform: TestPlatform, permissions: tuple[str, ...], *, policy: bool = True) -> GraphClient:
    app, secret = platform.node.directory.create_app(platform.tenant_id, "Archive", permissions=permissions)
    if policy:
        platform.node.meetings.policies.grant(app.id, None)
    client = GraphClient(platform.base_url, platform.tenant_id, app.id, secret)
    return await platform._stack.enter_async_context(client)


async def listed(client: GraphClient, meeting: TestMeeting, collection: str, count: int = 1) -> list[Any]:
    url = f"/users/{meeting.organizer_id}/onlineMeetings/{meeting.id}/{collection}"
    for _ in range(100):  # the transcript is saved transcript_grace after the recording stops
        status, body, _ = await client.request("GET", url)
        assert status == 200, body
        if len(body["value"]) >= count:
            return list(body["value"])
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {collection}")


async def test_a_recorded_meeting_has_a_transcript_naming_its_speakers_and_a_recording(platform: TestPlatform) -> None:
    meeting = await platform.create_meeting(
        lobbyBypassSettings={"scope": "everyone", "isDialInBypassEnabled": True},
        joinMeetingIdSettings={"isPasscodeRequired": False},
    )
    bot = await platform.recording_bot("notes", permissions=MEMBER)
    subscriptions = platform.node.subscriptions

    async def no_handshake(url: str) -> None:
        return None

    subscriptions.validate = no_handshake  # type: ignore[method-assign]
    watcher = {
        "changeType": "created",
        "notificationUrl": "http://127.0.0.1:9/notify",
        "resource": "/communications/onlineMeetings/getAllTranscripts",
        "expirationDateTime": iso(platform.node.clock() + 3600),
    }
    await subscriptions.create(platform.tenant_id, bot.credentials.app_id, watcher)
    call_id = await joined(bot, meeting)
    lines = {
        "+15550101": ("Please hold while I transfer you to a colleague.", "en+f2"),
        "+15550102": ("Can you confirm the time of my appointment?", "en-us+f3"),
    }
    async with (
        platform.caller(number="+15550101", display_name="Alice") as alice,
        platform.caller(number="+15550102", display_name="Bob") as bob,
    ):
        calls = {
            "+15550101": await alice.dial_in(platform.dial_in_number, meeting.conference_id),
            "+15550102": await bob.dial_in(platform.dial_in_number, meeting.conference_id),
        }
        for call in calls.values():
            await call.wait_for_silence(0.5)
        status, _, _ = await bot.client.request(
            "POST", f"{CALLS}/{call_id}/updateRecordingStatus", {"status": "recording"}
        )
        assert status == 200
        status, _, _ = await bot.client.request("POST", f"{CALLS}/{call_id}/startTranscription", {})
        assert status == 200
        for call in calls.values():
            await call.wait_for_silence(0.5)  # the recording announcement is over
        for number, (text, voice) in lines.items():
            await calls[number].play_wav(speak(text, voice))
            await calls[number].play_wav(SILENCE)
        found = await bot.webhook.wait_for(lambda n: "transcript" in n.resource_data, count=2, timeout=15)
        heard = [n.resource_data["transcript"] for n in found]
        status, _, _ = await bot.client.request(
            "POST", f"{CALLS}/{call_id}/updateRecordingStatus", {"status": "notRecording"}
        )
        assert status == 200

    archive = await reader(platform, READ_ALL)
    [transcript] = await listed(archive, meeting, "transcripts")
    assert subscriptions.sent == 1  # the getAllTranscripts subscription was told (recordings: nobody asked)
    base = f"/users/{meeting.organizer_id}/onlineMeetings/{meeting.id}"
    assert transcript["meetingId"] == meeting.id
    assert transcript["meetingOrganizer"]["user"]["id"] == meeting.organizer_id
    assert transcript["transcriptContentUrl"].endswith(f"{base}/transcripts/{transcript['id']}/content")
    assert transcript["createdDateTime"] < transcript["endDateTime"]
    status, one, _ = await archive.request("GET", f"{base}/transcripts/{transcript['id']}")
    assert status == 200 and one["id"] == transcript["id"] and "$entity" in one["@odata.context"]

    status, vtt, headers = await archive.request("GET", f"{base}/transcripts/{transcript['id']}/content")
    assert status == 200 and headers["Content-Type"].startswith("text/vtt"), headers
    assert vtt.startswith("WEBVTT")
    assert vtt.index("<v Alice>") < vtt.index("<v Bob>"), vtt  # the phones' display names, in speaking order
    names = {t["identity"]["phone"].get("displayName") or t["identity"]["phone"]["id"] for t in heard}
    for t in heard:  # every caption the bot got is in the transcript, under its speaker's name
        name = t["identity"]["phone"].get("displayName") or t["identity"]["phone"]["id"]
        assert f"<v {name}>{t['text'].strip()}</v>" in vtt, vtt
    assert len(names) == 2 and vtt.count("<v ") == 2, vtt

    [recording] = await listed(archive, meeting, "recordings")
    assert recording["contentCorrelationId"] == transcript["contentCorrelationId"]
    status, wav, headers = await archive.request("GET", f"{base}/recordings/{recording['id']}")
    assert status == 200 and wav["recordingContentUrl"].endswith("/content")
    async with archive._session.get(  # type: ignore[union-attr]
        f"{platform.base_url}/v1.0{base}/recordings/{recording['id']}/content",
        headers={"Authorization": f"Bearer {archive.token}"},
    ) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "audio/wav"
        samples = decode_wav(await resp.read())
    assert len(samples) > 16000 * 3  # both sentences were said while recording
    assert int(np.abs(samples).max()) > 1000  # the phones are in the mix

    # Graph's rules: the permission, the access policy, the organizer's own meetings
    only_meetings = await reader(platform, ("OnlineMeetings.Read.All",))
    status, err, _ = await only_meetings.request("GET", f"{base}/transcripts")
    assert status == 403 and "OnlineMeetingTranscript.Read.All" in err["error"]["message"]
    transcripts_only = await reader(platform, ("OnlineMeetingTranscript.Read.All",))
    status, _, _ = await transcripts_only.request("GET", f"{base}/recordings")
    assert status == 403
    no_policy = await reader(platform, READ_ALL, policy=False)
    status, _, _ = await no_policy.request("GET", f"{base}/transcripts")
    assert status == 403
    other = await platform.create_meeting()
    status, _, _ = await archive.request(
        "GET", f"/users/{other.organizer_id}/onlineMeetings/{other.id}/transcripts/{transcript['id']}"
    )
    assert status == 404  # another meeting's transcript id is not found there
    status, body, _ = await archive.request("GET", f"/users/{other.organizer_id}/onlineMeetings/{other.id}/recordings")
    assert status == 200 and body["value"] == []  # never recorded: nothing kept
    status, _, _ = await archive.request("GET", f"{base}/transcripts/{recording['id']}")
    assert status == 404  # a recording id is not a transcript

    # retention: past the node's recording_max_age, the purge deletes both (files too)
    store = platform.node.meeting_artifacts.artifacts
    files = [store.dir / f"{a['id']}.{ext}" for a, ext in ((transcript, "vtt"), (recording, "wav"))]
    assert all(f.exists() for f in files)
    store.clock = lambda: platform.node.clock() + platform.node.config.media.recording_max_age + 1
    assert store.purge_due() == 2
    assert not any(f.exists() for f in files)
