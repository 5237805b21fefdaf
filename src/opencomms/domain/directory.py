"""Directory entities: tenants, users, applications (bots) and application instances (numbers, SIP URIs).

Plain frozen values with to_doc/from_doc for the store; secrets only ever appear hashed here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    name: str
    domain: str | None = None
    created_at: float = 0.0

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Tenant:
        return cls(**doc)


@dataclass(frozen=True, slots=True)
class User:
    id: str
    tenant_id: str
    display_name: str
    created_at: float = 0.0
    upn: str | None = None
    """User principal name (alice@contoso.example): what the user types at sign-in (the id works too)."""
    password_hash: str | None = None
    """scrypt hash of the sign-in password (auth/secrets.py); None: the user cannot sign in."""
    roles: tuple[str, ...] = ()
    """Platform roles of the user (`ADMIN_ROLE`: may sign in to the operators' console)."""

    def to_doc(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["roles"] = list(self.roles)
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> User:
        return cls(**{**doc, "roles": tuple(doc.get("roles") or ())})


ADMIN_ROLE = "admin"
"""The user role that opens the operators' console (`opencomms user set-role USER admin`)."""
ROLES = frozenset({ADMIN_ROLE})


@dataclass(frozen=True, slots=True)
class Application:
    """A registered bot. `id` is also its OAuth client id, as in Microsoft Entra ID."""

    id: str
    tenant_id: str
    display_name: str
    secret_hashes: tuple[str, ...] = ()
    permissions: tuple[str, ...] = ()
    callback_url: str | None = None
    """The app's calling webhook: where incoming-call notifications go."""
    created_at: float = 0.0
    redirect_uris: tuple[str, ...] = ()
    """Where delegated sign-in may send users back (Graph's application.web.redirectUris)."""
    public_client: bool = False
    """A public client (a CLI, a desktop or mobile app) signs users in without a client secret (device code,
    authorization code with PKCE); a confidential one must authenticate when it redeems a code."""

    def to_doc(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["secret_hashes"] = list(self.secret_hashes)
        doc["permissions"] = list(self.permissions)
        doc["redirect_uris"] = list(self.redirect_uris)
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Application:
        doc = dict(doc)
        doc["secret_hashes"] = tuple(doc.get("secret_hashes", ()))
        doc["permissions"] = tuple(doc.get("permissions", ()))
        doc["redirect_uris"] = tuple(doc.get("redirect_uris", ()))
        return cls(**doc)


@dataclass(frozen=True, slots=True)
class ApplicationInstance:
    """An identity of an app that callers can dial: a phone number (E.164) and/or a SIP URI."""

    id: str
    tenant_id: str
    app_id: str
    display_name: str
    phone_number: str | None = None
    sip_uri: str | None = None
    created_at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> ApplicationInstance:
        return cls(**doc)
