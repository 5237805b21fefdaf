"""Meeting rosters: one roster change computed and serialized once per command, then sent to every bot leg.

A meeting's bot legs (established, not in the lobby) get a roster notification per command that changed the roster:
legs with `callOptions.isDeltaRosterEnabled` get only the changed entries (in `rosterSequenceNumber` order,
removals with `removedState`), the others the whole roster (Graph's classic roster); a leg that has just joined or
been admitted gets the whole roster once, whatever it asked for. The delta and the whole roster are each built and
serialized at most once per command, and each leg's body is the shared bytes with its own `resourceUrl` spliced
in: a join costs O(legs that listen) + O(changes), never O(N^2). Who listens is an index kept from the events (and
rebuilt from the roster after a restart or a rolled-back unit).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from opencomms.calling.model import Call
from opencomms.calling.subscribers import Batch, LegQuery
from opencomms.domain import events as ev
from opencomms.domain.calls import CallState
from opencomms.domain.meeting_rules import removed_reason
from opencomms.domain.participants import Participant

_HEAD = (
    b'{"@odata.type":"#microsoft.graph.commsNotifications","value":[{"@odata.type":'
    b'"#microsoft.graph.commsNotification","changeType":"updated","resourceUrl":'
)


def roster_body(call_url: str, payload: bytes) -> bytes:
    """The `updated` notification on `{call_url}/participants` whose resourceData is `payload` (a JSON array)."""
    return b"".join((_HEAD, orjson.dumps(f"{call_url}/participants"), b',"resourceData":', payload, b"}]}"))


@dataclass(slots=True)
class _Listener:
    call: Call
    delta: bool
    new: bool = False


@dataclass(slots=True)
class _Pending:
    changes: list[tuple[Participant, str | None]] = field(default_factory=list)


class MeetingRosters:
    """The listeners of every live meeting, and the roster changes of the command being staged."""

    def __init__(self, legs: LegQuery, send: Callable[[Call, bytes], None]) -> None:
        self.legs = legs
        self.send = send
        self._listeners: dict[str, dict[str, _Listener]] = {}
        self._pending: _Pending | None = None
        self.bytes_built = 0
        """Payload bytes serialized (once per change, not per leg): the roster benchmark reads it."""

    # -- events of the batch being staged -------------------------------------------------------------------
    def staged(self, batch: Batch, event: ev.Event) -> None:
        listeners = self._index(batch)
        if isinstance(event, ev.ParticipantJoined | ev.ParticipantUpdated):
            self._changes().append((event.participant, None))
        elif isinstance(event, ev.ParticipantLeft):
            self._changes().append((event.participant, removed_reason(event.reason)))
        elif isinstance(event, ev.LegEstablished) and not event.kind.external:
            call = self.legs.leg(event.leg_id)
            if call is not None:
                listeners[call.id] = _Listener(call, _wants_delta(call), new=True)
        elif isinstance(event, ev.LegEnded):
            listeners.pop(event.leg_id, None)
        elif isinstance(event, ev.ConversationEnded):
            self._listeners.pop(batch.conversation_id, None)

    def staged_done(self, batch: Batch) -> None:
        pending, self._pending = self._pending, None
        listeners = self._listeners.get(batch.conversation_id)
        if not listeners:
            return
        changes = [] if pending is None else pending.changes
        delta: bytes | None = None
        whole: bytes | None = None
        for listener in listeners.values():
            if listener.new or (not listener.delta and changes):
                if whole is None:
                    whole = self._whole(batch, changes)
                payload = whole
            elif changes:
                if delta is None:
                    delta = self._delta(changes)
                payload = delta
            else:
                continue
            listener.new = False
            self.send(listener.call, roster_body(listener.call.url, payload))

    def forget(self, conversation_id: str) -> None:
        """A unit rolled back: its views were rebuilt; the index is rebuilt from the roster on the next change."""
        self._listeners.pop(conversation_id, None)
        self._pending = None

    # -- internals ------------------------------------------------------------------------------------------
    def _changes(self) -> list[tuple[Participant, str | None]]:
        if self._pending is None:
            self._pending = _Pending()
        return self._pending.changes

    def _index(self, batch: Batch) -> dict[str, _Listener]:
        listeners = self._listeners.get(batch.conversation_id)
        if listeners is None:
            listeners = self._listeners[batch.conversation_id] = {}
            for p in batch.roster_before:  # after a restart or a rollback: who listens, from the roster
                call = self.legs.leg(p.leg_id)
                if call is not None and not call.is_external and call.state is CallState.ESTABLISHED:
                    listeners[call.id] = _Listener(call, _wants_delta(call))
        return listeners

    def _delta(self, changes: list[tuple[Participant, str | None]]) -> bytes:
        body = orjson.dumps([p.to_wire(with_sequence=True, removed=removed) for p, removed in changes])
        self.bytes_built += len(body)
        return body

    def _whole(self, batch: Batch, changes: list[tuple[Participant, str | None]]) -> bytes:
        roster = {p.id: p for p in batch.roster_before}
        for p, removed in changes:
            if removed is None:
                roster[p.id] = p
            else:
                roster.pop(p.id, None)
        body = orjson.dumps([p.to_wire(with_sequence=True) for p in roster.values()])
        self.bytes_built += len(body)
        return body


def _wants_delta(call: Call) -> bool:
    return bool((call.call_options or {}).get("isDeltaRosterEnabled"))
