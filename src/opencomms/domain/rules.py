"""The conversation's rules as data: its kinds, its own state table, and for each command the guards that must
hold before it may change anything (the state checks `calling/service.py` makes inline, named and listed).

A guard answers None (pass) or the typed error the command fails with; `Rule.on_fail` says whether that error is
raised (REST commands: the bot gets Graph's error body) or the command is dropped as stale (gateway and media
reports about a leg that has moved on, as `CallService` ignores them today). Guards run in the listed order, so
the first failing one names the error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from opencomms.domain import commands as c
from opencomms.domain.calls import CALL_FSM, CallEvent, CallState
from opencomms.domain.errors import AccessDenied, BadRequest, InvalidState, NotFound, OpenCommsError, QuotaExceeded
from opencomms.domain.fsm import TransitionTable
from opencomms.domain.legs import Leg

if TYPE_CHECKING:
    from opencomms.domain.conversation import Conversation


class ConversationKind(StrEnum):
    PEER_TO_PEER = "peerToPeer"
    """Two parties; a leg left alone ends."""
    GROUP = "group"
    """A bot's call to several targets: rosters are sent; a leg left alone ends ('everyone left')."""
    MEETING = "meeting"
    """A conference: legs join and leave; a leg alone waits; it ends when the last leg leaves."""


class ConversationState(StrEnum):
    NEW = "new"
    SETUP = "setup"
    """Legs exist, none has been established yet."""
    ACTIVE = "active"
    """At least one leg has been established."""
    ENDED = "ended"


class ConversationEvent(StrEnum):
    CREATE = "create"
    JOIN = "join"
    CONNECT = "connect"
    ACT = "act"
    """Any other command on a conversation that has begun."""
    EMPTY = "empty"
    """The last leg is gone."""


_S, _E = ConversationState, ConversationEvent
CONVERSATION_FSM: TransitionTable[ConversationState, ConversationEvent] = TransitionTable(
    "conversation",
    {
        (_S.NEW, _E.CREATE): _S.SETUP,
        (_S.NEW, _E.JOIN): _S.SETUP,
        (_S.SETUP, _E.JOIN): _S.SETUP,
        (_S.ACTIVE, _E.JOIN): _S.ACTIVE,
        (_S.SETUP, _E.CONNECT): _S.ACTIVE,
        (_S.ACTIVE, _E.CONNECT): _S.ACTIVE,
        (_S.SETUP, _E.ACT): _S.SETUP,
        (_S.ACTIVE, _E.ACT): _S.ACTIVE,
        (_S.SETUP, _E.EMPTY): _S.ENDED,
        (_S.ACTIVE, _E.EMPTY): _S.ENDED,
    },
)


@dataclass(frozen=True, slots=True)
class ConversationTimeouts:
    """Ring and keepAlive times (seconds); the node's configuration supplies them (calls section)."""

    answer: float = 15.0
    keepalive: float = 2700.0
    redirect_single: float = 55.0
    redirect_multiple: float = 60.0
    dial: float = 60.0


GuardCheck = Callable[["Conversation", c.Command, Leg | None], OpenCommsError | None]


@dataclass(frozen=True, slots=True)
class Guard:
    name: str
    check: GuardCheck


class OnFail(StrEnum):
    RAISE = "raise"
    IGNORE = "ignore"


ALL_KINDS = frozenset(ConversationKind)
MULTIPARTY = frozenset({ConversationKind.GROUP, ConversationKind.MEETING})
MEETING_ONLY = frozenset({ConversationKind.MEETING})


@dataclass(frozen=True, slots=True)
class Rule:
    conversation_event: ConversationEvent
    """The conversation table's edge the command takes (ACT: any begun, not ended conversation)."""
    leg_field: str | None = None
    """The command's attribute naming the leg it acts on (it must exist)."""
    guards: tuple[Guard, ...] = ()
    kinds: frozenset[ConversationKind] = ALL_KINDS
    on_fail: OnFail = OnFail.RAISE


