"""Speech-driven IVR on service-hosted media: it answers, asks "Say sales or support", listens with the node's
live transcription and transfers the caller to the department named; anything else is asked again, and after
`--tries` misses it says goodbye.

    BOT_SECRET=... python -m examples.speech_ivr --node http://127.0.0.1:8000 --tenant contoso.example \
        --app-id <app id> --sales-app <app id> --support-app <app id> [--listen 127.0.0.1:8084]

The bot needs Calls.AccessMedia.All (prompts, transcription), the node `[speech] enabled = true`, and its callback
URL (printed as `READY <url>`) registered on its application. Departments are applications (bots) reached by
transfer; `route()` is the pure word matcher. Each outcome is printed as a line: `routed <dept>`, `missed <text>`,
`gave up`.

`run_speech_ivr()` is the whole bot for programs and tests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from examples.common import BotSettings, SettingsError, host_port, serve_until_signalled, setup_logging
from opencomms.sdk import GraphError, Transcript, application_target, serve_receiver, text_prompt
from opencomms.sdk.calling import Call, CallEnded, CommunicationsClient, OperationFailed

log = logging.getLogger("examples.speech_ivr")

QUESTION = "Welcome. Please say sales or support."
SORRY = "Sorry, I did not catch that."
GOODBYE = "I could not understand you. Goodbye."
WORDS: dict[str, tuple[str, ...]] = {
    "sales": ("sales", "sale", "sails", "selling", "buy"),
    "support": ("support", "supports", "help", "technical"),
}
"""The words (and what the recognizer sometimes hears instead) that choose each department."""


def route(text: str, words: Mapping[str, tuple[str, ...]] = WORDS) -> str | None:
    """The one department `text` names, or None (none, or more than one)."""
    said = set(re.findall(r"[a-z]+", text.lower()))
    chosen = {dept for dept, names in words.items() if said & set(names)}
    return chosen.pop() if len(chosen) == 1 else None


@dataclass(frozen=True, slots=True)
class Outcome:
    """`routed` (detail: the department), `missed` (what was heard) or `gave up`."""

    kind: str
    call_id: str
    detail: str = ""


class SpeechIvr:
    def __init__(
        self,
        comms: CommunicationsClient,
        departments: Mapping[str, str],
        *,
        tries: int = 3,
        listen_seconds: float = 8.0,
        voice: str | None = None,
    ) -> None:
        self.comms = comms
        self.departments = dict(departments)
        """Department -> application id to transfer to."""
        self.tries = tries
        self.listen_seconds = listen_seconds
        self.voice = voice
        self.outcomes: list[Outcome] = []
        self._changed = asyncio.Condition()
        self._heard: dict[str, asyncio.Queue[Transcript]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        comms.on_incoming_call(self._incoming)
        comms.on_call_updated(self._updated)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def wait_outcome(self, kind: str, *, timeout: float = 20.0) -> Outcome:
        def found() -> Outcome | None:
            return next((o for o in self.outcomes if o.kind == kind), None)

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: found() is not None), timeout)
        outcome = found()
        assert outcome is not None
        return outcome

    async def _emit(self, outcome: Outcome) -> None:
        log.info("%s %s %s", outcome.kind, outcome.call_id, outcome.detail)
        print(f"{outcome.kind} {outcome.detail}".strip(), flush=True)
        async with self._changed:
            self.outcomes.append(outcome)
            self._changed.notify_all()

    def _incoming(self, call: Call) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _updated(self, call: Call, note: Any) -> None:
        transcript: Transcript | None = note.transcript
        queue = self._heard.get(call.id)
        if queue is not None and transcript is not None and transcript.text.strip():
            queue.put_nowait(transcript)

    async def _say(self, call: Call, *texts: str) -> None:
        await call.play_prompt([text_prompt(text, self.voice) for text in texts])

    async def _serve(self, call: Call) -> None:
        queue: asyncio.Queue[Transcript] = asyncio.Queue()
        self._heard[call.id] = queue
        try:
            await call.answer()
            await call.wait_state("established")
            await self.comms.client.start_transcription(call.id)
            question = [QUESTION]
            for _ in range(self.tries):
                await self._say(call, *question)
                heard = await asyncio.wait_for(queue.get(), self.listen_seconds)  # said over the question counts
                dept = route(heard.text)
                if dept is None or dept not in self.departments:
                    await self._emit(Outcome("missed", call.id, heard.text))
                    question = [SORRY, QUESTION]
                    continue
                await self._emit(Outcome("routed", call.id, dept))
                await self._say(call, f"Connecting you to {dept}.")
                await call.transfer(application_target(self.departments[dept]))
                return
            await self._emit(Outcome("gave up", call.id))
            await self._say(call, GOODBYE)
            await call.hang_up()
        except TimeoutError:  # nothing said in time: the same as a miss, ends the call
            await self._emit(Outcome("gave up", call.id))
            with contextlib.suppress(GraphError, CallEnded, OperationFailed, TimeoutError):
                await self._say(call, GOODBYE)
                await call.hang_up()
        except (CallEnded, OperationFailed, GraphError) as exc:
            log.info("%s: %s", call.id, exc)
        finally:
            self._heard.pop(call.id, None)


@dataclass
class Running:
    ivr: SpeechIvr
    callback_url: str


@asynccontextmanager
async def run_speech_ivr(
    settings: BotSettings,
    departments: Mapping[str, str],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    tries: int = 3,
    listen_seconds: float = 8.0,
) -> AsyncIterator[Running]:
    """Serve the IVR's notifications on host:port (0: any free port); register `callback_url` on its app."""
    async with settings.client() as client:
        comms = CommunicationsClient(client, callback_uri="", app_id=settings.app_id, jwks_url=settings.jwks_url)
        async with comms, serve_receiver(comms.receiver, host, port) as base:
            comms.callback_uri = f"{base}/ivr/calls"
            ivr = SpeechIvr(comms, departments, tries=tries, listen_seconds=listen_seconds)
            try:
                yield Running(ivr, comms.callback_uri)
            finally:
                await ivr.close()


async def _main(args: argparse.Namespace) -> None:
    settings = BotSettings.from_args(args)
    host, port = args.listen
    departments = {"sales": args.sales_app, "support": args.support_app}
    async with run_speech_ivr(settings, departments, host=host, port=port, tries=args.tries) as running:
        await serve_until_signalled(f"READY {running.callback_url}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.speech_ivr", description=__doc__.split("\n")[0])
    parser.add_argument("--sales-app", required=True, help="application id of the sales bot")
    parser.add_argument("--support-app", required=True, help="application id of the support bot")
    parser.add_argument("--tries", type=int, default=3, help="questions before giving up")
    parser.add_argument("--listen", type=host_port, default=("127.0.0.1", 0), help="HOST:PORT for notifications")
    BotSettings.add_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging()
    try:
        asyncio.run(_main(args))
    except SettingsError as exc:
        parser.exit(2, f"error: {exc}\n")
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
