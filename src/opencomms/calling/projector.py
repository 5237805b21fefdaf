"""The notification projector: a conversation's events -> Graph `commsNotifications` to the bots' webhooks.

Bodies come from `calling.notifications` (the same builders as before the conversation core, so the JSON is
unchanged). A roster change is computed once per run of Participant* events of a group call (legs that connect
together make one run, as the calls slice sent them), by replaying the events onto the roster as it was before the
command, and sent to each bot leg in it; external legs get nothing
(their gateway speaks for them). Meetings' rosters (classic and delta, serialized once per change whatever the
number of listening legs, in `rosterSequenceNumber` order) are built by `calling.rosters.MeetingRosters` from the
same events; finished operations reported by events (hold music) become their `deleted` operation notifications.
A roster delta for the legs of one meeting on one webhook (app and URL) goes as one POST per `roster_batch` legs
once at least `roster_batch_min` legs share it (a join into a meeting of N bot legs: O(webhooks) POSTs, not N),
ordered on a lane of its own (`<meeting>/rosters/<app>/<url>`; the SDK orders by rosterSequenceNumber).
A command's notifications are projected inside its unit of work and written with it
(the ledger releases them to the dispatcher once the write has committed).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import orjson

from opencomms.calling import notifications as notes
from opencomms.calling.model import Call
from opencomms.calling.rosters import MeetingRosters, roster_body, roster_many_body
from opencomms.calling.subscribers import Batch, LegQuery
from opencomms.directory import Directory
from opencomms.domain import events as ev
from opencomms.domain.conversation import Conversation
from opencomms.domain.legs import LegKind
from opencomms.domain.participants import Participant
from opencomms.domain.rules import ConversationKind
from opencomms.store.base import OutboxEntry
from opencomms.store.ledger import new_entry

log = logging.getLogger("opencomms.calls")

_ACTIVE = {"@odata.type": "#microsoft.graph.callMediaState", "audio": "active"}
_PARTICIPANT_EVENTS = (ev.ParticipantJoined, ev.ParticipantUpdated, ev.ParticipantLeft)


class Sink(Protocol):
    """Where the bodies of notifications outside a conversation command go (media operations, tones): the
    dispatcher's durable outbox."""

    def submit(self, *, order_key: str, app_id: str, tenant_id: str, url: str, body: bytes) -> object: ...


class NotificationProjector:
    """Events of one command -> outbox entries written with the command's unit of work (`project`), and the
    notifications of media operations and tones, submitted to the dispatcher (`notify`)."""

    def __init__(self, directory: Directory, sink: Any) -> None:
        self.directory = directory
        self.sink: Sink = sink
        self.meetings = MeetingRosters()
        """Meeting rosters (classic and delta), one serialization per change."""
        self.roster_batch_min = 0
        """Legs of one meeting on one webhook from which a roster delta goes in shared POSTs (0: one per leg)."""
        self.roster_batch = 100
        """Notifications one shared roster POST carries at most."""

    # -- public: other services notify through the projector too --------------------------------------------
    def notify(self, call: Call, body: dict[str, Any]) -> None:
        url = self._url(call)
        if url is not None:
            self.sink.submit(
                order_key=call.id, app_id=call.app_id, tenant_id=call.tenant_id, url=url, body=orjson.dumps(body)
            )

    def _url(self, call: Call) -> str | None:
        if call.is_external:
            return None  # a phone has no webhook: the gateway speaks for it
        url = call.callback_uri
        if not url:
            app = self.directory.get_app(call.app_id)
            url = None if app is None else app.callback_url
        if not url:
            log.warning("notification dropped: no callback URL", extra={"call_id": call.id})
            return None
        return url

    # -- inside a unit of work --------------------------------------------------------------------------------
    def project(self, batch: Batch, legs: LegQuery, now: float, conv: Conversation | None = None) -> list[OutboxEntry]:
        """The notifications of `batch`'s events, in order (pure apart from new entry ids: a rerun makes new
        ones). `legs`: the views of the legs as the command left them; `conv`: the conversation as the command
        left it (a meeting's roster goes to its listening legs)."""
        entries = _Projection(self, batch, legs, now).run()
        if conv is not None and batch.kind is ConversationKind.MEETING:
            self.meetings.project(
                batch,
                conv,
                legs,
                lambda call, body: self._entry(entries, call, body, now),
                (lambda calls, payload: self._rosters(entries, conv.id, calls, payload, now))
                if self.roster_batch_min > 0
                else None,
            )
        return entries

    def _rosters(self, entries: list[OutboxEntry], conv_id: str, calls: list[Call], payload: bytes, now: float) -> None:
        """One roster delta to `calls`: per webhook, one POST per leg below `roster_batch_min` legs, else shared
        POSTs of `roster_batch` notifications at most."""
        hooks: dict[tuple[str, str, str], list[Call]] = {}
        for call in calls:
            url = self._url(call)
            if url is not None:
                hooks.setdefault((call.app_id, call.tenant_id, url), []).append(call)
        size = max(1, self.roster_batch)
        for (app_id, tenant_id, url), members in hooks.items():
            if len(members) < self.roster_batch_min:
                for call in members:
                    body = roster_body(call.url, payload)
                    entries.append(
                        new_entry(order_key=call.id, app_id=app_id, tenant_id=tenant_id, url=url, body=body, now=now)
                    )
                continue
            lane = f"{conv_id}/rosters/{app_id}/{url}"
            for start in range(0, len(members), size):
                body = roster_many_body([call.url for call in members[start : start + size]], payload)
                entry = new_entry(order_key=lane, app_id=app_id, tenant_id=tenant_id, url=url, body=body, now=now)
                entries.append(entry)

    def _entry(self, entries: list[OutboxEntry], call: Call, body: bytes, now: float) -> None:
        url = self._url(call)
        if url is not None:
            entries.append(
                new_entry(order_key=call.id, app_id=call.app_id, tenant_id=call.tenant_id, url=url, body=body, now=now)
            )


