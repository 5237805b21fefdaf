"""Turning REST requests and gateway calls into the legs a conversation command carries.

The model does not invent ids, routes or identities: this module gives each new leg its ids (call id,
participant id, media source id) and resolves every target through `calling.routing.Router` into an `Invitation`
(a leg to ring, or why there is none: no route, no webhook, the callee's quota). Pure apart from random ids.
"""

from __future__ import annotations

from opencomms.calling.model import JsonObj
from opencomms.calling.quotas import LiveCalls
from opencomms.calling.routing import Router
from opencomms.domain.commands import Invitation
from opencomms.domain.directory import Application
from opencomms.domain.ids import new_id
from opencomms.domain.legs import LegKind, LegSpec
from opencomms.randpool import random_below

_AUDIO = ["audio"]


def new_source_id() -> str:
    return str(random_below(2**31 - 2) + 1)


def origin(
    kind: LegKind,
    identity: JsonObj,
    source: JsonObj,
    targets: list[JsonObj],
    *,
    app_id: str = "",
    attrs: JsonObj | None = None,
    leg_id: str | None = None,
    external: str | None = None,
) -> LegSpec:
    """The leg that starts a conversation: a bot's placed call, or a gateway's inbound caller."""
    participant_id = new_id()
    return LegSpec(
        id=leg_id or new_id(),
        kind=kind,
        participant_id=participant_id,
        source_id=new_source_id(),
        identity=identity,
        source={**source, "participantId": participant_id},
        targets=tuple(targets),
        app_id=app_id,
        attrs=attrs if attrs is not None else {"requested_modalities": _AUDIO},
        external=external,
    )


class Inviter:
    """Resolves targets into invitations; an external target's leg takes the kind of the gateway that can reach it."""

    def __init__(self, router: Router, calls: LiveCalls) -> None:
        self.router = router
        self.calls = calls

    def invitation(self, tenant_id: str, target: JsonObj) -> Invitation:
        route = self.router.resolve(tenant_id, target)
        if route.app is not None:
            return self.bot(route.app, route.identity, target)
        if route.kind is None:
            return Invitation(failure=route.failure)
        return _ring(route.kind, "", route.identity, target, {"requested_modalities": _AUDIO})

    def bot(self, app: Application, identity: JsonObj, target: JsonObj) -> Invitation:
        """Ring bot `app` (as `identity`), unless it has no webhook or is at its call quota."""
        if (refusal := self.calls.refusal(app)) is not None:
            return Invitation(failure=refusal)
        attrs = {"callback_uri": app.callback_url, "requested_modalities": _AUDIO}
        return _ring(LegKind.BOT, app.id, identity, target, attrs)

    def invitations(self, tenant_id: str, targets: list[JsonObj]) -> tuple[Invitation, ...]:
        return tuple(self.invitation(tenant_id, t) for t in targets)


def _ring(kind: LegKind, app_id: str, identity: JsonObj, target: JsonObj, attrs: JsonObj) -> Invitation:
    spec = LegSpec(
        id=new_id(),
        kind=kind,
        participant_id=new_id(),
        source_id=new_source_id(),
        identity=identity,
        targets=(target,),
        app_id=app_id,
        attrs=attrs,
    )
    return Invitation(leg=spec)
