"""The notification projector: a conversation's events -> Graph `commsNotifications` to the bots' webhooks.

Bodies come from `calling.notifications` (the same builders as before the conversation core, so the JSON is
unchanged). A roster change is computed once per run of Participant* events of a group call (legs that connect
together make one run, as the calls slice sent them), by replaying the events onto the roster as it was before the
command, and sent to each bot leg in it; external legs get nothing
(their gateway speaks for them). Meetings' rosters (classic and delta, serialized once per change whatever the
number of listening legs) are `calling.rosters.MeetingRosters`; finished operations reported by events (hold music)
become their `deleted` operation notifications. Notifications are submitted inside the unit of work: the outbox
releases them only if it commits.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import orjson

from opencomms.calling import notifications as notes
from opencomms.calling.model import Call
from opencomms.calling.rosters import MeetingRosters
from opencomms.calling.subscribers import Batch, LegQuery, Subscriber
from opencomms.directory import Directory
from opencomms.domain import events as ev
from opencomms.domain.legs import LegKind
from opencomms.domain.participants import Participant
from opencomms.domain.rules import ConversationKind

log = logging.getLogger("opencomms.calls")

_ACTIVE = {"@odata.type": "#microsoft.graph.callMediaState", "audio": "active"}
_PARTICIPANT_EVENTS = (ev.ParticipantJoined, ev.ParticipantUpdated, ev.ParticipantLeft)


class Sink:
    """Where notification bodies go (the dispatcher's durable outbox)."""

    def submit(self, *, order_key: str, app_id: str, tenant_id: str, url: str, body: bytes) -> object: ...


class NotificationProjector(Subscriber):
    def __init__(self, legs: LegQuery, directory: Directory, sink: Any) -> None:
        self.legs = legs
        self.directory = directory
        self.sink: Sink = sink
        self._roster: dict[str, Participant] | None = None
        self._pending = False
        self._ended: dict[str, Call] = {}
        self.meetings = MeetingRosters(legs, self.notify_bytes)
        """Meeting rosters (classic and delta), one serialization per change."""

    # -- public: other services notify through the projector too --------------------------------------------
    def notify(self, call: Call, body: dict[str, Any]) -> None:
        self.notify_bytes(call, orjson.dumps(body))

    def notify_bytes(self, call: Call, body: bytes) -> None:
        """Queue an already serialized notification of `call` (meeting rosters share one serialization)."""
        if call.is_external:
            return  # a phone has no webhook: the gateway speaks for it
        url = call.callback_uri
        if not url:
            app = self.directory.get_app(call.app_id)
            url = None if app is None else app.callback_url
        if not url:
            log.warning("notification dropped: no callback URL", extra={"call_id": call.id})
            return
        self.sink.submit(order_key=call.id, app_id=call.app_id, tenant_id=call.tenant_id, url=url, body=body)

    # -- Subscriber ----------------------------------------------------------------------------------------
    def staged(self, batch: Batch, event: ev.Event) -> None:
        if batch.kind is ConversationKind.MEETING:
            self.meetings.staged(batch, event)
            if isinstance(event, _PARTICIPANT_EVENTS):
                return
        if isinstance(event, _PARTICIPANT_EVENTS):
            if batch.kind is not ConversationKind.GROUP:
                return
            roster = self._begin_roster(batch)
            if isinstance(event, ev.ParticipantLeft):
                roster.pop(event.participant.id, None)
            else:
                roster[event.participant.id] = event.participant
            self._pending = True
            return
        if self._pending and not isinstance(event, ev.LegEstablished):  # legs connecting together: one roster
            self._send_roster(batch)
        if getattr(event, "kind", None) is not LegKind.BOT:
            return
        if isinstance(event, ev.LegRinging):
            rung = batch.view(event.leg)
            self.notify(rung, notes.call_created(rung))
        elif isinstance(event, ev.LegEnded):
            ended = self._ended[event.leg_id] = batch.view(event.leg)
            self.notify(ended, notes.call_deleted(ended))
        elif (call := self._lookup(batch, event)) is not None:
            if isinstance(event, ev.LegEstablishing):
                self.notify(call, notes.call_updated(call, state="establishing"))
            elif isinstance(event, ev.LegEstablished):
                self.notify(call, notes.call_updated(call, state="established", mediaState=_ACTIVE))
            elif isinstance(event, ev.LegStateChanged):
                extra = {} if event.result_info is None else {"resultInfo": event.result_info.to_wire()}
                self.notify(call, notes.call_updated(call, state=event.state.value, **extra))
            elif isinstance(event, ev.LegRouted):
                self.notify(call, notes.call_updated(call, callRoutes=list(event.call_routes)))
            elif isinstance(event, ev.OperationFinished):
                url = f"{call.url}/operations/{event.operation['id']}"
                self.notify(call, notes.envelope("deleted", url, event.operation))

    def staged_done(self, batch: Batch) -> None:
        if batch.kind is ConversationKind.MEETING:
            self.meetings.staged_done(batch)
        if self._pending:
            self._send_roster(batch)
        self._roster = None
        self._ended.clear()

    def rolled_back(self, batches: Iterable[Batch]) -> None:
        for batch in batches:
            if batch.kind is ConversationKind.MEETING:
                self.meetings.forget(batch.conversation_id)

    # -- rosters -------------------------------------------------------------------------------------------
    def _begin_roster(self, batch: Batch) -> dict[str, Participant]:
        if self._roster is None:
            self._roster = {p.id: p for p in batch.roster_before}
        return self._roster

    def _send_roster(self, batch: Batch) -> None:
        self._pending = False
        roster = list((self._roster or {}).values())
        body = [p.to_wire() for p in roster]
        for p in roster:
            call = self.legs.leg(p.leg_id) or self._ended.get(p.leg_id) or self._ending_view(batch, p.leg_id)
            if call is not None:
                self.notify(call, notes.roster_updated(call, body))

    def _lookup(self, batch: Batch, event: Any) -> Call | None:
        return self.legs.leg(event.leg_id) or self._ended.get(event.leg_id) or self._ending_view(batch, event.leg_id)

    @staticmethod
    def _ending_view(batch: Batch, leg_id: str) -> Call | None:
        """A leg that ends later in the same command (its view is gone already): from its LegEnded event."""
        for event in batch.events:
            if isinstance(event, ev.LegEnded) and event.leg_id == leg_id:
                return batch.view(event.leg)
        return None
