"""Compliance recorder: joins a meeting by its join link with application-hosted media, sets the meeting's
recording status to `recording`, and only once that succeeded keeps what it hears: one track per speaker (each
participant's own audio, aligned to the mix) and the mix, as WAV files with a manifest; recordings are deleted when
their retention has passed.

    BOT_SECRET=... python -m examples.compliance_recorder --node http://127.0.0.1:8000 --tenant contoso.example \
        --app-id <app id> --join-url '<the meeting joinWebUrl>' --out recordings/ [--keep-days 30]

The bot needs Calls.JoinGroupCall.All and Calls.AccessMedia.All. Nothing is written before updateRecordingStatus
succeeded (Graph's rule: media is kept only after the meeting is told); a failed status change leaves the meeting
without a recording. On Ctrl-C, or when the meeting ends, it writes `<out>/<start time>-<call id>/`: `mix.wav`,
`<speaker>-<sourceId>.wav` per speaker (16 kHz mono), `manifest.json` (speakers, times, `deleteAfter`). At start
and every hour it deletes recordings whose `deleteAfter` has passed.

`run_recorder()` is the whole bot for programs and tests; `Tracks` is the pure track keeper.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import re
import shutil
import time
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from examples.common import (
    BotSettings,
    meeting_comms,
    meeting_parser,
    parse_meeting_args,
    run_bot,
    stop_recording_and_leave,
)
from opencomms.sdk import GraphError
from opencomms.sdk.calling import Call, CommunicationsClient, OperationFailed
from opencomms.sdk.media import FRAME_BYTES, AudioFrame, LocalMediaSession, MediaClosed

log = logging.getLogger("examples.compliance_recorder")

SAMPLE_RATE = 16000
SILENT = bytes(FRAME_BYTES)


class Tracks:
    """The mix and each speaker's track of one recording, placed by the frames' timestamps (the node sends no
    frame while the bot hears nothing); every track is aligned to the mix, silence as zeros. Pure: fed AudioFrames,
    asked for bytes."""

    TICKS_PER_FRAME = 200_000
    """AudioFrame.timestamp is in 100 ns ticks."""

    def __init__(self) -> None:
        self.mix = bytearray()
        self.speakers: dict[str, bytearray] = {}
        self.origin: int | None = None

    @property
    def frames(self) -> int:
        return len(self.mix) // FRAME_BYTES

    def add(self, frame: AudioFrame) -> None:
        if self.origin is None:
            self.origin = frame.timestamp
        index = (frame.timestamp - self.origin) // self.TICKS_PER_FRAME
        if index < self.frames:  # a late or repeated frame: its place is taken
            return
        self.mix += SILENT * (index - self.frames)
        for part in frame.unmixed:
            track = self.speakers.setdefault(part.source_id, bytearray())
            track += SILENT * (index - len(track) // FRAME_BYTES)  # silent until now
            track += part.pcm
        self.mix += frame.pcm

    def track(self, source_id: str) -> bytes:
        track = self.speakers[source_id]
        return bytes(track + SILENT * (self.frames - len(track) // FRAME_BYTES))


def write_wav(path: Path, pcm: bytes) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm)


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text)[:64] or "unknown"


def purge(out: Path, now: float) -> int:
    """Delete the recordings under `out` whose manifest's `deleteAfter` has passed; returns how many."""
    deleted = 0
    for manifest in out.glob("*/manifest.json"):
        try:
            due = float(json.loads(manifest.read_text())["deleteAfter"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if due <= now:
            shutil.rmtree(manifest.parent, ignore_errors=True)
            deleted += 1
    return deleted


class ComplianceRecorder:
    def __init__(self, comms: CommunicationsClient, media: LocalMediaSession, out: Path, keep_seconds: float) -> None:
        self.comms = comms
        self.media = media
        self.out = out
        self.keep_seconds = keep_seconds
        self.call: Call | None = None
        self.tracks = Tracks()
        self.recording = False
        """True once updateRecordingStatus succeeded: only then are frames kept."""
        self.started_at = 0.0
        self.folder: Path | None = None
        self._reader: asyncio.Task[None] | None = None

    async def join(self, join_web_url: str, *, timeout: float = 30.0) -> Call:
        key = f"rec-{int(time.time() * 1000)}"
        call = await self.comms.join_meeting(join_web_url=join_web_url, media_config=self.media.media_config(key))
        self.call = call
        await call.wait_state("established", timeout=timeout)
        sock = await self.media.audio_socket(key, timeout=timeout)
        self._reader = asyncio.get_running_loop().create_task(self._read(sock))
        await call.update_recording_status("recording")  # raises if refused: nothing is ever kept then
        self.started_at = time.time()
        self.recording = True
        log.info("recording %s", call.id)
        return call

    async def _read(self, sock: Any) -> None:
        with contextlib.suppress(MediaClosed):
            async for frame in sock:
                if self.recording:
                    self.tracks.add(frame)

    async def stop(self) -> Path | None:
        """Stop recording, tell the meeting, leave, write the files; returns the recording's folder (None: nothing
        was recorded)."""
        call, was = self.call, self.recording
        self.recording = False
        await stop_recording_and_leave(call, recording=was)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if not was or call is None or self.folder is not None:
            return self.folder
        self.folder = self._write(call)
        return self.folder

    def _names(self, call: Call) -> dict[str, str]:
        names: dict[str, str] = {}
        for p in call.participants:
            identity = next((v for v in p.identity.values() if isinstance(v, dict)), {})
            name = str(identity.get("displayName") or identity.get("id") or p.id)
            for source in p.source_ids:
                names[source] = name
        return names

    def _write(self, call: Call) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.started_at))
        folder = self.out / f"{stamp}-{safe_name(call.id)}"
        folder.mkdir(parents=True, exist_ok=True)
        write_wav(folder / "mix.wav", bytes(self.tracks.mix))
        names = self._names(call)
        speakers = []
        for source in sorted(self.tracks.speakers):
            name = names.get(source, "unknown")
            file = f"{safe_name(name)}-{safe_name(source)}.wav"
            write_wav(folder / file, self.tracks.track(source))
            speakers.append({"sourceId": source, "name": name, "file": file})
        manifest = {
            "callId": call.id,
            "recordingStatusSetAt": self.started_at,
            "seconds": self.tracks.frames / 50,
            "mix": "mix.wav",
            "speakers": speakers,
            "deleteAfter": time.time() + self.keep_seconds,
        }
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
        log.info("recording written to %s", folder)
        return folder