# -- guards -----------------------------------------------------------------------------------------------------
def leg_allows(event: CallEvent) -> Guard:
    """The leg table has an edge for `event` in the leg's state."""

    def check(conv: Conversation, cmd: c.Command, leg: Leg | None) -> OpenCommsError | None:
        assert leg is not None
        if CALL_FSM.allows(leg.state, event):
            return None
        return InvalidState(f"The action '{event.value}' is not allowed while the call is '{leg.state.value}'.")

    return Guard(f"leg allows {event.value}", check)


def leg_in(*states: CallState, action: str) -> Guard:
    def check(conv: Conversation, cmd: c.Command, leg: Leg | None) -> OpenCommsError | None:
        assert leg is not None
        if leg.state in states:
            return None
        return InvalidState(f"The action '{action}' is not allowed while the call is '{leg.state.value}'.")

    return Guard(f"leg is {'/'.join(s.value for s in states)}", check)


def _bot_leg(conv: Conversation, cmd: c.Command, leg: Leg | None) -> OpenCommsError | None:
    assert leg is not None
    return None if not leg.is_external else NotFound(f"No call with id {leg.id!r}.")


def _external_leg(conv: Conversation, cmd: c.Command, leg: Leg | None) -> OpenCommsError | None:
    assert leg is not None
    return None if leg.is_external else InvalidState("Only a gateway's leg is driven by its gateway.")


def _not_ringing(conv: Conversation, cmd: c.Command, leg: Leg | None) -> OpenCommsError | None:
    assert leg is not None
    if leg.state is CallState.INCOMING:
        return InvalidState("An incoming call that was not answered is ended with 'reject', not DELETE.")
    return None


def _ringing(conv: Conversation, cmd: c.Command, leg: Leg | None) -> OpenCommsError | None:
    assert leg is not None
    return None if leg.state is CallState.INCOMING else InvalidState("The leg is not ringing.")


def _live(conv: Conversation, cmd: c.Command, leg: Leg | None) -> OpenCommsError | None:
    assert leg is not None
    return None if leg.live else InvalidState("The leg is not in the conversation's media.")


def _no_transfer(conv: Conversation, cmd: c.Command, leg: Leg | None) -> OpenCommsError | None:
    return None if conv.transfer is None else InvalidState("Another transfer is in progress in this call.")


def _transferee_known(conv: Conversation, cmd: c.Command, leg: Leg | None) -> OpenCommsError | None:
    assert isinstance(cmd, c.StartTransfer)
    try:
        conv.transferee_of(cmd.leg_id, cmd.transferee_participant_id)
    except BadRequest as exc:
        return exc
    return None


def _transfer_target(conv: Conversation, cmd: c.Command, leg: Leg | None) -> OpenCommsError | None:
    assert isinstance(cmd, c.StartTransfer)
    if cmd.by_refer or cmd.invitation is not None:
        return None
    return BadRequest("'transferTarget' could not be resolved.")


def _invitations_given(conv: Conversation, cmd: c.Command, leg: Leg | None) -> OpenCommsError | None:
    assert isinstance(cmd, c.Redirect | c.Invite)
    return None if cmd.invitations else BadRequest("'targets' must name at least one target.")


def _muted_participant(conv: Conversation, cmd: c.Command, leg: Leg | None) -> OpenCommsError | None:
    assert isinstance(cmd, c.Mute)
    if cmd.participant_id is None:
        return None
    if cmd.participant_id not in conv.roster:
        return NotFound(f"No participant {cmd.participant_id!r} in this call.")
    if conv.kind is not ConversationKind.MEETING and cmd.participant_id != conv.participant_of(cmd.leg_id):
        return InvalidState("Only a meeting's participants can be muted by another participant.")
    return None


def _referring(conv: Conversation, cmd: c.Command, leg: Leg | None) -> OpenCommsError | None:
    """A REFER transfer carried out by this leg's gateway is in progress and its transferor still exists."""
    assert leg is not None
    t = conv.transfer
    if t is None or t.transferee != leg.id or t.target or conv.find_leg(t.transferor) is None:
        return InvalidState("No transfer of this leg is in progress.")
    return None


