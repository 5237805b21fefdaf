"""The IVR as a pure state machine: `step(config, state, event) -> (state, actions)`.

No I/O, no clock, no SDK: a runner turns call notifications into events and performs the actions it gets
back. The same machine therefore runs stateful (the state in memory, `examples.ivr.app`) and stateless (the
state as JSON in Redis, any worker taking any notification, `examples.ivr.stateless`).

Every prompt, recording and key timer the machine starts carries a fresh number (`tag`); the state remembers
the one it waits for, so late or duplicate completions (a cancelled prompt, a timer that fired while a key
arrived, a notification handled twice) are ignored rather than acted on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from examples.ivr.menu import (
    Back,
    GoTo,
    HangUp,
    MenuConfig,
    Option,
    Prompt,
    Prompts,
    Repeat,
    Say,
    Target,
    Transfer,
    Voicemail,
)


class Phase(StrEnum):
    RINGING = "ringing"
    """Incoming; the answer is on its way."""
    MENU = "menu"
    """A menu prompt is playing; a key interrupts it (barge-in)."""
    WAITING = "waiting"
    """The prompt has played; a key timer runs."""
    TRANSFER_PROMPT = "transferPrompt"
    """'Please hold' is playing; the transfer follows."""
    TRANSFERRING = "transferring"
    RECORDING = "recording"
    """Voicemail: recordResponse runs (prompt, beep, recording until silence, a stop tone or the limit)."""
    CLOSING = "closing"
    """The goodbye is playing; then the IVR hangs up."""
    ENDED = "ended"


# -- events --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallIncoming:
    """The call rings the IVR."""


@dataclass(frozen=True, slots=True)
class CallEstablished:
    """The answer took effect; media flows."""


@dataclass(frozen=True, slots=True)
class PromptFinished:
    tag: int
    ok: bool = True


@dataclass(frozen=True, slots=True)
class KeyPressed:
    key: str
    """One of 0-9, '*', '#', A-D."""


@dataclass(frozen=True, slots=True)
class TimerFired:
    token: int


@dataclass(frozen=True, slots=True)
class RecordingFinished:
    tag: int
    location: str | None = None
    token: str | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class TransferFailed:
    reason: str = ""


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The call is terminated (the caller hung up, the transfer completed, or the IVR hung up)."""


Event = (
    CallIncoming
    | CallEstablished
    | PromptFinished
    | KeyPressed
    | TimerFired
    | RecordingFinished
    | TransferFailed
    | CallEnded
)


# -- actions -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    pass


@dataclass(frozen=True, slots=True)
class SubscribeToTones:
    pass


@dataclass(frozen=True, slots=True)
class PlayPrompts:
    prompts: Prompts
    tag: int
    """Report completion as `PromptFinished(tag)`; 0 means nobody waits for it."""


@dataclass(frozen=True, slots=True)
class RecordMessage:
    prompt: Prompt
    tag: int
    max_seconds: int
    stop_tones: tuple[str, ...]
    beep: bool
    initial_silence: int
    max_silence: int


@dataclass(frozen=True, slots=True)
class CancelMedia:
    pass


@dataclass(frozen=True, slots=True)
class StartTimer:
    token: int
    seconds: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    token: int


@dataclass(frozen=True, slots=True)
class TransferCall:
    name: str
    target: Target


@dataclass(frozen=True, slots=True)
class SaveVoicemail:
    mailbox: str
    location: str
    token: str


@dataclass(frozen=True, slots=True)
class HangUpCall:
    pass


@dataclass(frozen=True, slots=True)
class Finished:
    """The call is over: how it ended ("transferred:operator", "voicemail:sales", "hangup", "gave up",
    "caller hung up") and the keys the caller pressed."""

    outcome: str
    keys: str


Action = (
    Answer
    | SubscribeToTones
    | PlayPrompts
    | RecordMessage
    | CancelMedia
    | StartTimer
    | CancelTimer
    | TransferCall
    | SaveVoicemail
    | HangUpCall
    | Finished
)
Actions = tuple[Action, ...]


