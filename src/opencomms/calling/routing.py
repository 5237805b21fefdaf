"""Resolves a call target (an invitationParticipantInfo) to where the call can go.

A target is a bot when it is an application or application instance of the same tenant (or a number one
of them owns); phone numbers and users are external when a gateway says it can reach them (a SIP trunk,
a registered softphone); otherwise they fail as Graph does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from opencomms.calling.model import JsonObj
from opencomms.directory import Directory
from opencomms.domain import results
from opencomms.domain.directory import Application
from opencomms.domain.legs import LegKind
from opencomms.domain.results import ResultInfo


@dataclass(frozen=True, slots=True)
class Route:
    """`app` (ring that bot), `external` (the gateway of leg kind `kind` dials it) or `failure` (why it cannot be
    reached)."""

    identity: JsonObj
    app: Application | None = None
    failure: ResultInfo | None = None
    kind: LegKind | None = None

    @property
    def external(self) -> bool:
        return self.kind is not None


Reachable = Callable[[str, JsonObj], LegKind | None]
"""(tenant id, identitySet) -> the leg kind of a gateway that can dial it (None: none can)."""


def _named(identity_set: JsonObj, key: str, display_name: str) -> JsonObj:
    ident = dict(identity_set[key])
    ident.setdefault("displayName", display_name)
    return {**identity_set, key: ident}


class Router:
    def __init__(self, directory: Directory, reachable: Reachable | None = None) -> None:
        self.directory = directory
        self.reachable = reachable

    def resolve(self, tenant_id: str, target: JsonObj) -> Route:
        ids: JsonObj = target["identity"]
        if "application" in ids:
            app = self.directory.get_app(str(ids["application"].get("id") or ""))
            if app is not None and app.tenant_id == tenant_id:
                return Route(identity=_named(ids, "application", app.display_name), app=app)
            return Route(identity=ids, failure=results.NO_CALLEE_ENDPOINTS)
        if "applicationInstance" in ids:
            inst = self.directory.get_instance(str(ids["applicationInstance"].get("id") or ""))
            app = None if inst is None else self.directory.get_app(inst.app_id)
            if inst is not None and app is not None and inst.tenant_id == tenant_id:
                return Route(identity=_named(ids, "applicationInstance", inst.display_name), app=app)
            return Route(identity=ids, failure=results.NO_CALLEE_ENDPOINTS)
        if "phone" in ids:
            number = str(ids["phone"].get("id") or "")
            inst = self.directory.find_instance_by_address(number) if number else None
            app = None if inst is None else self.directory.get_app(inst.app_id)
            if inst is not None and app is not None and inst.tenant_id == tenant_id:
                # A number that belongs to one of our own bots: route internally.
                return Route(identity=ids, app=app)
            if (kind := self._reachable(tenant_id, ids)) is not None:
                return Route(identity=ids, kind=kind)
            return Route(identity=ids, failure=results.CANNOT_ROUTE)
        if (kind := self._reachable(tenant_id, ids)) is not None:
            user = self.directory.get_user(str(ids["user"].get("id") or "")) if "user" in ids else None
            if user is not None and user.tenant_id == tenant_id:
                ids = _named(ids, "user", user.display_name)
            return Route(identity=ids, kind=kind)  # e.g. a user with a registered softphone
        # users, guests, devices…: no endpoint can be reached until a gateway registers one.
        return Route(identity=ids, failure=results.NO_CALLEE_ENDPOINTS)

    def _reachable(self, tenant_id: str, ids: JsonObj) -> LegKind | None:
        return None if self.reachable is None else self.reachable(tenant_id, ids)
