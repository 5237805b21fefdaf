"""Resolves a call target (an invitationParticipantInfo) to where the call can go.

Today a target is reachable when it is an application or application instance of the same tenant
(bot-to-bot). Users and phone numbers need the SIP gateway; until one is routed they fail as Graph does.
"""

from __future__ import annotations

from dataclasses import dataclass

from opencomms.calling.model import JsonObj
from opencomms.directory import Directory
from opencomms.domain import results
from opencomms.domain.directory import Application
from opencomms.domain.results import ResultInfo


@dataclass(frozen=True, slots=True)
class Route:
    """Either `app` (ring that bot) or `failure` (why the target cannot be reached)."""

    identity: JsonObj
    app: Application | None = None
    failure: ResultInfo | None = None


def _named(identity_set: JsonObj, key: str, display_name: str) -> JsonObj:
    ident = dict(identity_set[key])
    ident.setdefault("displayName", display_name)
    return {**identity_set, key: ident}


class Router:
    def __init__(self, directory: Directory) -> None:
        self.directory = directory

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
            return Route(identity=ids, failure=results.CANNOT_ROUTE)
        # users, guests, devices…: no endpoint can be reached until a gateway registers one.
        return Route(identity=ids, failure=results.NO_CALLEE_ENDPOINTS)