class _Projection:
    __slots__ = ("batch", "ended", "entries", "legs", "now", "owner", "pending", "roster")

    def __init__(self, owner: NotificationProjector, batch: Batch, legs: LegQuery, now: float) -> None:
        self.owner = owner
        self.batch = batch
        self.legs = legs
        self.now = now
        self.entries: list[OutboxEntry] = []
        self.roster: dict[str, Participant] | None = None
        self.pending = False
        self.ended: dict[str, Call] = {}

    def notify(self, call: Call, body: dict[str, Any]) -> None:
        self.owner._entry(self.entries, call, orjson.dumps(body), self.now)

    def run(self) -> list[OutboxEntry]:
        batch = self.batch
        for event in batch.events:
            self.event(batch, event)
        if self.pending:
            self._send_roster(batch)
        return self.entries

    def event(self, batch: Batch, event: ev.Event) -> None:
        if isinstance(event, _PARTICIPANT_EVENTS):
            if batch.kind is not ConversationKind.GROUP:  # a meeting's roster: MeetingRosters
                return
            roster = self._begin_roster(batch)
            if isinstance(event, ev.ParticipantLeft):
                roster.pop(event.participant.id, None)
            else:
                roster[event.participant.id] = event.participant
            self.pending = True
            return
        if self.pending and not isinstance(event, ev.LegEstablished):  # legs connecting together: one roster
            self._send_roster(batch)
        if getattr(event, "kind", None) is not LegKind.BOT:
            return
        if isinstance(event, ev.LegRinging):
            rung = batch.view(event.leg)
            self.notify(rung, notes.call_created(rung))
        elif isinstance(event, ev.LegEnded):
            ended = self.ended[event.leg_id] = batch.view(event.leg)
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
                data = {**event.operation, "@odata.id": url, "@odata.etag": 'W/"2"'}  # as media operations
                self.notify(call, notes.envelope("deleted", url, data))

    # -- rosters -------------------------------------------------------------------------------------------
    def _begin_roster(self, batch: Batch) -> dict[str, Participant]:
        if self.roster is None:
            self.roster = {p.id: p for p in batch.roster_before}
        return self.roster

    def _send_roster(self, batch: Batch) -> None:
        self.pending = False
        roster = list((self.roster or {}).values())
        body = [p.to_wire() for p in roster]
        for p in roster:
            call = self.legs.leg(p.leg_id) or self.ended.get(p.leg_id) or _ending_view(batch, p.leg_id)
            if call is not None:
                self.notify(call, notes.roster_updated(call, body))

    def _lookup(self, batch: Batch, event: Any) -> Call | None:
        return self.legs.leg(event.leg_id) or self.ended.get(event.leg_id) or _ending_view(batch, event.leg_id)


def _ending_view(batch: Batch, leg_id: str) -> Call | None:
    """A leg that ends later in the same command (its view is gone already): from its LegEnded event."""
    for event in batch.events:
        if isinstance(event, ev.LegEnded) and event.leg_id == leg_id:
            return batch.view(event.leg)
    return None
