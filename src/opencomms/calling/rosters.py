"""Meeting rosters: one roster change computed and serialized once per command, then sent to every bot leg.

A meeting's bot legs (established, not in the lobby) get a roster notification per command that changed the roster:
legs with `callOptions.isDeltaRosterEnabled` get only the changed entries (in `rosterSequenceNumber` order,
removals with `removedState`), the others the whole roster (Graph's classic roster); a leg that has just joined or
been admitted gets the whole roster once, whatever it asked for. The delta and the whole roster are each built and
serialized at most once per command, and each leg's body is the shared bytes with its own `resourceUrl` spliced
in: a join costs O(legs that listen) + O(changes), never O(N^2). Who listens is read from the conversation as the
command left it (no index to keep: the projection runs inside the unit of work and may run again after a stale
write, so it holds no state between commands).
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from opencomms.calling.model import Call
from opencomms.calling.subscribers import Batch, LegQuery
from opencomms.domain import events as ev
from opencomms.domain.calls import CallState
from opencomms.domain.conversation import Conversation
from opencomms.domain.meeting_rules import removed_reason
from opencomms.domain.participants import Participant

_HEAD = (
    b'{"@odata.type":"#microsoft.graph.commsNotifications","value":[{"@odata.type":'
    b'"#microsoft.graph.commsNotification","changeType":"updated","resourceUrl":'
)


def roster_body(call_url: str, payload: bytes) -> bytes:
    """The `updated` notification on `{call_url}/participants` whose resourceData is `payload` (a JSON array)."""
    return b"".join((_HEAD, orjson.dumps(f"{call_url}/participants"), b',"resourceData":', payload, b"}]}"))


class MeetingRosters:
    """Builds the roster notifications of one meeting command (`project`); stateless apart from a byte counter."""

    def __init__(self) -> None:
        self.bytes_built = 0
        """Payload bytes serialized (once per change, not per leg): the roster benchmark reads it."""

    def project(self, batch: Batch, conv: Conversation, legs: LegQuery, send: Callable[[Call, bytes], None]) -> None:
        """Send (through `send`) the roster notifications of `batch`'s events to the listening legs of `conv` (as
        the command left it; `legs`: their views)."""
        changes: list[tuple[Participant, str | None]] = []
        new: set[str] = set()
        for event in batch.events:
            if isinstance(event, ev.ParticipantJoined | ev.ParticipantUpdated):
                changes.append((event.participant, None))
            elif isinstance(event, ev.ParticipantLeft):
                changes.append((event.participant, removed_reason(event.reason)))
            elif isinstance(event, ev.LegEstablished) and not event.kind.external:
                new.add(event.leg_id)
        if not changes and not new:
            return
        delta: bytes | None = None
        whole: bytes | None = None
        for leg in conv.legs.values():
            if leg.is_external or leg.state is not CallState.ESTABLISHED:
                continue  # phones (their gateway speaks for them), lobby and ringing legs
            if leg.id in new or (not _wants_delta(leg.attrs) and changes):
                if whole is None:
                    whole = self._whole(batch, changes)
                payload = whole
            elif changes:
                if delta is None:
                    delta = self._delta(changes)
                payload = delta
            else:
                continue
            call = legs.leg(leg.id)
            if call is not None:
                send(call, roster_body(call.url, payload))

    # -- internals ------------------------------------------------------------------------------------------
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


def _wants_delta(attrs: dict[str, object]) -> bool:
    options = attrs.get("call_options")
    return isinstance(options, dict) and bool(options.get("isDeltaRosterEnabled"))
