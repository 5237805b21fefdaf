"""Live meeting translator: joins a meeting by its join link, tells everyone it records (live transcription needs
it), and speaks the Spanish translation of every English utterance it hears into the meeting.

    BOT_SECRET=... python -m examples.translator --node http://127.0.0.1:8000 --tenant contoso.example \
        --app-id <app id> --join-url '<the meeting joinWebUrl>' [--voice es] [--listen 127.0.0.1:8084]

The bot needs Calls.JoinGroupCall.All and Calls.AccessMedia.All, the node `[speech] enabled = true`, and Debian's
`apertium` with the `apertium-eng-spa` pair (a missing pair stops the bot at start with one line). The node
transcribes each other participant (Whisper tiny.en, English); the bot translates each utterance with
`apertium eng-spa` and plays it as a text prompt with espeak-ng's Spanish voice (`--voice`), one after another.
It does not translate its own voice (the node does not transcribe a bot's own leg for it).

The reverse (Spanish speech to English) needs a Spanish recognizer: the node's live transcription runs one
English model; see examples/README.md for what exists offline and what is left to do.

`run_translator()` is the whole bot for programs and tests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from examples.common import BotSettings, host_port, run_bot
from examples.transcriber.bot import speaker
from examples.translator.apertium import Apertium, TranslationError
from opencomms.sdk import GraphError, Transcript, serve_receiver, text_prompt
from opencomms.sdk.calling import Call, CallEnded, CommunicationsClient, OperationFailed

log = logging.getLogger("examples.translator")

MAX_BACKLOG = 8
"""Utterances waiting to be spoken; beyond that the oldest is dropped (a translation late by minutes is useless)."""


@dataclass(frozen=True, slots=True)
class Translation:
    speaker: str
    heard: str
    spoken: str


class Translator:
    """Translates the captions of one meeting leg and speaks them into the meeting, in order."""

    def __init__(self, comms: CommunicationsClient, apertium: Apertium, *, voice: str = "es") -> None:
        self.comms = comms
        self.apertium = apertium
        self.voice = voice
        self.call: Call | None = None
        self.translations: list[Translation] = []
        self.changed = asyncio.Condition()
        self.done = asyncio.Event()
        self._backlog: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._speaker: asyncio.Task[None] | None = None
        comms.on_call_updated(self._on_updated)
        comms.on_call_ended(self._on_ended)

    async def join(self, join_web_url: str, *, timeout: float = 30.0) -> Call:
        call = await self.comms.join_meeting(join_web_url=join_web_url)
        self.call = call
        await call.wait_state("established", timeout=timeout)
        await call.update_recording_status("recording")  # transcription in a meeting needs it (Graph's rule)
        await self.comms.client.start_transcription(call.id)
        self._speaker = asyncio.create_task(self._speak_loop(call), name="translator-speaker")
        log.info("translating %s", call.id)
        return call

    async def leave(self) -> None:
        if self._speaker is not None:
            self._speaker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._speaker
        call = self.call
        if call is None or call.terminated.is_set():
            return
        with contextlib.suppress(GraphError, OperationFailed, CallEnded, TimeoutError):
            await call.update_recording_status("notRecording")
        with contextlib.suppress(GraphError, TimeoutError):
            await call.hang_up()

    async def wait_translation(self, heard: str, *, timeout: float = 30.0) -> Translation:
        """The first translation spoken of an utterance whose text contains `heard` (case-insensitive)."""

        def found() -> Translation | None:
            return next((t for t in self.translations if heard.lower() in t.heard.lower()), None)

        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(lambda: found() is not None), timeout)
        done = found()
        assert done is not None
        return done

    async def _on_updated(self, call: Call, note: Any) -> None:
        transcript: Transcript | None = note.transcript
        if self.call is None or call.id != self.call.id or transcript is None or not transcript.text.strip():
            return
        if self._backlog.qsize() >= MAX_BACKLOG:
            dropped = self._backlog.get_nowait()
            log.warning("translation backlog full: dropped %r", dropped[1])
        self._backlog.put_nowait((speaker(transcript.identity), transcript.text.strip()))

    async def _speak_loop(self, call: Call) -> None:
        while True:
            who, heard = await self._backlog.get()
            try:
                spoken = await self.apertium.translate(heard)
            except TranslationError as exc:
                log.warning("not translated: %s", exc)
                continue
            if not spoken:
                continue
            log.info("%s: %r -> %r", who, heard, spoken)
            try:
                await call.play_prompt([text_prompt(spoken, self.voice, "es")])
            except (GraphError, OperationFailed, TimeoutError) as exc:
                log.warning("could not speak the translation: %s", exc)
                continue
            except CallEnded:
                return
            async with self.changed:
                self.translations.append(Translation(who, heard, spoken))
                self.changed.notify_all()

    def _on_ended(self, call: Call) -> None:
        if self.call is not None and call.id == self.call.id:
            self.done.set()


@asynccontextmanager
async def run_translator(
    settings: BotSettings,
    join_web_url: str,
    *,
    apertium: Apertium | None = None,
    voice: str = "es",
    host: str = "127.0.0.1",
    port: int = 0,
) -> AsyncIterator[Translator]:
    """Check the Apertium pair, serve the bot's notifications, join, record and translate; leaves on exit."""
    apertium = apertium or Apertium("eng-spa")
    await asyncio.to_thread(apertium.check)  # a missing pair is a configuration error, before joining
    async with settings.client() as client:
        comms = CommunicationsClient(client, callback_uri="", app_id=settings.app_id, jwks_url=settings.jwks_url)
        async with comms, serve_receiver(comms.receiver, host, port) as base:
            comms.callback_uri = f"{base}/translator/calls"
            bot = Translator(comms, apertium, voice=voice)
            try:
                await bot.join(join_web_url)
                yield bot
            finally:
                await bot.leave()


async def _main(args: argparse.Namespace) -> int:
    settings = BotSettings.from_args(args)
    host, port = args.listen
    apertium = Apertium(args.pair)
    async with run_translator(settings, args.join_url, apertium=apertium, voice=args.voice, host=host, port=port) as b:
        print(f"translating ({args.pair}); Ctrl-C to stop", flush=True)
        await b.done.wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.translator", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--join-url", default=os.environ.get("MEETING_JOIN_URL"), help="the meeting's joinWebUrl [MEETING_JOIN_URL]"
    )
    parser.add_argument("--pair", default="eng-spa", help="the Apertium pair (default eng-spa: English to Spanish)")
    parser.add_argument("--voice", default="es", help="the espeak-ng voice that speaks the translation")
    parser.add_argument("--listen", type=host_port, default=("127.0.0.1", 0), help="HOST:PORT for notifications")
    BotSettings.add_arguments(parser)
    args = parser.parse_args(argv)
    if not args.join_url:
        parser.error("--join-url (or MEETING_JOIN_URL) is required")
    return run_bot(parser, _main(args), (GraphError, ValueError))  # TranslationConfigError is a ValueError


if __name__ == "__main__":
    raise SystemExit(main())
