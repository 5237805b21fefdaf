"""The rules every conversation command shares: adding, ringing, accepting, connecting and ending legs, and what
happens to the rest when a leg is gone (transfers in flight, a leg left alone, an empty conversation).

`LegLifecycle` is the base of `domain.conversation.Conversation`; it holds the rules, the aggregate holds the
commands, queries and stored form. Every change made here is recorded as an event with `_emit`.
"""

from __future__ import annotations

from dataclasses import dataclass

from opencomms.domain import commands as c
from opencomms.domain import events as ev
from opencomms.domain import results
from opencomms.domain.calls import CallDirection, CallEvent, CallState, next_state
from opencomms.domain.legs import JsonObj, Leg, LegSpec
from opencomms.domain.participants import Participant, Roster
from opencomms.domain.results import ResultInfo
from opencomms.domain.rules import (
    CONVERSATION_FSM,
    ConversationEvent,
    ConversationKind,
    ConversationState,
    ConversationTimeouts,
)


@dataclass(slots=True)
class Transfer:
    transferor: str
    """Leg id of the bot that asked for the transfer."""
    transferee: str
    """Leg id of the party being moved."""
    target: str
    """Leg id of the new ringing leg at the target; '' while the transferee's gateway transfers it (REFER)."""


_TOLD_TO_PEER = (results.MEDIA_STREAM_FAILED, results.NODE_LOST)
"""Why a peer-to-peer call's other leg ended that its bot learns as such, not just "hung up"."""