@asynccontextmanager
async def run_recorder(
    settings: BotSettings,
    join_web_url: str,
    out: Path,
    *,
    keep_seconds: float = 30 * 86400,
    host: str = "127.0.0.1",
    port: int = 0,
) -> AsyncIterator[ComplianceRecorder]:
    """Join and record; on exit stop recording, leave and write the files (see `ComplianceRecorder.folder`)."""
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread(purge, out, time.time())
    async with meeting_comms(settings, host, port, "/recorder/calls") as comms, LocalMediaSession(host, 0) as media:
        recorder = ComplianceRecorder(comms, media, out, keep_seconds)
        try:
            await recorder.join(join_web_url)
            yield recorder
        finally:
            await recorder.stop()


async def _main(args: argparse.Namespace) -> int:
    settings = BotSettings.from_args(args)
    host, port = args.listen
    out = Path(args.out)
    async with run_recorder(
        settings, args.join_url, out, keep_seconds=args.keep_days * 86400, host=host, port=port
    ) as rec:
        print("recording; Ctrl-C to stop", flush=True)
        assert rec.call is not None
        while not rec.call.terminated.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(rec.call.terminated.wait(), 3600)
            purge(out, time.time())
    print(f"written to {rec.folder}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = meeting_parser("python -m examples.compliance_recorder", __doc__)
    parser.add_argument("--out", default="recordings", help="the folder recordings are written under")
    parser.add_argument("--keep-days", type=float, default=30.0, help="days a recording is kept")
    args = parse_meeting_args(parser, argv)
    return run_bot(parser, _main(args), (GraphError, OperationFailed, ValueError))  # JoinUrlError is a ValueError


if __name__ == "__main__":
    raise SystemExit(main())
