"""What reacts to a conversation's events: subscribers registered at the composition root.

A command applied to a conversation yields a `Batch` of events. Subscribers hear each event once the unit of work
has committed (`committed`): signalling, media joins and teardowns never happen for a change that did not land, and
a unit that is rerun after a stale write has no side effect to undo. They hear it before the command's own
notifications reach the dispatcher, so what a subscriber submits for a leg (the media operations it fails when the
leg ends) precedes the leg's final notification. No subscriber reads another's private state; they read leg views
through `LegQuery` or the events themselves. Here: the media session subscriber and the gateway registry (gateways
by leg kind); the Graph notification projector (`calling.projector`) runs inside the unit of work instead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from opencomms.calling.model import Call, JsonObj
from opencomms.calling.views import view_from_doc
from opencomms.domain import events as ev
from opencomms.domain.calls import CallState
from opencomms.domain.legs import Leg, LegKind
from opencomms.domain.participants import Participant
from opencomms.domain.results import ResultInfo
from opencomms.domain.rules import ConversationKind

log = logging.getLogger("opencomms.calls")

_MEDIA_LIVE = (CallState.ESTABLISHED, CallState.HOLD)


@dataclass(frozen=True, slots=True)
class Batch:
    """The events of one command applied to one conversation."""

    conversation_id: str
    tenant_id: str
    kind: ConversationKind
    events: tuple[ev.Event, ...]
    roster_before: tuple[Participant, ...] = ()
    """The roster as it was before the command (a projector replays the changes onto it)."""
    made: dict[str, Call] = field(default_factory=dict, compare=False, repr=False)
    """Views made from the events' leg documents (the projector and the subscribers share them: read only)."""

    def view(self, doc: JsonObj) -> Call:
        """A view of a leg's stored form carried by an event (LegRinging, LegEnded), made once per batch."""
        leg_id = doc["id"]
        view = self.made.get(leg_id)
        if view is None or view.state.value != doc.get("state"):
            view = self.made[leg_id] = view_from_doc(self.conversation_id, self.tenant_id, doc)
        return view


class LegQuery(Protocol):
    """The public read side subscribers use: the view of a live leg."""

    def leg(self, leg_id: str) -> Call | None: ...


class Subscriber:
    """Base of a subscriber: every hook does nothing unless overridden."""

    def committed(self, batch: Batch, event: ev.Event) -> None:
        """After the unit of work committed (the node's leg views already show its outcome)."""


# -- media ----------------------------------------------------------------------------------------------------
class MediaHooks(Protocol):
    """What the media side must hear about a leg's life (calling.media.MediaService implements it)."""

    def configured(self, call: Call) -> None:
        """The leg's mediaConfig was set (create or answer): prefetch its prompts."""

    def connected(self, call: Call) -> None:
        """The leg became established: its media joins the conversation."""

    def ending(self, call: Call) -> None:
        """The leg ended (its final notification is released next): finish its operations, free its media."""

    def muted(self, leg_id: str, muted: bool) -> None:
        """The leg's audio is muted or unmuted in the mix."""


class MediaSubscriber(Subscriber):
    """Events -> media session: prefetch on configuration, join the engine once established, free on the end."""

    def __init__(self, media: MediaHooks, legs: LegQuery) -> None:
        self.media = media
        self.legs = legs

    def committed(self, batch: Batch, event: ev.Event) -> None:
        if isinstance(event, ev.MediaConfigured):
            call = self.legs.leg(event.leg_id)
            if call is not None:
                self.media.configured(call)
        elif isinstance(event, ev.LegEnded):
            self.media.ending(batch.view(event.leg))
        elif isinstance(event, ev.LegEstablished):
            call = self.legs.leg(event.leg_id)
            if call is not None and call.state in _MEDIA_LIVE:
                self.media.connected(call)
        elif isinstance(event, ev.LegMuted):
            self.media.muted(event.leg_id, event.muted)

    def loaded(self, calls: Iterable[Call]) -> None:
        """Legs read from the store (after a restart): the live ones join the engine again."""
        for call in calls:
            if call.connected and call.state in _MEDIA_LIVE:
                try:
                    self.media.connected(call)
                except Exception:
                    log.exception("media could not be restored", extra={"call_id": call.id})


