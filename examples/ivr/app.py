"""The IVR as a stateful bot: the machine's state in memory, driven by the Calling SDK's `CommunicationsClient`.

    async with run_ivr(load_menu_file("examples/ivr/menu.yaml"), settings) as ivr:
        print(ivr.callback_url)          # register it as the application's callback URL
        result = await ivr.next_result() # Finished(outcome="voicemail:sales", keys="12")

`build_ivr(config, comms)` attaches the IVR to a `CommunicationsClient` you already serve. From the command
line: `python -m examples.ivr` (see examples/README.md).

Each call's events go through the pure machine one at a time (a lock per call). Whatever awaits an outcome
(a prompt, a recording, a transfer) runs as a task that feeds the outcome back as an event, so keys pressed
meanwhile are handled at once (barge-in).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from examples.common import BotSettings
from examples.ivr.machine import (
    Action,
    Answer,
    CallEnded,
    CallEstablished,
    CallIncoming,
    CancelMedia,
    CancelTimer,
    Event,
    Finished,
    HangUpCall,
    IvrState,
    KeyPressed,
    Phase,
    PlayPrompts,
    PromptFinished,
    RecordingFinished,
    RecordMessage,
    SaveVoicemail,
    StartTimer,
    SubscribeToTones,
    TimerFired,
    TransferCall,
    TransferFailed,
    step,
)
from examples.ivr.menu import KEYS, MenuConfig
from examples.ivr.notes import context_for
from examples.ivr.voicemail import save_voicemail
from opencomms.sdk import GraphError, ToneInfo, serve_receiver, service_hosted_media
from opencomms.sdk.calling import Call, CommunicationsClient, OperationFailed
from opencomms.sdk.calling import CallEnded as CallGone

log = logging.getLogger("examples.ivr")

MediaAction = PlayPrompts | RecordMessage


@dataclass(frozen=True, slots=True)
class IvrResult:
    """How one call through the IVR ended."""

    call_id: str
    outcome: str
    keys: str
    voicemail: Path | None = None


@dataclass
class _CallSlot:
    call: Call
    state: IvrState = field(default_factory=IvrState)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    timer: asyncio.TimerHandle | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    voicemail: Path | None = None


class IvrBot:
    """Runs the menu for every call `comms` receives."""

    def __init__(self, config: MenuConfig, comms: CommunicationsClient, *, voicemail_dir: Path | None = None) -> None:
        self.config = config
        self.comms = comms
        self.voicemail_dir = voicemail_dir
        self.results: list[IvrResult] = []
        self._returned = 0
        self._slots: dict[str, _CallSlot] = {}
        self._results_changed = asyncio.Condition()
        self._prefetch = [p.to_graph()["mediaInfo"] for p in config.wav_prompts()]
        comms.on_incoming_call(self._on_incoming)
        comms.on_tone_received(self._on_tone)
        comms.on_call_ended(self._on_ended)

    @property
    def callback_url(self) -> str:
        return self.comms.callback_uri

    @property
    def active_calls(self) -> int:
        return len(self._slots)

    def state_of(self, call_id: str) -> IvrState | None:
        slot = self._slots.get(call_id)
        return None if slot is None else slot.state

    async def next_result(self, timeout: float = 30.0) -> IvrResult:
        """The result of the next call to finish that was not returned yet (in the order calls finished)."""
        wanted = self._returned
        async with self._results_changed:
            await asyncio.wait_for(self._results_changed.wait_for(lambda: len(self.results) > wanted), timeout)
        self._returned = max(self._returned, wanted + 1)
        return self.results[wanted]

    # -- SDK callbacks -----------------------------------------------------------------------------------
    async def _on_incoming(self, call: Call) -> None:
        self._slots[call.id] = _CallSlot(call)
        await self.feed(call.id, CallIncoming())

    async def _on_tone(self, call: Call, tone: ToneInfo) -> None:
        if tone.key in KEYS:
            await self.feed(call.id, KeyPressed(tone.key))

    async def _on_ended(self, call: Call) -> None:
        await self.feed(call.id, CallEnded())

    # -- the loop: event -> machine -> actions -----------------------------------------------------------
    async def feed(self, call_id: str, event: Event) -> None:
        slot = self._slots.get(call_id)
        if slot is None:
            return
        async with slot.lock:
            queue: list[Event] = [event]
            while queue:
                slot.state, actions = step(self.config, slot.state, queue.pop(0))
                queue.extend(await self._perform(slot, actions))
            if slot.state.phase is Phase.ENDED:
                self._forget(slot)

    def _spawn(self, slot: _CallSlot, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        slot.tasks.add(task)
        task.add_done_callback(slot.tasks.discard)

    async def _perform(self, slot: _CallSlot, actions: tuple[Action, ...]) -> list[Event]:
        """Do one step's actions in order; media runs in one background task (in order); returns new events."""
        call = slot.call
        raised: list[Event] = []
        media: list[MediaAction] = [a for a in actions if isinstance(a, PlayPrompts | RecordMessage)]
        for action in actions:
            try:
                if isinstance(action, Answer):
                    await call.answer(service_hosted_media(self._prefetch))
                    raised.append(CallEstablished())
                elif isinstance(action, SubscribeToTones):
                    await call.subscribe_to_tone()
                elif isinstance(action, CancelMedia):
                    await call.cancel_media_processing()
                elif isinstance(action, StartTimer):
                    self._start_timer(slot, action)
                elif isinstance(action, CancelTimer):
                    if slot.timer is not None:
                        slot.timer.cancel()
                        slot.timer = None
                elif isinstance(action, TransferCall):
                    self._spawn(slot, self._transfer(slot, action))
                elif isinstance(action, SaveVoicemail):
                    await self._save(slot, action)
                elif isinstance(action, HangUpCall):
                    self._spawn(slot, self._hang_up(call))
                elif isinstance(action, Finished):
                    await self._finished(slot, action)
            except (GraphError, OperationFailed, CallGone, TimeoutError) as exc:
                log.warning("%s: %s failed: %s", call.id, type(action).__name__, exc)
        if media:
            self._spawn(slot, self._media(slot, media))
        return raised

    async def _media(self, slot: _CallSlot, actions: list[MediaAction]) -> None:
        """Play/record in order; each outcome the machine waits for comes back as an event."""
        call = slot.call
        for action in actions:
            event: Event | None = None
            try:
                if isinstance(action, PlayPrompts):
                    context = context_for(action.tag) if action.tag else None
                    prompts = [p.to_graph() for p in action.prompts]
                    try:
                        await call.play_prompt(prompts, client_context=context)
                        event = PromptFinished(action.tag)
                    except OperationFailed:
                        event = PromptFinished(action.tag, ok=False)  # cancelled (barge-in) or unplayable
                else:
                    try:
                        op = await call.record_response(
                            prompts=[action.prompt.to_graph()],
                            play_beep=action.beep,
                            stop_tones=action.stop_tones,
                            max_record_duration=action.max_seconds,
                            initial_silence_timeout=action.initial_silence,
                            max_silence_timeout=action.max_silence,
                            client_context=context_for(action.tag),
                            timeout=action.max_seconds + action.initial_silence + 60,
                        )
                        event = RecordingFinished(
                            action.tag, op.recording_location, op.recording_access_token, op.completion_reason or ""
                        )
                    except OperationFailed as exc:
                        reason = exc.operation.completion_reason if exc.operation is not None else None
                        event = RecordingFinished(action.tag, reason=reason or "failed")
            except (CallGone, GraphError, TimeoutError) as exc:
                log.info("%s: media stopped: %s", call.id, exc)
                return
            if event is not None and (not isinstance(event, PromptFinished) or event.tag):
                await self.feed(call.id, event)

    async def _transfer(self, slot: _CallSlot, action: TransferCall) -> None:
        try:
            await slot.call.transfer(action.target.to_graph())
        except (OperationFailed, GraphError) as exc:
            log.info("%s: transfer to %s failed: %s", slot.call.id, action.name, exc)
            await self.feed(slot.call.id, TransferFailed(str(exc)))
        except (CallGone, TimeoutError):
            pass

    async def _hang_up(self, call: Call) -> None:
        with contextlib.suppress(GraphError, CallGone, TimeoutError):
            await call.hang_up()

    def _start_timer(self, slot: _CallSlot, action: StartTimer) -> None:
        if slot.timer is not None:
            slot.timer.cancel()
        loop = asyncio.get_running_loop()

        def fire() -> None:
            slot.timer = None
            self._spawn(slot, self.feed(slot.call.id, TimerFired(action.token)))

        slot.timer = loop.call_later(action.seconds, fire)

    async def _save(self, slot: _CallSlot, action: SaveVoicemail) -> None:
        if self.voicemail_dir is None:
            return
        audio = await self.comms.client.download_recording(action.location, action.token)
        slot.voicemail = save_voicemail(self.voicemail_dir, action.mailbox, slot.call.id, audio)
        log.info("%s: voicemail saved for %s", slot.call.id, action.mailbox)

    async def _finished(self, slot: _CallSlot, action: Finished) -> None:
        log.info("%s: call finished: %s", slot.call.id, action.outcome)
        async with self._results_changed:
            self.results.append(IvrResult(slot.call.id, action.outcome, action.keys, slot.voicemail))
            self._results_changed.notify_all()

    def _forget(self, slot: _CallSlot) -> None:
        if slot.timer is not None:
            slot.timer.cancel()
        self._slots.pop(slot.call.id, None)
        current = asyncio.current_task()
        for task in slot.tasks:
            if task is not current:
                task.cancel()

    async def close(self) -> None:
        for slot in list(self._slots.values()):
            self._forget(slot)


def build_ivr(config: MenuConfig, comms: CommunicationsClient, *, voicemail_dir: Path | None = None) -> IvrBot:
    """Attach the IVR to a CommunicationsClient (serve `comms.receiver` at `comms.callback_uri` yourself)."""
    return IvrBot(config, comms, voicemail_dir=voicemail_dir)


@asynccontextmanager
async def run_ivr(
    config: MenuConfig,
    settings: BotSettings,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    path: str = "/api/calls",
    voicemail_dir: Path | None = None,
) -> AsyncIterator[IvrBot]:
    """Serve the IVR on host:port (port 0: any free one); its callback URL is `ivr.callback_url`."""
    async with settings.client() as client:
        comms = CommunicationsClient(client, callback_uri="", app_id=settings.app_id, jwks_url=settings.jwks_url)
        bot = build_ivr(config, comms, voicemail_dir=voicemail_dir)
        async with comms, serve_receiver(comms.receiver, host, port) as base:
            comms.callback_uri = base + path
            try:
                yield bot
            finally:
                await bot.close()
