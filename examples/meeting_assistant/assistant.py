"""Meeting assistant: joins a meeting by its join link, greets each joiner by name, mutes a participant on request
and leaves when asked.

    BOT_SECRET=... python -m examples.meeting_assistant --node http://127.0.0.1:8000 --tenant contoso.example \
        --app-id <app id> --join-url '<the meeting joinWebUrl>' [--listen 127.0.0.1:8082]

The bot needs Calls.JoinGroupCall.All (and Calls.AccessMedia.All for its prompts). It joins with delta rosters;
every participant who joins later (or is admitted from the lobby) hears "Welcome, <name>. You are participant <n>."
played into the meeting. Requests are keys any participant presses (see commands.py): `*6<n>#` mutes participant
<n> (server mute), `*0` makes the assistant say goodbye and leave. Each thing it does is printed as a JSON line;
the program ends when the assistant leaves or the meeting ends.

`run_assistant()` is the whole bot for programs and tests; `MeetingAssistant` attaches to a CommunicationsClient
you already serve yourself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass

from examples.common import (
    BotSettings,
    meeting_comms,
    meeting_parser,
    parse_meeting_args,
    run_bot,
)
from examples.meeting_assistant.commands import KeyCommands, Leave, Mute
from opencomms.sdk import GraphError, Participant, RosterChange, ToneInfo, text_prompt
from opencomms.sdk.calling import Call, CallEnded, CommunicationsClient, OperationFailed

log = logging.getLogger("examples.meeting_assistant")

HELP = "Press star six, a participant number and pound to mute someone. Press star zero to dismiss me."


@dataclass(frozen=True, slots=True)
class AssistantEvent:
    """Something the assistant did: `joined`, `greeted`, `muted`, `refused`, `left` or `ended`."""

    kind: str
    name: str = ""
    seat: int = 0
    detail: str = ""


def greeting(name: str, seat: int) -> str:
    return f"Welcome, {name}. You are participant {seat}."


def display_name(p: Participant) -> str:
    return p.display_name or "guest"


class MeetingAssistant:
    """The assistant's behaviour on one meeting leg of a CommunicationsClient."""

    def __init__(self, comms: CommunicationsClient, *, voice: str | None = "en-us") -> None:
        self.comms = comms
        self.voice = voice
        self.call: Call | None = None
        self.seats: dict[int, Participant] = {}
        self._seat_of: dict[str, int] = {}
        self._next_seat = 1
        self._hello_done = False
        self._keys = KeyCommands()
        self.events: list[AssistantEvent] = []
        self._changed = asyncio.Event()
        self._speech: asyncio.Queue[tuple[str, AssistantEvent | None, asyncio.Future[bool]]] = asyncio.Queue()
        self._speaker: asyncio.Task[None] | None = None
        self.done = asyncio.Event()
        comms.on_roster_changed(self._on_roster)
        comms.on_tone_received(self._on_tone)
        comms.on_call_ended(self._on_ended)

    # -- life cycle -------------------------------------------------------------------------------------
    async def join(self, join_web_url: str, *, timeout: float = 30.0) -> Call:
        """Join the meeting (raises JoinUrlError, GraphError, CallEnded) and start listening for requests."""
        call = await self.comms.join_meeting(join_web_url=join_web_url, delta_roster=True)
        self.call = call
        await call.wait_state("established", timeout=timeout)
        await call.subscribe_to_tone()
        self._speaker = asyncio.get_running_loop().create_task(self._speak())
        self._emit(AssistantEvent("joined", detail=call.id))
        return call

    async def leave(self) -> None:
        """Stop talking, say goodbye and hang up."""
        call = self.call
        if call is None or call.terminated.is_set():
            return
        while not self._speech.empty():  # what it still meant to say is dropped
            _, _, pending = self._speech.get_nowait()
            pending.set_result(False)
        with contextlib.suppress(CallEnded, OperationFailed, GraphError, TimeoutError):
            await call.cancel_media_processing()  # and what it is saying now is cut short
        await self.say("Goodbye.")
        with contextlib.suppress(GraphError, TimeoutError):
            await call.hang_up()
        self._emit(AssistantEvent("left"))
        self.done.set()

    async def close(self) -> None:
        if self._speaker is not None:
            self._speaker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._speaker
        if self.call is not None and not self.call.terminated.is_set():
            with contextlib.suppress(GraphError, TimeoutError):
                await self.call.hang_up()

    async def wait_event(self, kind: str, name: str | None = None, *, timeout: float = 15.0) -> AssistantEvent:
        """The first event of `kind` (for `name`), past or future."""

        def found() -> AssistantEvent | None:
            return next((e for e in self.events if e.kind == kind and (name is None or e.name == name)), None)

        async def wait() -> AssistantEvent:
            while (event := found()) is None:
                await self._changed.wait()
            return event

        return await asyncio.wait_for(wait(), timeout)

    def _emit(self, event: AssistantEvent) -> None:
        log.info("%s", event)
        self.events.append(event)
        self._changed.set()
        self._changed = asyncio.Event()

    # -- speaking ---------------------------------------------------------------------------------------
    def say_later(self, text: str, event: AssistantEvent | None = None) -> asyncio.Future[bool]:
        """Queue `text` to be spoken into the meeting; the future says whether it was played (False: it failed,
        was dropped, or the call ended)."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._speech.put_nowait((text, event, done))
        return done

    async def say(self, text: str) -> bool:
        return await self.say_later(text)

    async def _speak(self) -> None:
        while True:
            text, event, done = await self._speech.get()
            call = self.call
            try:
                if call is None:
                    raise CallEnded("", None)
                await call.play_prompt([text_prompt(text, self.voice)])
            except (CallEnded, OperationFailed, GraphError, TimeoutError) as exc:
                log.info("not said (%s): %s", exc, text)
                if not done.done():
                    done.set_result(False)
                continue
            if event is not None:
                self._emit(event)
            if not done.done():
                done.set_result(True)

    # -- events -----------------------------------------------------------------------------------------
    def _ours(self, call: Call) -> bool:
        return self.call is None or call.id == self.call.id

    def _on_roster(self, call: Call, change: RosterChange) -> None:
        if not self._ours(call):
            return
        mine = call.info.my_participant_id if call.info is not None else None
        arrived: list[tuple[int, Participant]] = []
        for p in (*change.added, *change.updated):
            if p.id == mine or p.app_id == self.comms.app_id or p.is_in_lobby or p.id in self._seat_of:
                continue
            seat = self._next_seat
            self._next_seat += 1
            self._seat_of[p.id] = seat
            self.seats[seat] = p
            arrived.append((seat, p))
        for p in change.removed:
            seat = self._seat_of.pop(p.id, 0)
            self.seats.pop(seat, None)
        if not self._hello_done:  # the first roster: who was here before us (if anyone, they hear who is who)
            self._hello_done = True
            if arrived:
                here = ", ".join(f"{display_name(p)} is participant {seat}" for seat, p in arrived)
                self.say_later(f"Hello everyone, I am the meeting assistant. {here}. {HELP}")
            return
        for seat, p in arrived:
            name = display_name(p)
            self.say_later(greeting(name, seat), AssistantEvent("greeted", name, seat))

    async def _on_tone(self, call: Call, tone: ToneInfo) -> None:
        if not self._ours(call):
            return
        command = self._keys.press(tone.key)
        if isinstance(command, Leave):
            await self.leave()
        elif isinstance(command, Mute):
            await self._mute(call, command.seat)

    async def _mute(self, call: Call, seat: int) -> None:
        p = self.seats.get(seat)
        if p is None:
            self._emit(AssistantEvent("refused", seat=seat, detail="no such participant"))
            self.say_later(f"There is no participant {seat}.")
            return
        name = display_name(p)
        try:
            await call.mute_participant(p.id)
        except (GraphError, OperationFailed) as exc:
            self._emit(AssistantEvent("refused", name, seat, str(exc)))
            self.say_later(f"Sorry, I could not mute {name}.")
            return
        self._emit(AssistantEvent("muted", name, seat))
        self.say_later(f"{name} is muted.")

    def _on_ended(self, call: Call) -> None:
        if not self._ours(call) or self.done.is_set():
            return
        result = call.result_info
        self._emit(AssistantEvent("ended", detail="" if result is None else f"{result.code}/{result.subcode}"))
        self.done.set()


@asynccontextmanager
async def run_assistant(
    settings: BotSettings,
    join_web_url: str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    voice: str | None = "en-us",
) -> AsyncIterator[MeetingAssistant]:
    """Serve the bot's notifications on host:port (0: any free port), join the meeting, yield the assistant;
    leaves the meeting on exit."""
    async with meeting_comms(settings, host, port, "/assistant/calls") as comms:
        assistant = MeetingAssistant(comms, voice=voice)
        try:
            await assistant.join(join_web_url)
            yield assistant
        finally:
            await assistant.close()


async def _main(args: argparse.Namespace) -> int:
    settings = BotSettings.from_args(args)
    host, port = args.listen
    async with run_assistant(settings, args.join_url, host=host, port=port, voice=args.voice) as assistant:
        seen = 0
        while not assistant.done.is_set() or seen < len(assistant.events):
            if seen < len(assistant.events):
                print(json.dumps(asdict(assistant.events[seen])), flush=True)
                seen += 1
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(assistant.done.wait(), 0.5)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = meeting_parser("python -m examples.meeting_assistant", __doc__)
    parser.add_argument("--voice", default="en-us", help="text-to-speech voice of the prompts")
    args = parse_meeting_args(parser, argv)
    return run_bot(parser, _main(args), (GraphError, ValueError))  # JoinUrlError is a ValueError


if __name__ == "__main__":
    raise SystemExit(main())
