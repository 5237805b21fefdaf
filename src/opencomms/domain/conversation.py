"""The `Conversation` aggregate: legs and participants of one conversation, changed only by commands.

`apply(command, now)` checks the command's rule (`domain.rules.RULES`: conversation table, leg table, named
guards) before it changes anything, then applies it and returns the events, in order. Sans-I/O like
`sip/transaction.py`: no clock, no ids, no network; a later step wires it behind a ledger and subscribers.
Ending rules by kind: in a peer-to-peer or group call a leg left alone ends (`_settle`, as `CallService` does);
in a meeting a leg alone waits, and the conversation ends when its last leg is gone (or at the meeting's end time);
the meeting commands (lobby, admit, remove, hold music, recording status) are `domain.meeting_rules`.
`version` counts the commands applied (the ledger's fencing token); dropped stale commands do not count.
Stored form: `to_doc` (the whole document), or `header_doc` plus one part per leg and per roster entry, of which
`take_changes` says which changed since the last write (the legs a command names or its events name, the roster
entries that joined, changed or left): a command on a meeting of 1000 legs writes what it changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opencomms.domain import commands as c
from opencomms.domain import events as ev
from opencomms.domain import results
from opencomms.domain.calls import CallDirection, CallEvent, CallState
from opencomms.domain.errors import BadRequest, InvalidState, NotFound, OpenCommsError
from opencomms.domain.ids import normalize_id
from opencomms.domain.legs import JsonObj, Leg, result_doc, result_from_doc
from opencomms.domain.lifecycle import Transfer
from opencomms.domain.meeting_rules import MEETING_HANDLERS, MeetingCommands, MeetingState
from opencomms.domain.participants import Participant, Roster
from opencomms.domain.results import ResultInfo
from opencomms.domain.rules import (
    CONVERSATION_FSM,
    RULES,
    ConversationEvent,
    ConversationKind,
    ConversationState,
    ConversationTimeouts,
    OnFail,
)

DOC_FORMAT = 1
DEFAULT_TIMEOUTS = ConversationTimeouts()
_LEG_FIELDS = ("leg_id", "by_leg_id", "target_leg_id", "transferor_id", "transferee_id")
"""Fields of events that name a leg of the conversation (a leg an event names may have changed)."""


@dataclass(frozen=True, slots=True)
class Changes:
    """What changed in a conversation since its last write (`Conversation.take_changes`)."""

    whole: bool
    """Nothing of it was written in parts yet (new, or loaded from the store): write every part."""
    legs: tuple[str, ...]
    """Legs added or changed, still in the conversation (the added ones in the order they came)."""
    legs_gone: tuple[str, ...]
    legs_new: tuple[str, ...]
    """Legs added and still in the conversation."""
    participants: tuple[str, ...]
    """Roster entries joined or updated (the joined ones in roster order)."""
    participants_left: tuple[str, ...]


class Conversation(MeetingCommands):
    """One conversation (Graph's callChainId). Mutable, but only through `apply`."""

    def __init__(
        self,
        id: str,
        tenant_id: str,
        kind: ConversationKind,
        *,
        timeouts: ConversationTimeouts = DEFAULT_TIMEOUTS,
    ) -> None:
        self.id = id
        self.tenant_id = tenant_id
        self.kind = kind
        self.timeouts = timeouts
        self.state = ConversationState.NEW
        self.version = 0
        self.legs: dict[str, Leg] = {}
        self.roster = Roster()
        self.transfer: Transfer | None = None
        self.failure: ResultInfo | None = None
        """Why the last pending leg failed, reported to a leg that ends up alone before connecting."""
        self.meeting = MeetingState() if kind is ConversationKind.MEETING else None
        self._events: list[ev.Event] = []
        self._now = 0.0
        self._dirty: dict[str, None] = {}
        self._new: set[str] = set()
        self._whole = True
        self._deadline_of: dict[str, float] = {}
        """The earliest deadline of each leg that has one (kept for the legs each command changes)."""
        self.touched: frozenset[str] = frozenset()
        """The legs the last command added, changed or removed."""

    # -- queries ---------------------------------------------------------------------------------------------
    def find_leg(self, leg_id: str) -> Leg | None:
        return self.legs.get(leg_id)

    def leg(self, leg_id: str) -> Leg:
        found = self.legs.get(leg_id)
        if found is None:
            raise NotFound(f"No call with id {leg_id!r}.")
        return found

    def participant_of(self, leg_id: str) -> str:
        return self.leg(leg_id).participant_id

    def participants_for(self, leg_id: str) -> list[Participant]:
        """GET participants as leg `leg_id` sees it (as `CallService.participants` does): every live leg, in the
        order the legs came, and its own leg whatever its state; roster entries where the leg is established."""
        me = self.leg(leg_id)
        out = []
        for leg in self.legs.values() if not me.in_lobby else (me,):  # the lobby sees nothing of the meeting
            if leg.id != leg_id and not leg.live:
                continue
            entry = self.roster.get(leg.participant_id)
            out.append(entry or Participant(leg.participant_id, leg.id, leg.identity, leg.source_id, leg.muted))
        return out

    def transferee_of(self, leg_id: str, participant_id: str | None) -> Leg:
        """The live peer leg `leg_id` may transfer (BadRequest if none); the router asks before a REFER."""
        others = [leg for leg in self.legs.values() if leg.id != leg_id and leg.live]
        if participant_id:
            found = next((leg for leg in others if leg.participant_id == normalize_id(participant_id)), None)
            if found is None:
                raise BadRequest("'transferee.participantId' is not a participant of this call.")
            return found
        if len(others) == 1:
            return others[0]
        raise BadRequest("'transferee' with a participantId is required to transfer out of a group call.")

    def next_deadline(self) -> float | None:
        first = min(self._deadline_of.values(), default=None)
        ends = self._meeting_deadline()
        return ends if first is None or (ends is not None and ends < first) else first

    # -- commands --------------------------------------------------------------------------------------------
    def check(self, command: c.Command) -> bool:
        """Raise the command's typed error if it may not be applied; False if it is stale and would be dropped."""
        rule = RULES[type(command)]
        leg = None
        try:
            if self.state is ConversationState.ENDED:
                raise NotFound("The call has ended.")
            if self.kind not in rule.kinds:
                raise InvalidState(f"'{type(command).__name__}' is not allowed in a {self.kind.value} conversation.")
            if not CONVERSATION_FSM.allows(self.state, rule.conversation_event):
                raise InvalidState(f"'{type(command).__name__}' is not allowed while the conversation is {self.state}.")
            if rule.leg_field is not None:
                leg = self.leg(str(getattr(command, rule.leg_field)))
            for guard in rule.guards:
                error = guard.check(self, command, leg)
                if error is not None:
                    raise error
        except OpenCommsError:
            if rule.on_fail is OnFail.IGNORE:
                return False
            raise
        return True

    def apply(self, command: c.Command, now: float) -> list[ev.Event]:
        """Apply one command at time `now`; its events in order. Nothing changes when it raises."""
        if not self.check(command):
            self.touched = frozenset()
            return []
        self._events, self._now = [], now
        event = RULES[type(command)].conversation_event
        if event is not ConversationEvent.ACT:
            self._conv_event(event)
        self._handlers[type(command)](self, command)
        self.version += 1
        events, self._events = self._events, []
        self._touch(command, events)
        return events

    def _touch(self, command: c.Command, events: list[ev.Event]) -> None:
        """Note the legs the command and its events name: changed (or gone) since the last write."""
        touched = set()
        leg_field = RULES[type(command)].leg_field
        if leg_field is not None:
            touched.add(str(getattr(command, leg_field)))
        for event in events:
            for name in _LEG_FIELDS:
                leg_id = getattr(event, name, None)
                if leg_id:
                    touched.add(leg_id)
            participant = getattr(event, "participant", None)
            if participant is not None:
                touched.add(participant.leg_id)
        dirty, deadline_of, legs = self._dirty, self._deadline_of, self.legs
        for leg_id in touched:
            dirty.setdefault(leg_id)
            leg = legs.get(leg_id)
            first = None if leg is None else min(leg.deadlines(), default=None)
            if first is None:
                deadline_of.pop(leg_id, None)
            else:
                deadline_of[leg_id] = first
        self.touched = frozenset(touched)

    def take_changes(self) -> Changes:
        """What changed since the last call (see `Changes`), and start again from nothing changed."""
        legs = self.legs
        changed = tuple(leg_id for leg_id in self._dirty if leg_id in legs)
        gone = tuple(leg_id for leg_id in self._dirty if leg_id not in legs)
        new = tuple(leg_id for leg_id in self._new if leg_id in legs)
        participants, left = self.roster.take_changes()
        whole, self._whole = self._whole, False
        self._dirty, self._new = {}, set()
        return Changes(whole, changed, gone, new, tuple(participants), tuple(left))

    def _create(self, cmd: c.Create) -> None:
        origin = self._add(cmd.origin, CallDirection.OUTGOING, CallState.ESTABLISHING)
        self._establishing(origin)
        for invitation in cmd.invitations:
            self._invite(invitation, source=origin.source)
        self._settle()

    def _invite_cmd(self, cmd: c.Invite) -> None:
        inviter = self.legs[cmd.leg_id]
        source = {
            "@odata.type": "#microsoft.graph.participantInfo",
            "identity": inviter.identity,
            "participantId": inviter.participant_id,
        }
        for invitation in cmd.invitations:
            if self._invite(invitation, source=source) is None:
                self._emit(ev.InvitationFailed(cmd.leg_id, invitation.failure or results.CANNOT_ROUTE))

    def _answer(self, cmd: c.Answer) -> None:
        leg = self.legs[cmd.leg_id]
        leg.attrs.update({k: v for k, v in cmd.attrs.items() if v is not None or k != "callback_uri"})
        self._emit(ev.MediaConfigured(leg.id, leg.kind))
        leg.keepalive_deadline = self._now + self.timeouts.keepalive
        self._accept(leg)

    def _reject(self, cmd: c.Reject) -> None:
        leg = self.legs[cmd.leg_id]
        if cmd.callback_uri:
            leg.attrs["callback_uri"] = cmd.callback_uri
        self.failure = results.REJECT_REASONS.get(cmd.reason.lower(), results.DECLINED)
        self._end(leg, results.REJECTED_BY_BOT, CallEvent.REJECT)

    def _redirect(self, cmd: c.Redirect) -> None:
        leg = self.legs[cmd.leg_id]
        several = len(cmd.invitations) > 1
        if cmd.callback_uri:
            leg.attrs["callback_uri"] = cmd.callback_uri
        default = self.timeouts.redirect_multiple if several else self.timeouts.redirect_single
        ring_for = cmd.timeout if cmd.timeout is not None else default
        self._transition(leg, CallEvent.REDIRECT)
        group = f"{leg.id}/redirect" if several else None
        for invitation in cmd.invitations:
            timed = c.Invitation(invitation.leg, invitation.failure, invitation.ring_for or ring_for)
            rung = self._invite(timed, ring_group=group, source=leg.source)
            if rung is None or several:
                continue
            for peer in [p for p in self.legs.values() if p.live]:
                peer.call_routes = [
                    {
                        "@odata.type": "#microsoft.graph.callRoute",
                        "original": leg.identity,
                        "final": rung.identity,
                        "routingType": "forwarded",
                    }
                ]
                peer.version += 1
                self._emit(ev.LegRouted(peer.id, peer.kind, tuple(peer.call_routes)))
        self._end(leg, results.REDIRECTED)

    def _start_transfer(self, cmd: c.StartTransfer) -> None:
        leg = self.legs[cmd.leg_id]
        transferee = self.transferee_of(cmd.leg_id, cmd.transferee_participant_id)
        self._transition(leg, CallEvent.TRANSFER)
        self._emit(ev.LegStateChanged(leg.id, leg.kind, leg.state))
        if cmd.by_refer:
            self.transfer = Transfer(leg.id, transferee.id, "")
            self._emit(ev.TransferStarted(leg.id, transferee.id, transferee.kind, ev.TransferMode.REFER, cmd.target))
        else:
            assert cmd.invitation is not None
            self._bridge(leg, transferee, cmd.target, cmd.invitation)

    def _bridge(self, transferor: Leg, transferee: Leg, target: JsonObj, invitation: c.Invitation) -> None:
        """Transfer inside the node: ring (or dial) the target as a new leg of the conversation."""
        rung = self._invite(
            invitation,
            source={
                "@odata.type": "#microsoft.graph.participantInfo",
                "identity": transferee.identity,
                "participantId": transferee.participant_id,
            },
            incoming_context={
                "@odata.type": "#microsoft.graph.incomingContext",
                "sourceParticipantId": transferee.participant_id,
                "transferor": transferor.identity,
            },
        )
        if rung is None:
            self._fail_transfer(transferor, invitation.failure or results.TRANSFER_TARGET_UNREACHABLE)
            return
        self.transfer = Transfer(transferor.id, transferee.id, rung.id)
        mode = ev.TransferMode.BRIDGE
        self._emit(ev.TransferStarted(transferor.id, transferee.id, transferee.kind, mode, target, rung.id))

    def _hang_up(self, cmd: c.HangUp) -> None:
        leg = self.legs[cmd.leg_id]
        self._transition(leg, CallEvent.HANG_UP)
        self._emit(ev.LegStateChanged(leg.id, leg.kind, leg.state))
        self._end(leg, results.ENDED_BY_DELETE)

    def _keep_alive(self, cmd: c.KeepAlive) -> None:
        self.legs[cmd.leg_id].keepalive_deadline = self._now + self.timeouts.keepalive

    def _mute(self, cmd: c.Mute) -> None:
        leg = self.legs[cmd.leg_id]
        pid = cmd.participant_id or leg.participant_id
        entry = self.roster.get(pid)
        target = self.legs.get(entry.leg_id) if entry is not None else leg
        if target is not None:
            if target.muted == cmd.muted:
                return
            target.muted = cmd.muted
            target.version += 1
            self._emit(ev.LegMuted(target.id, target.kind, cmd.muted))
        if entry is not None and entry.muted != cmd.muted:
            server = cmd.muted and entry.leg_id != leg.id  # muted by another participant: serverMuted
            updated = self.roster.update(pid, muted=cmd.muted, server_muted=server)
            self._emit(ev.ParticipantUpdated(updated, updated.sequence))

    def _mute_self(self, cmd: c.MuteSelf) -> None:
        self._mute(c.Mute(cmd.leg_id, cmd.muted))

    def _move_callback(self, cmd: c.MoveCallback) -> None:
        self.legs[cmd.leg_id].attrs["callback_uri"] = cmd.url

    def _end_conversation(self, cmd: c.EndConversation) -> None:
        for leg in list(self.legs.values()):
            if leg.id in self.legs:
                self._end(leg, cmd.reason)

    def _connect_leg(self, cmd: c.ConnectLeg) -> None:
        self._accept(self.legs[cmd.leg_id])

    def _end_leg(self, cmd: c.EndLeg) -> None:
        leg = self.legs[cmd.leg_id]
        if leg.state is CallState.INCOMING:
            self.failure = cmd.reason
        self._end(leg, cmd.reason)

    def _release_leg(self, cmd: c.ReleaseLeg) -> None:
        leg = self.legs.pop(cmd.leg_id)
        leg.version += 1
        self._emit(ev.LegReleased(leg.id, leg.kind, leg.to_doc()))
        left = self.roster.leave(leg.participant_id)
        if left is not None:
            self._emit(ev.ParticipantLeft(left, left.sequence, cmd.reason))
        for other in list(self.legs.values()):
            if other.id in self.legs:
                self._end(other, cmd.reason)
        self._settle()

    def _fail_media(self, cmd: c.FailMedia) -> None:
        self._end(self.legs[cmd.leg_id], cmd.reason)

    def _accept_transfer(self, cmd: c.AcceptTransfer) -> None:
        assert self.transfer is not None
        transferor = self.legs[self.transfer.transferor]
        self._transition(transferor, CallEvent.TRANSFER_ACCEPTED)
        self._emit(ev.LegStateChanged(transferor.id, transferor.kind, transferor.state))
        self._emit(ev.TransferAccepted(transferor.id))

    def _complete_transfer(self, cmd: c.CompleteTransfer) -> None:
        assert self.transfer is not None
        transferor = self.legs[self.transfer.transferor]
        self.transfer = None
        if transferor.state is CallState.TRANSFERRING:
            self._transition(transferor, CallEvent.TRANSFER_ACCEPTED)
            self._emit(ev.LegStateChanged(transferor.id, transferor.kind, transferor.state))
        self._emit(ev.TransferCompleted(transferor.id))
        self._end(transferor, results.TRANSFER_COMPLETED)
        if (transferee := self.legs.get(cmd.transferee_id)) is not None:
            self._end(transferee, results.TRANSFER_COMPLETED)

    def _fail_transfer_cmd(self, cmd: c.FailTransfer) -> None:
        assert self.transfer is not None
        transferor = self.legs[self.transfer.transferor]
        transferee = self.legs[cmd.transferee_id]
        self.transfer = None
        if cmd.bridge is not None and transferor.state is CallState.TRANSFERRING:
            spec = cmd.bridge.leg
            target = spec.targets[0] if spec is not None and spec.targets else {}
            self._bridge(transferor, transferee, target, cmd.bridge)
        else:
            self._fail_transfer(transferor, cmd.reason)

    def _fire_timers(self, cmd: c.FireTimers) -> None:
        now = self._now
        due = sorted((d, leg.id) for leg in self.legs.values() for d in leg.deadlines() if d <= now)
        for _, leg_id in due:
            leg = self.legs.get(leg_id)
            if leg is None:
                continue
            if leg.state is CallState.INCOMING and leg.answer_deadline is not None and leg.answer_deadline <= now:
                self.failure = results.NO_ANSWER
                self._end(leg, results.ANSWER_TIMEOUT)
            elif leg.in_lobby and leg.answer_deadline is not None and leg.answer_deadline <= now:
                self._end(leg, results.LOBBY_TIMEOUT)  # nobody admitted it in time
            elif leg.keepalive_deadline is not None and leg.keepalive_deadline <= now and leg.live:
                self._end(leg, results.KEEPALIVE_LAPSED)
        self._meeting_over(now)

    _handlers: dict[type, Callable[[Conversation, Any], None]] = {
        c.Create: _create,
        c.Invite: _invite_cmd,
        c.Answer: _answer,
        c.Reject: _reject,
        c.Redirect: _redirect,
        c.StartTransfer: _start_transfer,
        c.HangUp: _hang_up,
        c.KeepAlive: _keep_alive,
        c.Mute: _mute,
        c.MuteSelf: _mute_self,
        c.MoveCallback: _move_callback,
        c.EndConversation: _end_conversation,
        c.ConnectLeg: _connect_leg,
        c.EndLeg: _end_leg,
        c.ReleaseLeg: _release_leg,
        c.FailMedia: _fail_media,
        c.AcceptTransfer: _accept_transfer,
        c.CompleteTransfer: _complete_transfer,
        c.FailTransfer: _fail_transfer_cmd,
        c.FireTimers: _fire_timers,
        **MEETING_HANDLERS,
    }

    # -- stored form -----------------------------------------------------------------------------------------
    def to_doc(self) -> JsonObj:
        doc = self.header_doc()
        doc["legs"] = [leg.to_doc() for leg in self.legs.values()]
        doc["roster"]["participants"] = [p.to_doc() for p in self.roster.entries()]
        return doc

    def header_doc(self) -> JsonObj:
        """The stored form but the legs and the roster's entries (their lists are empty)."""
        t = self.transfer
        return {
            "format": DOC_FORMAT,
            "id": self.id,
            "tenant_id": self.tenant_id,
            "kind": self.kind.value,
            "state": self.state.value,
            "version": self.version,
            "legs": [],
            "roster": {"sequence": self.roster.sequence, "participants": []},
            "transfer": None
            if t is None
            else {"transferor": t.transferor, "transferee": t.transferee, "target": t.target},
            "failure": None if self.failure is None else result_doc(self.failure),
            "meeting": None if self.meeting is None else self.meeting.to_doc(),
        }

    @classmethod
    def from_doc(cls, doc: JsonObj, *, timeouts: ConversationTimeouts = DEFAULT_TIMEOUTS) -> Conversation:
        conv = cls(doc["id"], doc["tenant_id"], ConversationKind(doc["kind"]), timeouts=timeouts)
        conv.state = ConversationState(doc["state"])
        conv.version = int(doc["version"])
        conv.legs = {leg["id"]: Leg.from_doc(leg) for leg in doc["legs"]}
        conv.roster = Roster.from_doc(doc["roster"])
        for leg in conv.legs.values():
            first = min(leg.deadlines(), default=None)
            if first is not None:
                conv._deadline_of[leg.id] = first
        t = doc.get("transfer")
        conv.transfer = None if t is None else Transfer(**t)
        conv.failure = result_from_doc(doc.get("failure"))
        if (meeting := doc.get("meeting")) is not None:
            conv.meeting = MeetingState.from_doc(meeting)
        return conv
