"""The compliance recorder in a real meeting on a real node: it joins by the joinWebUrl with application-hosted
media, sets the recording status, and writes the mix plus one track per speaker: a phone that dialed in and a bot
that speaks a prompt, each loud in its own track only while it speaks, both in the mix. Tracks keep nothing before
the recording status is set; old recordings are purged."""

from __future__ import annotations

import json
import subprocess
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from examples.compliance_recorder.bot import SILENT, ComplianceRecorder, Tracks, purge, run_recorder

from opencomms.media.wav import decode_wav
from opencomms.sdk import text_prompt
from opencomms.sdk.media import AudioFrame, UnmixedAudio
from opencomms.testing.platform import TestPlatform
from tests.examples.conftest import settings_for

MEMBER = ("Calls.JoinGroupCall.All", "Calls.AccessMedia.All", "Calls.InitiateGroupCall.All")


def speak(text: str, voice: str = "en+f2") -> npt.NDArray[np.int16]:
    wav = subprocess.run(["espeak-ng", "--stdout", "-v", voice, text], capture_output=True, check=True).stdout
    return decode_wav(wav)


def read(path: Path) -> npt.NDArray[np.int16]:
    with wave.open(str(path)) as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)


def active(samples: npt.NDArray[np.int16]) -> npt.NDArray[np.bool_]:
    """Per 20 ms frame: is it louder than about -40 dBFS?"""
    frames = samples[: samples.size // 320 * 320].reshape(-1, 320).astype(np.float64)
    return np.asarray(np.sqrt((frames**2).mean(axis=1)) > 300)


def test_tracks_stay_aligned_to_the_mix_and_old_recordings_go(tmp_path: Path) -> None:
    tracks = Tracks()
    a = b"\x01\x00" * 320
    tracks.add(AudioFrame(a, 1_000_000, 0))
    tracks.add(AudioFrame(a, 1_200_000, 1, (UnmixedAudio("7", a),)))
    tracks.add(AudioFrame(a, 1_200_000, 1))  # repeated: ignored
    tracks.add(AudioFrame(a, 1_600_000, 3))  # the node sent nothing for one frame: silence there
    assert tracks.mix == a + a + SILENT + a and tracks.track("7") == SILENT + a + SILENT + SILENT
    old, new = tmp_path / "old", tmp_path / "new"
    for folder, due in ((old, time.time() - 1), (new, time.time() + 60)):
        folder.mkdir()
        (folder / "manifest.json").write_text(json.dumps({"deleteAfter": due}))
    assert purge(tmp_path, time.time()) == 1 and not old.exists() and new.exists()


@pytest.mark.slow
async def test_records_each_speaker_on_its_own_track_and_the_mix(platform: TestPlatform, tmp_path: Path) -> None:
    meeting = await platform.create_meeting(
        lobbyBypassSettings={"scope": "everyone", "isDialInBypassEnabled": True},
        joinMeetingIdSettings={"isPasscodeRequired": False},
    )
    creds = await platform.register_bot("recorder", permissions=MEMBER, display_name="Recorder")
    async with platform.caller(number="+15550101", display_name="Alice") as alice:
        phone = await alice.dial_in(platform.dial_in_number, meeting.conference_id)
        bob_creds = await platform.register_bot("bob", permissions=MEMBER, display_name="Bob")
        bob = await platform.calling_client(bob_creds)
        bob_call = await bob.join_meeting(join_meeting_id=meeting.join_meeting_id, passcode=meeting.passcode)
        await bob_call.wait_state("established")
        await phone.wait_for_silence(1.0)  # the phone's announcements are over (a phone hearing one is not heard)
        async with run_recorder(settings_for(platform, creds), meeting.join_web_url, tmp_path) as recorder:
            assert recorder.recording
            await phone.wait_for_speech()  # "this meeting is being recorded"
            await phone.wait_for_silence(1.0)
            await phone.play_wav(speak("Please hold while I transfer you to a colleague."))
            await phone.wait_for_silence(0.3)
            await bob_call.play_prompt([text_prompt("Remember to lock the door.", "en-us+m3")])
        folder = recorder.folder
    assert folder is not None
    manifest = json.loads((folder / "manifest.json").read_text())
    by_name = {s["name"]: s for s in manifest["speakers"]}
    assert {"Alice", "Bob"} <= set(by_name), manifest
    mix = read(folder / "mix.wav")
    alice_track, bob_track = (read(folder / by_name[n]["file"]) for n in ("Alice", "Bob"))
    assert len(alice_track) == len(bob_track) == len(mix)  # aligned
    alice_on, bob_on, mix_on = (active(x) for x in (alice_track, bob_track, mix))
    assert alice_on.sum() >= 50 and bob_on.sum() >= 50  # each spoke at least a second on their own track
    assert (alice_on & bob_on).sum() <= 5  # one after the other: each track holds only its speaker
    assert (mix_on[alice_on]).mean() > 0.9 and (mix_on[bob_on]).mean() > 0.9  # both are in the mix
    assert manifest["deleteAfter"] > time.time() + 86400


async def test_nothing_is_kept_before_the_recording_status_is_set(tmp_path: Path) -> None:
    recorder = ComplianceRecorder(None, None, tmp_path, 60)  # type: ignore[arg-type]
    a = b"\x01\x00" * 320

    async def frames() -> AsyncIterator[AudioFrame]:
        yield AudioFrame(a, 0, 0)  # before updateRecordingStatus succeeded
        recorder.recording = True
        yield AudioFrame(a, 200_000, 1)

    await recorder._read(frames())
    assert recorder.tracks.frames == 1