# -- state ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IvrState:
    phase: Phase = Phase.RINGING
    menu: str = ""
    stack: tuple[str, ...] = ()
    """Menus entered on the way here, for `back`."""
    retries: int = 0
    """Invalid keys and timeouts in the current menu."""
    seq: int = 0
    pending: int = 0
    """The tag of the prompt or recording, or the token of the timer, the IVR waits for (0: none)."""
    target: str | None = None
    mailbox: str | None = None
    outcome: str | None = None
    keys: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for state stores (Redis)."""
        return {
            "phase": self.phase.value,
            "menu": self.menu,
            "stack": list(self.stack),
            "retries": self.retries,
            "seq": self.seq,
            "pending": self.pending,
            "target": self.target,
            "mailbox": self.mailbox,
            "outcome": self.outcome,
            "keys": self.keys,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IvrState:
        return cls(
            phase=Phase(data["phase"]),
            menu=str(data["menu"]),
            stack=tuple(str(m) for m in data["stack"]),
            retries=int(data["retries"]),
            seq=int(data["seq"]),
            pending=int(data["pending"]),
            target=data["target"],
            mailbox=data["mailbox"],
            outcome=data["outcome"],
            keys=str(data["keys"]),
        )


# -- transitions ---------------------------------------------------------------------------------------------


def step(config: MenuConfig, state: IvrState, event: Event) -> tuple[IvrState, Actions]:
    """Apply one event; returns the new state and what to do, in order."""
    if state.phase is Phase.ENDED:
        return state, ()
    if isinstance(event, CallEnded):
        return _ended(state)
    if isinstance(event, CallIncoming):
        return (state, (Answer(),)) if state.phase is Phase.RINGING else (state, ())
    if isinstance(event, CallEstablished):
        if state.phase is Phase.TRANSFERRING:  # back to established: the transfer did not happen
            return step(config, state, TransferFailed("established again"))
        if state.phase is not Phase.RINGING:
            return state, ()
        state, actions = _enter(config, state, config.start, prefix=config.greeting)
        return state, (SubscribeToTones(), *actions)
    if isinstance(event, PromptFinished):
        return _prompt_finished(config, state, event)
    if isinstance(event, KeyPressed):
        if state.phase is Phase.MENU:
            state, actions = _key(config, state, event.key)
            return state, (CancelMedia(), *actions)
        if state.phase is Phase.WAITING:
            token = state.pending
            state, actions = _key(config, state, event.key)
            return state, (CancelTimer(token), *actions)
        return state, ()
    if isinstance(event, TimerFired):
        if state.phase is Phase.WAITING and event.token == state.pending:
            return _retry(config, state, config.messages.timeout)
        return state, ()
    if isinstance(event, RecordingFinished):
        return _recorded(config, state, event)
    if isinstance(event, TransferFailed):
        if state.phase not in (Phase.TRANSFER_PROMPT, Phase.TRANSFERRING):
            return state, ()
        state = replace(state, target=None, outcome=None)
        return _enter(config, state, state.menu, prefix=config.messages.transfer_failed, retries=state.retries)
    raise TypeError(f"not an IVR event: {event!r}")  # pragma: no cover - exhaustiveness guard


def _next(state: IvrState) -> tuple[IvrState, int]:
    tag = state.seq + 1
    return replace(state, seq=tag, pending=tag), tag


def _enter(
    config: MenuConfig, state: IvrState, menu: str, *, prefix: Prompts = (), retries: int = 0
) -> tuple[IvrState, Actions]:
    """Play a menu (after `prefix`) and listen for keys."""
    state, tag = _next(replace(state, phase=Phase.MENU, menu=menu, retries=retries))
    return state, (PlayPrompts((*prefix, *config.menus[menu].prompts), tag),)


def _prompt_finished(config: MenuConfig, state: IvrState, event: PromptFinished) -> tuple[IvrState, Actions]:
    if event.tag != state.pending or event.tag == 0:
        return state, ()
    if state.phase is Phase.MENU:
        state, token = _next(replace(state, phase=Phase.WAITING))
        return state, (StartTimer(token, config.timeout_for(state.menu)),)
    if state.phase is Phase.TRANSFER_PROMPT and state.target is not None:
        name = state.target
        return replace(state, phase=Phase.TRANSFERRING, pending=0), (TransferCall(name, config.targets[name]),)
    if state.phase is Phase.CLOSING:
        return replace(state, pending=0), (HangUpCall(),)
    return state, ()


def _key(config: MenuConfig, state: IvrState, key: str) -> tuple[IvrState, Actions]:
    state = replace(state, keys=state.keys + key)
    option = config.menus[state.menu].options.get(key.upper())
    if option is None:
        return _retry(config, state, config.messages.invalid)
    return _apply(config, state, option)


def _retry(config: MenuConfig, state: IvrState, message: Prompts) -> tuple[IvrState, Actions]:
    """An invalid key or a timeout: say so and offer the menu again, or give up after `max_retries`."""
    if state.retries >= config.max_retries:
        state = replace(state, outcome="gave up")
        return _apply(config, state, config.give_up, prefix=config.messages.too_many)
    return _enter(config, state, state.menu, prefix=message, retries=state.retries + 1)


def _apply(config: MenuConfig, state: IvrState, option: Option, prefix: Prompts = ()) -> tuple[IvrState, Actions]:
    current = state.menu
    if isinstance(option, GoTo):
        return _enter(config, replace(state, stack=(*state.stack, current)), option.menu, prefix=prefix)
    if isinstance(option, Back):
        if not state.stack:
            return _enter(config, state, current, prefix=prefix)
        return _enter(config, replace(state, stack=state.stack[:-1]), state.stack[-1], prefix=prefix)
    if isinstance(option, Repeat):
        return _enter(config, state, current, prefix=prefix)
    if isinstance(option, Say):
        then = option.then or current
        stack = state.stack if then == current else (*state.stack, current)
        return _enter(config, replace(state, stack=stack), then, prefix=(*prefix, *option.prompts))
    if isinstance(option, Transfer):
        state, tag = _next(replace(state, phase=Phase.TRANSFER_PROMPT, target=option.target))
        return state, (PlayPrompts((*prefix, *config.messages.transferring), tag),)
    if isinstance(option, Voicemail):
        return _record(config, state, option.mailbox, prefix)
    if isinstance(option, HangUp):
        outcome = state.outcome or "hangup"
        return _close(state, (*prefix, *(option.prompts or config.messages.goodbye)), outcome)
    raise TypeError(f"not a menu option: {option!r}")  # pragma: no cover - exhaustiveness guard


def _record(config: MenuConfig, state: IvrState, mailbox: str, prefix: Prompts) -> tuple[IvrState, Actions]:
    vm = config.voicemail
    assert vm is not None, "validated by load_menu"
    state, tag = _next(replace(state, phase=Phase.RECORDING, mailbox=mailbox))
    record = RecordMessage(
        prompt=vm.prompt,
        tag=tag,
        max_seconds=vm.max_seconds,
        stop_tones=vm.stop_tones,
        beep=vm.beep,
        initial_silence=vm.initial_silence,
        max_silence=vm.max_silence,
    )
    # recordResponse takes one prompt; anything to say first is queued ahead of it (media operations are FIFO).
    return state, ((PlayPrompts(prefix, 0), record) if prefix else (record,))


def _recorded(config: MenuConfig, state: IvrState, event: RecordingFinished) -> tuple[IvrState, Actions]:
    if state.phase is not Phase.RECORDING or event.tag != state.pending:
        return state, ()
    vm = config.voicemail
    mailbox = state.mailbox
    assert vm is not None and mailbox is not None
    goodbye = config.messages.goodbye
    if event.location and event.token:
        state, actions = _close(state, (*vm.saved, *goodbye), f"voicemail:{mailbox}")
        return state, (SaveVoicemail(mailbox, event.location, event.token), *actions)
    return _close(state, (*vm.nothing, *goodbye), state.outcome or "no message")


def _close(state: IvrState, prompts: Prompts, outcome: str) -> tuple[IvrState, Actions]:
    state, tag = _next(replace(state, phase=Phase.CLOSING, outcome=outcome))
    if not prompts:
        return replace(state, pending=0), (HangUpCall(),)
    return state, (PlayPrompts(prompts, tag),)


def _ended(state: IvrState) -> tuple[IvrState, Actions]:
    actions: list[Action] = []
    if state.phase is Phase.WAITING:
        actions.append(CancelTimer(state.pending))
    if state.phase is Phase.TRANSFERRING and state.target is not None:
        outcome = f"transferred:{state.target}"
    elif state.phase is Phase.CLOSING and state.outcome:
        outcome = state.outcome
    else:
        outcome = "caller hung up"
    actions.append(Finished(outcome, state.keys))
    return replace(state, phase=Phase.ENDED, pending=0, outcome=outcome), tuple(actions)
