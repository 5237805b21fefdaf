"""The calls read model: one `Call` view per live leg, kept in step with the conversations after each command.

A view is what the REST API, media and gateways read about a leg (its Graph `call` resource). It is derived from
the `domain.conversation.Conversation` that owns the leg and never changed by anyone else; the conversation stays
the only thing the rules act on. Pure: no I/O.
"""

from __future__ import annotations

from opencomms.calling.model import Call, JsonObj
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