def _transferor_transferring(conv: Conversation, cmd: c.Command, leg: Leg | None) -> OpenCommsError | None:
    t = conv.transfer
    transferor = None if t is None else conv.find_leg(t.transferor)
    if transferor is None or transferor.state is not CallState.TRANSFERRING:
        return InvalidState("The transferor is not transferring.")
    return None


def _room(conv: Conversation, cmd: c.Command, leg: Leg | None) -> OpenCommsError | None:
    assert isinstance(cmd, c.Join)
    if cmd.max_participants and len(conv.legs) >= cmd.max_participants:
        return QuotaExceeded(f"The meeting has reached its maximum of {cmd.max_participants} participants.")
    return None


def _member(conv: Conversation, cmd: c.Command, leg: Leg | None) -> OpenCommsError | None:
    """Organizer rights, as opencomms defines them: the bot joined as a member (Calls.JoinGroupCall.All)."""
    assert leg is not None
    if leg.role == "member":
        return None
    return AccessDenied("Only a bot that joined the meeting with 'Calls.JoinGroupCall.All' may admit participants.")


def _participant_known(conv: Conversation, cmd: c.Command, leg: Leg | None) -> OpenCommsError | None:
    ids = cmd.participant_ids if isinstance(cmd, c.Admit) else (getattr(cmd, "participant_id", ""),)
    for pid in ids:
        if pid not in conv.roster:
            return NotFound(f"No participant {pid!r} in this call.")
    return None


def _one_on_hold(conv: Conversation, cmd: c.Command, leg: Leg | None) -> OpenCommsError | None:
    assert isinstance(cmd, c.HoldMusic)
    held = conv.meeting.held if conv.meeting is not None else None
    if cmd.on and held is not None and held != cmd.participant_id:
        return InvalidState("Another participant is on hold: one participant at a time can hear hold music.")
    return None


def _recording_status(conv: Conversation, cmd: c.Command, leg: Leg | None) -> OpenCommsError | None:
    assert isinstance(cmd, c.UpdateRecordingStatus)
    if cmd.status in ("notRecording", "recording", "failed"):
        return None
    return BadRequest("'status' must be one of: notRecording, recording, failed.")


BOT_LEG = Guard("bot leg", _bot_leg)
EXTERNAL_LEG = Guard("external leg", _external_leg)
NOT_RINGING = Guard("not ringing (reject, not DELETE)", _not_ringing)
RINGING = Guard("ringing", _ringing)
LIVE = Guard("live", _live)
NO_TRANSFER = Guard("no transfer in progress", _no_transfer)
TRANSFEREE_KNOWN = Guard("transferee is a live peer", _transferee_known)
TRANSFER_TARGET = Guard("transfer target resolved", _transfer_target)
INVITATIONS_GIVEN = Guard("at least one target", _invitations_given)
MUTED_PARTICIPANT = Guard("muted participant in roster", _muted_participant)
REFERRING = Guard("REFER transfer of this leg in progress", _referring)
ROOM = Guard("room left in the meeting", _room)
MEMBER = Guard("leg joined as a member (organizer rights)", _member)
PARTICIPANT_KNOWN = Guard("participant in roster", _participant_known)
ONE_ON_HOLD = Guard("one participant on hold", _one_on_hold)
RECORDING_STATUS = Guard("known recording status", _recording_status)
TRANSFEROR_TRANSFERRING = Guard("transferor transferring", _transferor_transferring)

_ACT, _IGN = ConversationEvent.ACT, OnFail.IGNORE

