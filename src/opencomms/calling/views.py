"""The calls read model: one `Call` view per live leg, kept in step with the conversations after each command.

A view is what the REST API, media and gateways read about a leg (its Graph `call` resource). It is derived from
the `domain.conversation.Conversation` that owns the leg and never changed by anyone else; the conversation stays
the only thing the rules act on. `LegViews` holds the views of the node's live legs; `UnitViews` what one unit of
work reads before its commit. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from opencomms.calling.model import Call, JsonObj
from opencomms.calling.quotas import LiveCalls
from opencomms.domain.conversation import Conversation
from opencomms.domain.events import LegEnded, LegReleased
from opencomms.domain.legs import Leg

_DEFAULT_MODALITIES = ["audio"]


def view_of(conversation_id: str, tenant_id: str, leg: Leg) -> Call:
    """A new view of `leg`."""
    call = Call(
        id=leg.id,
        tenant_id=tenant_id,
        app_id=leg.app_id,
        direction=leg.direction,
        state=leg.state,
        conversation_id=conversation_id,
        my_participant_id=leg.participant_id,
        source_id=leg.source_id,
        identity=leg.identity,
        source=leg.source,
        targets=leg.targets,
        requested_modalities=_DEFAULT_MODALITIES,
        created_at=leg.created_at,
    )
    refresh(call, leg)
    return call


def refresh(call: Call, leg: Leg) -> None:
    """Bring view `call` in step with `leg` (in place: holders of the view see the change)."""
    attrs = leg.attrs
    call.state = leg.state
    call.source = leg.source
    call.identity = leg.identity
    call.requested_modalities = attrs.get("requested_modalities") or _DEFAULT_MODALITIES
    call.callback_uri = attrs.get("callback_uri")
    call.media_config = attrs.get("media_config")
    call.call_options = attrs.get("call_options")
    call.subject = attrs.get("subject")
    call.extra = attrs.get("extra") or {}
    call.result_info = leg.result_info
    call.incoming_context = leg.incoming_context
    call.call_routes = leg.call_routes
    call.version = leg.version
    call.answer_deadline = leg.answer_deadline
    call.keepalive_deadline = leg.keepalive_deadline
    call.ring_group = leg.ring_group
    call.connected = leg.connected
    call.muted = leg.muted
    call.external = (leg.external or "dial") if leg.is_external else None


def view_from_doc(conversation_id: str, tenant_id: str, doc: JsonObj) -> Call:
    """A view of a leg's stored form (as events carry it: a ringing or an ended leg)."""
    return view_of(conversation_id, tenant_id, Leg.from_doc(doc))


class LegViews:
    """The views of the live legs of the conversations this node holds (loaded or changed here), by leg id, and
    which conversation each leg belongs to. Brought in step after each commit and each load, never inside a unit
    of work (a unit that fails leaves them as they were)."""

    __slots__ = ("by_conv", "by_leg", "calls")

    def __init__(self) -> None:
        self.calls = LiveCalls()
        self.by_leg: dict[str, str] = {}
        self.by_conv: dict[str, set[str]] = {}
        """The leg ids of `by_leg` per conversation: a conversation's end drops its legs without a scan of all."""

    def conversation_of(self, leg_id: str) -> str | None:
        return self.by_leg.get(leg_id)

    def sync(
        self,
        conv_id: str,
        conv: Conversation | None,
        events: Iterable[object] | None = None,
        legs: Collection[str] | None = None,
    ) -> None:
        """After a commit (`events`: its events; `legs`: the legs its command changed, None: every leg of `conv`) or
        a load (`events` None: every leg of `conv` is looked at). O(changed legs) after a command on a meeting."""
        calls, by_leg, by_conv = self.calls, self.by_leg, self.by_conv
        if events is not None:
            for event in events:
                if isinstance(event, LegEnded | LegReleased):
                    self._drop(event.leg_id)
        if conv is None or events is None:
            keep = () if conv is None else conv.legs
            for leg_id in [k for k in by_conv.get(conv_id, ()) if k not in keep]:
                self._drop(leg_id)
        if conv is None:
            return
        if legs is None or events is None:
            changed: Iterable[Leg] = conv.legs.values()
        else:
            changed = [leg for leg in map(conv.legs.get, legs) if leg is not None]
        for leg in changed:
            view = calls.get(leg.id)
            if view is None:
                old = by_leg.get(leg.id)
                if old != conv_id:
                    if old is not None:
                        self._drop(leg.id)
                    by_leg[leg.id] = conv_id
                    by_conv.setdefault(conv_id, set()).add(leg.id)
                calls[leg.id] = view_of(conv_id, conv.tenant_id, leg)
            else:
                refresh(view, leg)

    def _drop(self, leg_id: str) -> None:
        self.calls.pop(leg_id, None)
        conv_id = self.by_leg.pop(leg_id, None)
        if conv_id is not None:
            legs = self.by_conv.get(conv_id)
            if legs is not None:
                legs.discard(leg_id)
                if not legs:
                    del self.by_conv[conv_id]


class UnitViews:
    """The views a unit of work reads: its conversation's legs as the command left them (built on demand, not
    kept: the node's `LegViews` change only after the commit). Given the node's views and the legs the command
    changed, a leg it did not change is read from the node's view (in step with the last commit): a roster sent to
    N legs builds no N views."""

    __slots__ = ("_committed", "_conv", "_made", "_touched")

    def __init__(
        self, conv: Conversation, committed: LegViews | None = None, touched: Collection[str] = frozenset()
    ) -> None:
        self._conv = conv
        self._made: dict[str, Call] = {}
        self._committed = committed
        self._touched = touched

    def leg(self, leg_id: str) -> Call | None:
        view = self._made.get(leg_id)
        if view is None and self._committed is not None and leg_id not in self._touched:
            view = self._committed.calls.get(leg_id)
            if view is not None and self._committed.by_leg.get(leg_id) == self._conv.id and leg_id in self._conv.legs:
                return view
            view = None
        if view is None:
            leg = self._conv.legs.get(leg_id)
            if leg is None:
                return None
            view = self._made[leg_id] = view_of(self._conv.id, self._conv.tenant_id, leg)
        return view
