"""Live meeting transcriber: joins a meeting by its join link, tells everyone it records (updateRecordingStatus),
turns on live transcription and writes one line per utterance, naming the speaker, to a transcript file.

    BOT_SECRET=... python -m examples.transcriber --node http://127.0.0.1:8000 --tenant contoso.example \
        --app-id <app id> --join-url '<the meeting joinWebUrl>' --out meeting.txt [--listen 127.0.0.1:8083]

The bot needs Calls.JoinGroupCall.All and Calls.AccessMedia.All, and the node `[speech] enabled = true`. Each line
is `[HH:MM:SS] Speaker: text` (time since transcription began); the file is flushed after every line, so
`tail -f` shows the meeting as it goes. The bot stops recording and leaves on Ctrl-C, or ends with the meeting.
While it records, the node also keeps the meeting's transcript and recording for the organizer
(`GET /users/{id}/onlineMeetings/{meetingId}/transcripts`, `.../recordings`).

`run_transcriber()` is the whole bot for programs and tests.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from examples.common import (
    BotSettings,
    meeting_comms,
    meeting_parser,
    parse_meeting_args,
    record_and_transcribe,
    run_bot,
    stop_recording_and_leave,
)
from opencomms.sdk import GraphError, Transcript
from opencomms.sdk.calling import Call, CommunicationsClient

log = logging.getLogger("examples.transcriber")
_OFFSET = re.compile(r"^PT(?:(\d+)H)?(?:(\d+)M)?(?:([\d.]+)S)?$")


def speaker(identity: dict[str, Any]) -> str:
    """A speaker's name: the display name of its user, guest, application or phone, else the number or id."""
    for key in ("user", "guest", "application", "phone"):
        part = identity.get(key)
        if isinstance(part, dict) and (name := part.get("displayName") or part.get("id")):
            return str(name)
    return "Unknown"


def clock(offset: str) -> str:
    """`PT75.4S` -> `00:01:15`."""
    match = _OFFSET.match(offset)
    if match is None:
        return "--:--:--"
    h, m, s = (float(g) if g else 0.0 for g in match.groups())
    total = int(h * 3600 + m * 60 + s)
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


@dataclass(frozen=True, slots=True)
class Line:
    at: str
    speaker: str
    text: str

    def __str__(self) -> str:
        return f"[{self.at}] {self.speaker}: {self.text}"


class Transcriber:
    """Writes the captions of one meeting leg to `out`, one line each."""

    def __init__(self, comms: CommunicationsClient, out: IO[str]) -> None:
        self.comms = comms
        self.out = out
        self.call: Call | None = None
        self.lines: list[Line] = []
        self.changed = asyncio.Condition()
        self.done = asyncio.Event()
        comms.on_call_updated(self._on_updated)
        comms.on_call_ended(self._on_ended)

    async def join(self, join_web_url: str, *, timeout: float = 30.0) -> Call:
        call = await self.comms.join_meeting(join_web_url=join_web_url)
        self.call = call
        await record_and_transcribe(self.comms, call, timeout=timeout)
        log.info("transcribing %s", call.id)
        return call

    async def leave(self) -> None:
        await stop_recording_and_leave(self.call)

    async def wait_lines(self, count: int, *, timeout: float = 20.0) -> list[Line]:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(lambda: len(self.lines) >= count), timeout)
        return list(self.lines)

    async def _on_updated(self, call: Call, note: Any) -> None:
        transcript: Transcript | None = note.transcript
        if self.call is None or call.id != self.call.id or transcript is None or not transcript.text:
            return
        line = Line(clock(transcript.start_offset), speaker(transcript.identity), transcript.text.strip())
        self.out.write(f"{line}\n")
        self.out.flush()
        async with self.changed:
            self.lines.append(line)
            self.changed.notify_all()

    def _on_ended(self, call: Call) -> None:
        if self.call is not None and call.id == self.call.id:
            self.done.set()


@asynccontextmanager
async def run_transcriber(
    settings: BotSettings, join_web_url: str, out: Path, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[Transcriber]:
    """Serve the bot's notifications, join the meeting, record and transcribe into `out`; leaves on exit."""
    with out.open("a", encoding="utf-8") as fh:
        async with meeting_comms(settings, host, port, "/transcriber/calls") as comms:
            bot = Transcriber(comms, fh)
            try:
                await bot.join(join_web_url)
                yield bot
            finally:
                await bot.leave()


async def _main(args: argparse.Namespace) -> int:
    settings = BotSettings.from_args(args)
    host, port = args.listen
    async with run_transcriber(settings, args.join_url, Path(args.out), host=host, port=port) as bot:
        print(f"transcribing into {args.out}; Ctrl-C to stop", flush=True)
        await bot.done.wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = meeting_parser("python -m examples.transcriber", __doc__)
    parser.add_argument("--out", default="transcript.txt", help="the transcript file (appended to)")
    args = parse_meeting_args(parser, argv)
    return run_bot(parser, _main(args), (GraphError, ValueError))  # JoinUrlError is a ValueError


if __name__ == "__main__":
    raise SystemExit(main())