RULES: dict[type, Rule] = {
    c.Create: Rule(ConversationEvent.CREATE),
    c.Join: Rule(ConversationEvent.JOIN, guards=(ROOM,), kinds=MEETING_ONLY),
    c.Invite: Rule(
        _ACT, "leg_id", (BOT_LEG, leg_in(CallState.ESTABLISHED, action="invite"), INVITATIONS_GIVEN), MULTIPARTY
    ),
    c.Answer: Rule(_ACT, "leg_id", (BOT_LEG, leg_allows(CallEvent.ANSWER))),
    c.Reject: Rule(_ACT, "leg_id", (BOT_LEG, leg_allows(CallEvent.REJECT))),
    c.Redirect: Rule(_ACT, "leg_id", (BOT_LEG, leg_allows(CallEvent.REDIRECT), INVITATIONS_GIVEN)),
    c.StartTransfer: Rule(
        _ACT, "leg_id", (BOT_LEG, leg_allows(CallEvent.TRANSFER), NO_TRANSFER, TRANSFEREE_KNOWN, TRANSFER_TARGET)
    ),
    c.HangUp: Rule(_ACT, "leg_id", (BOT_LEG, NOT_RINGING, leg_allows(CallEvent.HANG_UP))),
    c.KeepAlive: Rule(_ACT, "leg_id", (BOT_LEG, leg_allows(CallEvent.KEEP_ALIVE))),
    c.Mute: Rule(_ACT, "leg_id", (BOT_LEG, leg_in(CallState.ESTABLISHED, action="mute"), MUTED_PARTICIPANT)),
    c.MuteSelf: Rule(_ACT, "leg_id", (EXTERNAL_LEG, leg_in(CallState.ESTABLISHED, action="mute"))),
    c.MoveCallback: Rule(_ACT, "leg_id", (BOT_LEG,), on_fail=_IGN),
    c.EndConversation: Rule(_ACT, kinds=MEETING_ONLY),
    c.Admit: Rule(
        _ACT,
        "leg_id",
        (BOT_LEG, leg_in(CallState.ESTABLISHED, action="admit"), MEMBER, PARTICIPANT_KNOWN),
        MEETING_ONLY,
    ),
    c.RemoveParticipant: Rule(
        _ACT, "leg_id", (BOT_LEG, leg_in(CallState.ESTABLISHED, action="remove"), PARTICIPANT_KNOWN), MULTIPARTY
    ),
    c.HoldMusic: Rule(
        _ACT,
        "leg_id",
        (BOT_LEG, leg_in(CallState.ESTABLISHED, action="holdMusic"), PARTICIPANT_KNOWN, ONE_ON_HOLD),
        MEETING_ONLY,
    ),
    c.UpdateRecordingStatus: Rule(
        _ACT,
        "leg_id",
        (BOT_LEG, leg_in(CallState.ESTABLISHED, action="updateRecordingStatus"), RECORDING_STATUS),
        MEETING_ONLY,
    ),
    c.ConfigureMeeting: Rule(_ACT, kinds=MEETING_ONLY, on_fail=_IGN),
    c.ConnectLeg: Rule(_ACT, "leg_id", (EXTERNAL_LEG, RINGING), on_fail=_IGN),
    c.EndLeg: Rule(_ACT, "leg_id", (EXTERNAL_LEG,), on_fail=_IGN),
    c.FailMedia: Rule(_ACT, "leg_id", (LIVE,), on_fail=_IGN),
    c.ReleaseLeg: Rule(
        _ACT,
        "leg_id",
        (EXTERNAL_LEG, leg_in(CallState.ESTABLISHED, action="replace"), NO_TRANSFER),
        frozenset({ConversationKind.PEER_TO_PEER}),
    ),
    c.AcceptTransfer: Rule(_ACT, "transferee_id", (REFERRING, TRANSFEROR_TRANSFERRING), on_fail=_IGN),
    c.CompleteTransfer: Rule(_ACT, "transferee_id", (REFERRING,), on_fail=_IGN),
    c.FailTransfer: Rule(_ACT, "transferee_id", (REFERRING,), on_fail=_IGN),
    c.FireTimers: Rule(_ACT, on_fail=_IGN),
}
"""Every command's rule. A command type missing here cannot be applied."""
