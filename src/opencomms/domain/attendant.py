"""The dial-in attendant: what a phone that dials a meeting's `audioConferencing` number hears and keys in.

A sans-I/O state machine per caller. It asks for the conference id (digits then `#`), then for the passcode when
the meeting requires one, and answers with actions for its driver to carry out: `Say` (a spoken prompt), `Join`
(put the caller into the meeting) or `Goodbye` (say it, then hang up with a resultInfo). Three wrong entries or
silences in a row end the call. Keys arrive one at a time (`key`), the driver's clock through `fire`; nothing here
plays audio, reads DTMF or touches a meeting: the lookup is a function given by the driver.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from opencomms.domain.fsm import TransitionTable
from opencomms.domain.meetings import MeetingInfo
from opencomms.domain.results import ResultInfo

__all__ = [
    "ATTENDANT_FAILED",
    "Action",
    "Attendant",
    "AttendantPrompts",
    "Goodbye",
    "Join",
    "Say",
    "Step",
]

ATTENDANT_FAILED = ResultInfo(200, 5010, "The caller did not give a valid conference id and passcode.")
"""How a dial-in call that never reached its meeting ends (documented in docs/architecture.md)."""


@dataclass(frozen=True, slots=True)
class AttendantPrompts:
    """What the attendant says (the node's defaults; a deployment may translate them)."""

    welcome: str = "Welcome. Please enter the conference ID, followed by the pound key."
    passcode: str = "Please enter the meeting passcode, followed by the pound key."
    unknown: str = "That conference ID was not recognised. Please try again."
    wrong_passcode: str = "That passcode is not correct. Please try again."
    silence: str = "We did not get your entry. Please try again."
    joining: str = "Thank you. You are joining the meeting now."
    goodbye: str = "Sorry, we could not get you into the meeting. Goodbye."


@dataclass(frozen=True, slots=True)
class Say:
    text: str


@dataclass(frozen=True, slots=True)
class Join:
    meeting: MeetingInfo


@dataclass(frozen=True, slots=True)
class Goodbye:
    text: str
    reason: ResultInfo


Action = Say | Join | Goodbye


class Step(StrEnum):
    CONFERENCE_ID = "conferenceId"
    PASSCODE = "passcode"
    JOINED = "joined"
    ENDED = "ended"


class _Input(StrEnum):
    KNOWN = "known"
    """A conference id that names a meeting without a passcode, or the right passcode."""
    NEEDS_PASSCODE = "needsPasscode"
    WRONG = "wrong"
    GIVE_UP = "giveUp"


_STEPS: TransitionTable[Step, _Input] = TransitionTable(
    "attendant",
    {
        (Step.CONFERENCE_ID, _Input.KNOWN): Step.JOINED,
        (Step.CONFERENCE_ID, _Input.NEEDS_PASSCODE): Step.PASSCODE,
        (Step.CONFERENCE_ID, _Input.WRONG): Step.CONFERENCE_ID,
        (Step.CONFERENCE_ID, _Input.GIVE_UP): Step.ENDED,
        (Step.PASSCODE, _Input.KNOWN): Step.JOINED,
        (Step.PASSCODE, _Input.WRONG): Step.PASSCODE,
        (Step.PASSCODE, _Input.GIVE_UP): Step.ENDED,
    },
)

MAX_DIGITS = 20
"""An entry longer than this is submitted as it stands (and is wrong)."""


class Attendant:
    """One caller at the dial-in prompt."""

    def __init__(
        self,
        lookup: Callable[[str], MeetingInfo | None],
        *,
        tries: int = 3,
        entry_timeout: float = 15.0,
        prompts: AttendantPrompts | None = None,
    ) -> None:
        self._lookup = lookup
        self.tries = tries
        self.entry_timeout = entry_timeout
        self.prompts = prompts or AttendantPrompts()
        self.step = Step.CONFERENCE_ID
        self.failures = 0
        """Wrong entries and silences since the last step forward."""
        self.meeting: MeetingInfo | None = None
        self._digits: list[str] = []
        self._deadline: float | None = None

    def start(self, now: float) -> list[Action]:
        self._deadline = now + self.entry_timeout
        return [Say(self.prompts.welcome)]

    def next_deadline(self) -> float | None:
        return self._deadline if self.step in (Step.CONFERENCE_ID, Step.PASSCODE) else None

    def key(self, key: str, now: float) -> list[Action]:
        """One DTMF key: `#` submits the entry, `*` starts it again, digits accumulate."""
        if self.step not in (Step.CONFERENCE_ID, Step.PASSCODE):
            return []
        self._deadline = now + self.entry_timeout
        if key == "*":
            self._digits.clear()
            return []
        if key == "#" or len(self._digits) >= MAX_DIGITS:
            entry, self._digits = "".join(self._digits), []
            return self._submit(entry, now)
        if key.isdigit():
            self._digits.append(key)
        return []

    def fire(self, now: float) -> list[Action]:
        """The driver's timer: an entry not finished in time counts as a wrong one (what was keyed is dropped)."""
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return []
        self._digits.clear()
        return self._wrong(self.prompts.silence, now)

    def _submit(self, entry: str, now: float) -> list[Action]:
        if self.step is Step.CONFERENCE_ID:
            meeting = self._lookup(entry) if entry else None
            if meeting is None:
                return self._wrong(self.prompts.unknown, now)
            self.meeting = meeting
            if meeting.passcode_required and meeting.passcode:
                return self._advance(_Input.NEEDS_PASSCODE, [Say(self.prompts.passcode)])
            return self._advance(_Input.KNOWN, [Say(self.prompts.joining), Join(meeting)])
        assert self.meeting is not None and self.meeting.passcode is not None
        if not hmac.compare_digest(entry.encode(), self.meeting.passcode.encode()):
            return self._wrong(self.prompts.wrong_passcode, now)
        return self._advance(_Input.KNOWN, [Say(self.prompts.joining), Join(self.meeting)])

    def _advance(self, given: _Input, actions: list[Action]) -> list[Action]:
        self.step = _STEPS.apply(self.step, given)
        self.failures = 0
        return actions

    def _wrong(self, text: str, now: float) -> list[Action]:
        self.failures += 1
        if self.failures >= self.tries:
            self.step = _STEPS.apply(self.step, _Input.GIVE_UP)
            self._deadline = None
            return [Goodbye(self.prompts.goodbye, ATTENDANT_FAILED)]
        self.step = _STEPS.apply(self.step, _Input.WRONG)
        self._deadline = now + self.entry_timeout
        return [Say(text)]
