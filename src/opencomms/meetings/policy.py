"""Application access policies: which apps may act on which users' online meetings with an app token.

The counterpart of Teams' `New-CsApplicationAccessPolicy` + `Grant-CsApplicationAccessPolicy` (per user or
`-Global`). Stored as "appAccessPolicy" documents keyed `{appId}:{userId}` or `{appId}:*` (tenant-wide).
Managed by the operator's CLI (`opencomms policy grant|list|revoke`); read by meetings/service.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from opencomms.directory import Directory
from opencomms.domain.errors import BadRequest, NotFound
from opencomms.domain.ids import normalize_id

__all__ = ["AccessPolicies", "PolicyGrant"]

KIND = "appAccessPolicy"
TENANT_WIDE = "*"


@dataclass(frozen=True, slots=True)
class PolicyGrant:
    app_id: str
    tenant_id: str
    user_id: str | None
    """None: every user of the tenant (Teams' `-Global`)."""
    created_at: float

    @property
    def key(self) -> str:
        return f"{self.app_id}:{self.user_id or TENANT_WIDE}"


class AccessPolicies:
    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        self.store = directory.store

    def grant(self, app_id: str, user_id: str | None) -> PolicyGrant:
        app = self.directory.require_app(app_id)
        uid = None
        if user_id is not None:
            user = self.directory.get_user(user_id)
            if user is None or user.tenant_id != app.tenant_id:
                raise NotFound(f"No user {user_id!r} in the application's tenant.")
            uid = user.id
        grant = PolicyGrant(app.id, app.tenant_id, uid, self.directory.clock())
        self.store.put(
            KIND,
            grant.key,
            {"app_id": app.id, "tenant_id": app.tenant_id, "user_id": uid, "created_at": grant.created_at},
        )
        return grant

    def revoke(self, app_id: str, user_id: str | None) -> None:
        key = f"{normalize_id(app_id)}:{normalize_id(user_id) if user_id else TENANT_WIDE}"
        if not self.store.delete(KIND, key):
            raise NotFound("No such access policy grant.")

    def list(self, app_id: str | None = None) -> list[PolicyGrant]:
        grants = [PolicyGrant(**doc) for _, doc in self.store.scan(KIND)]
        return [g for g in grants if app_id is None or g.app_id == normalize_id(app_id)]

    def allows(self, app_id: str, tenant_id: str, user_id: str) -> bool:
        """True if the app may act on the user's meetings with an application token."""
        for key in (f"{app_id}:{user_id}", f"{app_id}:{TENANT_WIDE}"):
            doc = self.store.get(KIND, key)
            if doc is not None and doc.get("tenant_id") == tenant_id:
                return True
        return False


def check_target(user_id: str | None, tenant_wide: bool) -> None:
    """The CLI's rule: exactly one of a user or the whole tenant."""
    if (user_id is None) == (not tenant_wide):
        raise BadRequest("Give --user ID or --tenant-wide (one of the two).")