class LegLifecycle:
    """The shared rules of a conversation; the state they act on is the aggregate's."""

    id: str
    kind: ConversationKind
    timeouts: ConversationTimeouts
    state: ConversationState
    legs: dict[str, Leg]
    roster: Roster
    transfer: Transfer | None
    failure: ResultInfo | None
    _events: list[ev.Event]
    _now: float
    _dirty: dict[str, None]
    """Leg ids changed, added or removed since the last `take_changes` (an added leg goes last, as in `legs`)."""
    _new: set[str]
    """Leg ids added since the last `take_changes`."""

    def _emit(self, event: ev.Event) -> None:
        self._events.append(event)

    def _conv_event(self, event: ConversationEvent) -> None:
        self.state = CONVERSATION_FSM.apply(self.state, event)

    def _transition(self, leg: Leg, event: CallEvent) -> None:
        leg.state = next_state(leg.state, event)
        leg.version += 1

    def _add(self, spec: LegSpec, direction: CallDirection, state: CallState) -> Leg:
        leg = Leg.from_spec(spec, direction=direction, state=state, now=self._now)
        self.legs[leg.id] = leg
        self._dirty.pop(leg.id, None)
        self._dirty[leg.id] = None
        self._new.add(leg.id)
        return leg

    def _establishing(self, leg: Leg) -> None:
        """A placed or joining leg: a bot's gets its keepAlive window, prompt prefetch and first notification."""
        leg.source.setdefault("participantId", leg.participant_id)
        if not leg.is_external:
            leg.keepalive_deadline = self._now + self.timeouts.keepalive
            self._emit(ev.MediaConfigured(leg.id, leg.kind))
        self._emit(ev.LegEstablishing(leg.id, leg.kind))

    def _invite(
        self,
        invitation: c.Invitation,
        *,
        ring_group: str | None = None,
        source: JsonObj | None = None,
        incoming_context: JsonObj | None = None,
    ) -> Leg | None:
        """Ring a bot or dial an external party; None (and `failure` set) when the target cannot be reached."""
        spec = invitation.leg
        if spec is None:
            self.failure = invitation.failure or results.CANNOT_ROUTE
            return None
        leg = self._add(spec, CallDirection.INCOMING, CallState.INCOMING)
        if source is not None:
            leg.source = dict(source)
        leg.incoming_context = incoming_context
        leg.ring_group = ring_group
        if leg.is_external and leg.external is None:
            leg.external = "dial"
        default = self.timeouts.dial if leg.is_external else self.timeouts.answer
        leg.answer_deadline = self._now + (invitation.ring_for if invitation.ring_for is not None else default)
        self._emit(ev.LegRinging(leg.id, leg.kind, leg.to_doc()))
        return leg

    def _accept(self, leg: Leg) -> None:
        """A ringing leg was answered (by its bot, or by the far end of an external leg)."""
        self._transition(leg, CallEvent.ANSWER)
        leg.answer_deadline = None
        self._emit(ev.LegEstablishing(leg.id, leg.kind))
        if leg.ring_group is not None:
            group, leg.ring_group = leg.ring_group, None
            for sibling in list(self.legs.values()):
                if sibling.ring_group == group and sibling.state is CallState.INCOMING and sibling.id in self.legs:
                    self._end(sibling, results.ANSWERED_ELSEWHERE)
        transfer = self.transfer
        if transfer is not None and transfer.target == leg.id:
            self.transfer = None
            transferor = self.legs.get(transfer.transferor)
            self._connect()
            if transferor is not None and transferor.live:
                self._transition(transferor, CallEvent.TRANSFER_ACCEPTED)
                self._emit(ev.LegStateChanged(transferor.id, transferor.kind, transferor.state))
                self._emit(ev.TransferCompleted(transferor.id))
                self._end(transferor, results.TRANSFER_COMPLETED)
        else:
            self._connect()

    def _connect(self) -> None:
        """Establish every establishing leg once two legs are live (at once in a meeting; not from the lobby)."""
        live = [leg for leg in self.legs.values() if leg.live]
        if len(live) < 2 and self.kind is not ConversationKind.MEETING:
            return
        for leg in live:
            if leg.state is CallState.ESTABLISHING and not leg.in_lobby:
                self._establish(leg)

    def _establish(self, leg: Leg, *, joined: bool = True) -> None:
        """One establishing leg enters the media; `joined`: it enters the roster too (not yet there from the lobby)."""
        self._transition(leg, CallEvent.CONNECTED)
        leg.connected = True
        if self.state is ConversationState.SETUP:
            self._conv_event(ConversationEvent.CONNECT)
        self._emit(ev.LegEstablished(leg.id, leg.kind))
        if joined:
            entry = self.roster.join(self._entry(leg))
            self._emit(ev.ParticipantJoined(entry, entry.sequence))

    def _entry(self, leg: Leg) -> Participant:
        """The roster entry of `leg` as it joins (a meeting's show its recording status)."""
        meeting = getattr(self, "meeting", None)
        recording = None if meeting is None else meeting.recording
        initiator = None if meeting is None else meeting.recording_initiator
        return Participant(
            leg.participant_id,
            leg.id,
            leg.identity,
            leg.source_id,
            leg.muted,
            in_lobby=leg.in_lobby,
            recording=recording,
            recording_initiator=initiator,
        )

    def _fail_transfer(self, transferor: Leg, reason: ResultInfo) -> None:
        if transferor.state in (CallState.TRANSFERRING, CallState.TRANSFER_ACCEPTED):
            self._transition(transferor, CallEvent.TRANSFER_FAILED)
            self._emit(ev.LegStateChanged(transferor.id, transferor.kind, transferor.state, reason))
            self._emit(ev.TransferFailed(transferor.id, reason))

    def _end(self, leg: Leg, reason: ResultInfo, event: CallEvent = CallEvent.END) -> None:
        """Terminate one leg: its final event, its removal, and the consequences for the rest."""
        self._transition(leg, event)
        leg.result_info = reason
        leg.answer_deadline = leg.keepalive_deadline = None
        del self.legs[leg.id]
        self._emit(ev.LegEnded(leg.id, leg.kind, reason, leg.to_doc()))
        left = self.roster.leave(leg.participant_id)
        if left is not None:
            self._emit(ev.ParticipantLeft(left, left.sequence, reason))
        self._after_leg_gone(leg)

    def _after_leg_gone(self, gone: Leg) -> None:
        transfer = self.transfer
        if transfer is not None:
            if gone.id == transfer.target:
                self.transfer = None
                transferor = self.legs.get(transfer.transferor)
                if transferor is not None:
                    unreachable = gone.result_info is not None and gone.result_info.code == 480
                    reason = results.TRANSFER_TARGET_UNREACHABLE if unreachable else results.TRANSFER_FAILED
                    self._fail_transfer(transferor, reason)
            elif gone.id == transfer.transferee:
                self.transfer = None
                target = self.legs.get(transfer.target)
                if target is not None and target.state is CallState.INCOMING:
                    self._end(target, results.REMOTE_HUNG_UP)
                    return
            elif gone.id == transfer.transferor:
                self.transfer = None  # blind transfer: the target keeps ringing
        if gone.result_info in _TOLD_TO_PEER and self.kind is ConversationKind.PEER_TO_PEER:
            self.failure = gone.result_info  # the bot learns why its peer is gone, not just "hung up"
        self._settle()

    def _settle(self) -> None:
        """A leg left alone ends (peer-to-peer and group calls); an empty conversation ends (every kind)."""
        if self.state is ConversationState.ENDED:
            return
        if not self.legs:
            self._conv_event(ConversationEvent.EMPTY)
            self._emit(ev.ConversationEnded(self.id))
            return
        if self.kind is ConversationKind.MEETING:
            return  # a meeting's legs wait, alone or not, until they leave
        live = [leg for leg in self.legs.values() if leg.live]
        pending = [leg for leg in self.legs.values() if leg.state is CallState.INCOMING]
        if not live and len(pending) > 1:
            for leg in pending:  # the caller left before anyone answered: stop ringing every invitation
                if leg.id in self.legs:
                    self._end(leg, results.REMOTE_HUNG_UP)
            return
        candidates = live + pending
        if len(candidates) != 1:
            return
        lone = candidates[0]
        if lone.state is CallState.INCOMING:
            self._end(lone, results.REMOTE_HUNG_UP)
        elif lone.connected and self.failure in _TOLD_TO_PEER:
            self._end(lone, self.failure)
        elif lone.connected:
            group = self.kind is ConversationKind.GROUP
            self._end(lone, results.EVERYONE_LEFT if group else results.REMOTE_HUNG_UP)
        else:
            self._end(lone, self.failure or results.NO_ANSWER)
