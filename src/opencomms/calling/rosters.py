"""Meeting rosters: one roster change computed and serialized once per command, then sent to every bot leg.

A meeting's bot legs (established, not in the lobby) get a roster notification per command that changed the roster:
legs with `callOptions.isDeltaRosterEnabled` get only the changed entries (in `rosterSequenceNumber` order,
removals with `removedState`), the others the whole roster (Graph's classic roster); a leg that has just joined or
been admitted gets the whole roster once, whatever it asked for. The delta and the whole roster are each built and
serialized at most once per command, and each leg's body is the shared bytes with its own `resourceUrl` spliced
in: a join costs O(legs that listen) + O(changes), never O(N^2). Who listens is an index kept from the events, per
conversation object: the projection runs inside the unit of work, before its commit, so the index is trusted only
for the same in-memory conversation at a later version (the ledger drops a conversation whose unit failed and
loads a fresh one, so an index touched by a write that did not land is never reused); otherwise it is rebuilt from
the conversation as the command left it. The delta of a change goes to every listening leg at once (`send_many`):
the projector may carry the notifications of many legs on one webhook in one POST (`roster_many_body`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass

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


_ITEM = b'{"@odata.type":"#microsoft.graph.commsNotification","changeType":"updated","resourceUrl":'
_MANY = b'{"@odata.type":"#microsoft.graph.commsNotifications","value":['


def roster_body(call_url: str, payload: bytes) -> bytes:
    """The `updated` notification on `{call_url}/participants` whose resourceData is `payload` (a JSON array)."""
    return b"".join((_HEAD, orjson.dumps(f"{call_url}/participants"), b',"resourceData":', payload, b"}]}"))


def roster_many_body(call_urls: list[str], payload: bytes) -> bytes:
    """One commsNotifications body carrying the `updated` notification of each call's participants, all with
    resourceData `payload` (Graph's `value` is a list: a webhook may get several notifications in one POST)."""
    tail = b',"resourceData":' + payload + b"}"
    items = [b"".join((_ITEM, orjson.dumps(f"{url}/participants"), tail)) for url in call_urls]
    return b"".join((_MANY, b",".join(items), b"]}"))


@dataclass(slots=True)
class _Listening:
    conv: weakref.ref[Conversation]
    version: int
    legs: dict[str, bool]
    """Listening leg id -> wants delta rosters."""


class MeetingRosters:
    """Builds the roster notifications of one meeting command (`project`)."""

    def __init__(self) -> None:
        self._index: dict[str, _Listening] = {}
        self.bytes_built = 0
        """Payload bytes serialized (once per change, not per leg): the roster benchmark reads it."""
        self.rebuilt = 0
        """Listener indexes rebuilt from a conversation (a restart, a failed or rerun unit, another node's write)."""
        self._prune_at = 1024

    def project(
        self,
        batch: Batch,
        conv: Conversation,
        legs: LegQuery,
        send: Callable[[Call, bytes], None],
        send_many: Callable[[list[Call], bytes], None] | None = None,
    ) -> None:
        """Send (through `send`, one leg's body) the roster notifications of `batch`'s events to the listening legs
        of `conv` (as the command left it; `legs`: their views); the legs that get the delta, through `send_many`
        (the legs, the delta payload) when it is given."""
        listening = self._listening(conv)
        changes: list[tuple[Participant, str | None]] = []
        new: set[str] = set()
        for event in batch.events:
            if isinstance(event, ev.ParticipantJoined | ev.ParticipantUpdated):
                changes.append((event.participant, None))
            elif isinstance(event, ev.ParticipantLeft):
                changes.append((event.participant, removed_reason(event.reason)))
            elif isinstance(event, ev.LegEstablished) and not event.kind.external:
                leg = conv.legs.get(event.leg_id)
                if leg is not None:
                    listening[leg.id] = _wants_delta(leg.attrs)
                    new.add(leg.id)
            elif isinstance(event, ev.LegEnded | ev.LegReleased):
                listening.pop(event.leg_id, None)
            elif isinstance(event, ev.ConversationEnded):
                self._index.pop(conv.id, None)
                return
        if not changes and not new:
            return
        delta: bytes | None = None
        whole: bytes | None = None
        to_many: list[Call] = []
        for leg_id, wants_delta in listening.items():
            if leg_id in new or (not wants_delta and changes):
                if whole is None:
                    whole = self._whole(batch, changes)
                payload = whole
            elif changes:
                if delta is None:
                    delta = self._delta(changes)
                payload = delta
            else:
                continue
            call = legs.leg(leg_id)
            if call is None:
                continue
            if payload is delta and send_many is not None:
                to_many.append(call)
            else:
                send(call, roster_body(call.url, payload))
        if to_many and delta is not None and send_many is not None:
            send_many(to_many, delta)

    def forget(self, conversation_id: str) -> None:
        """Drop a conversation's listener index (it is rebuilt from the conversation when next needed)."""
        self._index.pop(conversation_id, None)

    # -- internals ------------------------------------------------------------------------------------------
    def _listening(self, conv: Conversation) -> dict[str, bool]:
        hit = self._index.get(conv.id)
        if hit is not None and hit.conv() is conv and conv.version > hit.version:
            hit.version = conv.version
            return hit.legs
        self.rebuilt += 1
        if len(self._index) >= self._prune_at:  # conversations that left memory (ended elsewhere, evicted)
            for conv_id in [k for k, v in self._index.items() if v.conv() is None]:
                del self._index[conv_id]
            self._prune_at = max(1024, 2 * len(self._index))
        legs = {
            leg.id: _wants_delta(leg.attrs)
            for leg in conv.legs.values()
            if not leg.is_external and leg.state is CallState.ESTABLISHED  # phones, lobby and ringing legs: no
        }
        self._index[conv.id] = _Listening(weakref.ref(conv), conv.version, legs)
        return legs

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