# -- gateways -------------------------------------------------------------------------------------------------
class Gateway(Protocol):
    """A gateway serves the legs of one kind: parties outside the platform (SIP phones; browsers later)."""

    def reachable(self, tenant_id: str, identity: JsonObj) -> bool:
        """True when this gateway can dial `identity` (an identitySet) for `tenant_id`."""
        ...

    def dial(self, call: Call) -> None:
        """Start calling the external leg's target; its outcome comes back as external_answered/_ended."""

    def connected(self, call: Call) -> None:
        """The external leg is established: confirm its signalling (200 OK) and connect its media."""

    def ending(self, call: Call, reason: ResultInfo) -> None:
        """The external leg is ending for `reason`: reject, cancel or hang up its signalling."""

    def can_refer(self, call: Call, target: JsonObj) -> bool:
        """True when the leg's far end can move itself to `target` (SIP REFER); asked before the command."""
        ...

    def refer(self, call: Call, target: JsonObj) -> None:
        """Move the leg to `target` by its own signalling; it reports back through external_transfer_*."""


class Gateways(Subscriber):
    """Gateways registered by leg kind, in place of a single slot: events of a kind's legs go to its gateway."""

    def __init__(self, legs: LegQuery) -> None:
        self.legs = legs
        self._by_kind: dict[LegKind, Gateway] = {}

    def register(self, kind: LegKind, gateway: Gateway) -> None:
        self._by_kind[kind] = gateway

    def unregister(self, kind: LegKind) -> None:
        self._by_kind.pop(kind, None)

    def get(self, kind: LegKind) -> Gateway | None:
        return self._by_kind.get(kind)

    def kind_of(self, gateway: object) -> LegKind:
        """The leg kind `gateway` is registered for (the kind of the legs it reports)."""
        for kind, gw in self._by_kind.items():
            if gw is gateway:
                return kind
        raise ValueError("the gateway is not registered")

    def only_kind(self) -> LegKind:
        """The kind of the one gateway registered (a report that does not say which gateway sent it)."""
        if len(self._by_kind) != 1:
            raise ValueError("name the gateway: several (or no) gateways are registered")
        return next(iter(self._by_kind))

    def orphans(self, legs: Iterable[Leg]) -> list[Leg]:
        """External legs read from the store that their kind's gateway does not serve (a previous process did: their
        signalling is lost). A gateway without `holds` claims every leg of its kind."""
        found: list[Leg] = []
        for leg in legs:
            gw = self._by_kind.get(leg.kind) if leg.is_external else None
            holds = getattr(gw, "holds", None)
            if holds is not None and not holds(leg.id):
                found.append(leg)
        return found

    def reachable(self, tenant_id: str, identity: JsonObj) -> bool:
        return any(gw.reachable(tenant_id, identity) for gw in self._by_kind.values())

    def reachable_kind(self, tenant_id: str, identity: JsonObj) -> LegKind | None:
        """The kind of the first gateway that can dial `identity`, if any."""
        return next((k for k, gw in self._by_kind.items() if gw.reachable(tenant_id, identity)), None)

    def can_refer(self, call: Call, kind: LegKind, target: JsonObj) -> bool:
        gw = self._by_kind.get(kind)
        return gw is not None and gw.can_refer(call, target)

    def committed(self, batch: Batch, event: ev.Event) -> None:
        if isinstance(event, ev.TransferStarted):
            gw = self._by_kind.get(event.transferee_kind)
            call = self.legs.leg(event.transferee_id)
            if event.mode is ev.TransferMode.REFER and gw is not None and call is not None:
                gw.refer(call, event.target)
            return
        kind = getattr(event, "kind", None)
        gw = self._by_kind.get(kind) if isinstance(kind, LegKind) and kind.external else None
        if gw is None:
            return
        if isinstance(event, ev.LegRinging):
            gw.dial(self.legs.leg(event.leg_id) or batch.view(event.leg))
        elif isinstance(event, ev.LegEstablished):
            call = self.legs.leg(event.leg_id)
            if call is not None:
                gw.connected(call)
        elif isinstance(event, ev.LegEnded):
            gw.ending(batch.view(event.leg), event.result)
