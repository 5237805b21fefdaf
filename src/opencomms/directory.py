"""Directory repository over the store: tenants, users, applications and application instances.

Used by the CLI and the node. Creates ids, hashes secrets (plain secrets are returned once, never stored).

The lookups on every call's path (apps, instances, addresses) are cached per store object, shared by every
Directory on it. The cache is dropped on any write made through a Directory, when the store's change marker
moves (another process, such as the CLI, committed to the same SQLite file; read every `MARKER_INTERVAL`)
and after `CACHE_TTL` seconds.
"""

from __future__ import annotations

import re
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from opencomms.auth.permissions import parse_permission
from opencomms.auth.secrets import generate_secret, hash_secret, verify_secret
from opencomms.domain.directory import ROLES, Application, ApplicationInstance, Tenant, User
from opencomms.domain.errors import BadRequest, Conflict, NotFound
from opencomms.domain.ids import is_guid, new_id, normalize_id
from opencomms.store.base import Store

REFRESH_TOKENS = "refreshToken"
"""Store kind of delegated sign-in refresh tokens (auth/signin.py): revoked when a password changes."""
MIN_PASSWORD = 8
"""Shortest sign-in password the directory accepts."""
_UPN = re.compile(r"^[^@\s/]{1,64}@[A-Za-z0-9.-]{1,190}$")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_SIP_URI = re.compile(r"^sips?:[^@\s]+@[^\s]+$", re.IGNORECASE)

CACHE_TTL = 5.0
"""Longest time a cached directory lookup is trusted, whatever the store's change marker says."""
MARKER_INTERVAL = 0.2
"""How often (seconds) the store's change marker is read: another process's change shows within this time."""
_MISSING = object()


class _Cache:
    """Lookups of one store: (kind, key) -> object or None, valid while the marker and the age hold."""

    __slots__ = ("checked", "entries", "marker", "since")

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], Any] = {}
        self.marker: object = None
        self.since = float("-inf")
        """When the entries were last cleared by age."""
        self.checked = float("-inf")
        """When the store's change marker was last read."""

    def clear(self) -> None:
        self.entries.clear()
        self.since = float("-inf")


_CACHES: weakref.WeakKeyDictionary[Store, _Cache] = weakref.WeakKeyDictionary()


class Directory:
    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        cache = _CACHES.get(store)
        if cache is None:
            cache = _CACHES[store] = _Cache()
        self._cache = cache

    def _cached(self, kind: str, key: str) -> Any:
        """The cached lookup, or _MISSING (after dropping the cache if it may be stale)."""
        cache = self._cache
        now = time.monotonic()
        if now - cache.checked > MARKER_INTERVAL:
            cache.checked = now
            marker = self.store.change_marker()
            if marker != cache.marker:
                cache.marker = marker
                cache.clear()
        if now - cache.since > CACHE_TTL:
            cache.entries.clear()
            cache.since = now
            return _MISSING
        return cache.entries.get((kind, key), _MISSING)

    def _remember(self, kind: str, key: str, value: Any) -> None:
        self._cache.entries[(kind, key)] = value

    def _changed(self) -> None:
        """A write through this directory: forget every cached lookup."""
        self._cache.clear()

    # -- tenants -----------------------------------------------------------------------------------------
    def create_tenant(self, name: str, domain: str | None = None, tenant_id: str | None = None) -> Tenant:
        if not name.strip():
            raise BadRequest("A tenant needs a name.")
        if domain and self.find_tenant(domain):
            raise Conflict(f"A tenant with domain {domain!r} exists already.")
        tenant = Tenant(id=tenant_id or new_id(), name=name, domain=domain, created_at=self.clock())
        self._changed()
        self.store.put("tenant", tenant.id, tenant.to_doc())
        return tenant

    def get_tenant(self, tenant_id: str) -> Tenant | None:
        doc = self.store.get("tenant", normalize_id(tenant_id))
        return None if doc is None else Tenant.from_doc(doc)

    def find_tenant(self, id_or_domain: str) -> Tenant | None:
        """By id, or by domain (case-insensitive), as Microsoft's authority URLs allow either."""
        if is_guid(id_or_domain):
            return self.get_tenant(id_or_domain)
        wanted = id_or_domain.lower()
        return next((t for t in self.list_tenants() if (t.domain or "").lower() == wanted), None)

    def list_tenants(self) -> list[Tenant]:
        return [Tenant.from_doc(d) for _, d in self.store.scan("tenant")]

    def delete_tenant(self, tenant_id: str) -> None:
        """Delete a tenant and everything in it."""
        tenant = self.require_tenant(tenant_id)
        self._changed()
        with self.store.transaction():
            for app in self.list_apps(tenant.id):
                self.delete_app(app.id)
            for user in self.list_users(tenant.id):
                self.store.delete("user", user.id)
            self.store.delete("tenant", tenant.id)
        self._changed()

    def require_tenant(self, id_or_domain: str) -> Tenant:
        tenant = self.find_tenant(id_or_domain)
        if tenant is None:
            raise NotFound(f"No tenant {id_or_domain!r}.")
        return tenant

    # -- applications ------------------------------------------------------------------------------------
    def create_app(
        self,
        tenant_id: str,
        display_name: str,
        *,
        permissions: Iterable[str] = (),
        callback_url: str | None = None,
        app_id: str | None = None,
    ) -> tuple[Application, str]:
        """Register a bot. Returns the app and its client secret, which is not stored and shown only now."""
        tenant = self.require_tenant(tenant_id)
        perms = tuple(sorted(set(_permissions(permissions))))
        if callback_url:
            check_url(callback_url, "callback URL")
        secret = generate_secret()
        app = Application(
            id=app_id or new_id(),
            tenant_id=tenant.id,
            display_name=display_name,
            secret_hashes=(hash_secret(secret),),
            permissions=perms,
            callback_url=callback_url,
            created_at=self.clock(),
        )
        self._changed()
        self.store.put("app", app.id, app.to_doc())
        return app, secret

    def get_app(self, app_id: str) -> Application | None:
        key = normalize_id(app_id)
        found = self._cached("app", key)
        if found is _MISSING:
            doc = self.store.get("app", key)
            found = None if doc is None else Application.from_doc(doc)
            self._remember("app", key, found)
        return found  # type: ignore[no-any-return]

    def require_app(self, app_id: str) -> Application:
        app = self.get_app(app_id)
        if app is None:
            raise NotFound(f"No application {app_id!r}.")
        return app

    def list_apps(self, tenant_id: str | None = None) -> list[Application]:
        apps = [Application.from_doc(d) for _, d in self.store.scan("app")]
        return [a for a in apps if tenant_id is None or a.tenant_id == tenant_id]

    def update_app(self, app: Application) -> None:
        self._changed()
        self.store.put("app", app.id, app.to_doc())

    def edit_app(self, app_id: str, change: AppChange) -> Application:
        """Apply an operator's change to a registered bot (name, webhook, permissions, redirect URIs)."""
        app = self.require_app(app_id)
        perms = set(app.permissions) if change.permissions is None else set(_permissions(change.permissions))
        missing = sorted(set(_permissions(change.remove_permissions)) - perms)
        if missing:
            raise BadRequest(f"The application does not have the permission {missing[0]}.")
        perms = (perms | set(_permissions(change.add_permissions))) - set(_permissions(change.remove_permissions))
        uris = list(app.redirect_uris if change.redirect_uris is None else change.redirect_uris)
        for uri in (*(change.redirect_uris or ()), *change.add_redirect_uris):
            check_url(uri, "redirect URI")
        uris += [u for u in change.add_redirect_uris if u not in uris]
        unknown = [u for u in change.remove_redirect_uris if u not in uris]
        if unknown:
            raise BadRequest(f"The application has no redirect URI {unknown[0]!r}.")
        uris = [u for u in dict.fromkeys(uris) if u not in change.remove_redirect_uris]
        callback = app.callback_url
        if change.callback_url is not None:
            callback = change.callback_url or None
            if callback:
                check_url(callback, "callback URL")
        name = app.display_name if change.name is None else change.name
        if not name.strip():
            raise BadRequest("An application needs a name.")
        updated = replace(
            app,
            display_name=name,
            callback_url=callback,
            permissions=tuple(sorted(perms)),
            redirect_uris=tuple(uris),
            public_client=app.public_client if change.public_client is None else change.public_client,
        )
        self.update_app(updated)
        return updated

    def add_secret(self, app_id: str) -> str:
        """A new client secret next to the existing ones (rotate without downtime, then remove the old)."""
        app = self.require_app(app_id)
        secret = generate_secret()
        self.update_app(replace(app, secret_hashes=(*app.secret_hashes, hash_secret(secret))))
        return secret

    def check_secret(self, app: Application, secret: str) -> bool:
        return any(verify_secret(secret, h) for h in app.secret_hashes)

    def delete_app(self, app_id: str) -> None:
        app = self.require_app(app_id)
        self._changed()
        with self.store.transaction():
            for inst in self.list_instances(app.id):
                self.delete_instance(inst.id)
            self.store.delete("app", app.id)
        self._changed()

    # -- users -------------------------------------------------------------------------------------------
    def create_user(
        self, tenant_id: str, display_name: str, user_id: str | None = None, *, upn: str | None = None
    ) -> User:
        tenant = self.require_tenant(tenant_id)
        if upn is not None:
            _check_upn(upn)
            if self.find_user(upn) is not None:
                raise Conflict(f"A user with the name {upn!r} exists already.")
        user = User(
            id=user_id or new_id(), tenant_id=tenant.id, display_name=display_name, created_at=self.clock(), upn=upn
        )
        self.store.put("user", user.id, user.to_doc())
        return user

    def find_user(self, name: str, tenant_id: str | None = None) -> User | None:
        """By id, or by user principal name (case-insensitive)."""
        if is_guid(name):
            user = self.get_user(name)
        else:
            wanted = name.strip().lower()
            user = next((u for u in self.list_users() if (u.upn or "").lower() == wanted), None) if wanted else None
        return user if user is not None and (tenant_id is None or user.tenant_id == tenant_id) else None

    def require_user(self, name: str) -> User:
        user = self.find_user(name)
        if user is None:
            raise NotFound(f"No user {name!r}.")
        return user

    def set_password(self, user_id: str, password: str | None) -> User:
        """Set (or with None, remove) a user's sign-in password; kept only as a salted scrypt hash."""
        user = self.require_user(user_id)
        if password is not None and len(password) < MIN_PASSWORD:
            raise BadRequest(f"A password needs at least {MIN_PASSWORD} characters.")
        if password is not None and len(password) > 256:
            raise BadRequest("A password may have at most 256 characters.")
        updated = replace(user, password_hash=None if password is None else hash_secret(password))
        with self.store.transaction():
            self.store.put("user", user.id, updated.to_doc())
            self._revoke_sessions(user.id)  # a reset password ends every signed-in session
        return updated

    def set_roles(self, user_id: str, roles: Iterable[str]) -> User:
        """Replace a user's platform roles (see `domain.directory.ROLES`)."""
        wanted = tuple(sorted({r.strip().lower() for r in roles if r.strip()}))
        unknown = [r for r in wanted if r not in ROLES]
        if unknown:
            raise BadRequest(f"Unknown role {unknown[0]!r}: the roles are {', '.join(sorted(ROLES))}.")
        updated = replace(self.require_user(user_id), roles=wanted)
        self.store.put("user", updated.id, updated.to_doc())
        return updated

    def _revoke_sessions(self, user_id: str) -> None:
        """Delete the user's refresh tokens (auth/signin.py keeps them hashed under this kind)."""
        stale = [key for key, doc in self.store.scan(REFRESH_TOKENS) if doc.get("user_id") == user_id]
        self.store.delete_many(REFRESH_TOKENS, stale)

    def check_password(self, user: User, password: str) -> bool:
        """Constant-time check (slow on purpose: scrypt); False for a user without a password."""
        return user.password_hash is not None and len(password) <= 256 and verify_secret(password, user.password_hash)

    def get_user(self, user_id: str) -> User | None:
        doc = self.store.get("user", normalize_id(user_id))
        return None if doc is None else User.from_doc(doc)

    def list_users(self, tenant_id: str | None = None) -> list[User]:
        users = [User.from_doc(d) for _, d in self.store.scan("user")]
        return [u for u in users if tenant_id is None or u.tenant_id == tenant_id]

    def delete_user(self, user_id: str) -> None:
        with self.store.transaction():
            if not self.store.delete("user", normalize_id(user_id)):
                raise NotFound(f"No user {user_id!r}.")
            self._revoke_sessions(normalize_id(user_id))

    # -- application instances ---------------------------------------------------------------------------
    def create_instance(
        self,
        app_id: str,
        display_name: str,
        *,
        phone_number: str | None = None,
        sip_uri: str | None = None,
    ) -> ApplicationInstance:
        app = self.require_app(app_id)
        _check_addresses(phone_number, sip_uri)
        for address in filter(None, (phone_number, (sip_uri or "").lower() or None)):
            if self.store.get("address", address):
                raise Conflict("That number or SIP URI belongs to another application instance already.")
        inst = ApplicationInstance(
            id=new_id(),
            tenant_id=app.tenant_id,
            app_id=app.id,
            display_name=display_name,
            phone_number=phone_number,
            sip_uri=sip_uri,
            created_at=self.clock(),
        )
        self._changed()
        with self.store.transaction():
            self.store.put("instance", inst.id, inst.to_doc())
            for address in filter(None, (phone_number, (sip_uri or "").lower() or None)):
                self.store.put("address", address, {"instance_id": inst.id})
        self._changed()
        return inst

    def get_instance(self, instance_id: str) -> ApplicationInstance | None:
        key = normalize_id(instance_id)
        found = self._cached("instance", key)
        if found is _MISSING:
            doc = self.store.get("instance", key)
            found = None if doc is None else ApplicationInstance.from_doc(doc)
            self._remember("instance", key, found)
        return found  # type: ignore[no-any-return]

    def find_instance_by_address(self, address: str) -> ApplicationInstance | None:
        """The instance that owns a phone number or SIP URI (exact E.164, case-insensitive SIP URI)."""
        key = address if address.startswith("+") else address.lower()
        found = self._cached("address", key)
        if found is _MISSING:
            ref = self.store.get("address", key)
            found = None if ref is None else self.get_instance(ref["instance_id"])
            self._remember("address", key, found)
        return found  # type: ignore[no-any-return]

    def list_instances(self, app_id: str | None = None) -> list[ApplicationInstance]:
        items = [ApplicationInstance.from_doc(d) for _, d in self.store.scan("instance")]
        return [i for i in items if app_id is None or i.app_id == app_id]

    def update_instance(
        self,
        instance_id: str,
        *,
        display_name: str | None = None,
        phone_number: str | None = None,
        sip_uri: str | None = None,
    ) -> ApplicationInstance:
        """Rename an instance or change its number or SIP URI ("" removes one; one of the two must remain)."""
        inst = self.get_instance(instance_id)
        if inst is None:
            raise NotFound(f"No application instance {instance_id!r}.")
        number = inst.phone_number if phone_number is None else phone_number or None
        uri = inst.sip_uri if sip_uri is None else sip_uri or None
        _check_addresses(number, uri)
        old = {a for a in (inst.phone_number, (inst.sip_uri or "").lower() or None) if a}
        new = {a for a in (number, (uri or "").lower() or None) if a}
        for address in new - old:
            if self.store.get("address", address):
                raise Conflict("That number or SIP URI belongs to another application instance already.")
        updated = replace(
            inst,
            display_name=inst.display_name if display_name is None else display_name,
            phone_number=number,
            sip_uri=uri,
        )
        self._changed()
        with self.store.transaction():
            for address in old - new:
                self.store.delete("address", address)
            for address in new - old:
                self.store.put("address", address, {"instance_id": inst.id})
            self.store.put("instance", inst.id, updated.to_doc())
        self._changed()
        return updated

    def delete_instance(self, instance_id: str) -> None:
        inst = self.get_instance(instance_id)
        if inst is None:
            raise NotFound(f"No application instance {instance_id!r}.")
        self._changed()
        with self.store.transaction():
            for address in filter(None, (inst.phone_number, (inst.sip_uri or "").lower() or None)):
                self.store.delete("address", address)
            self.store.delete("instance", inst.id)
        self._changed()


@dataclass(frozen=True, slots=True)
class AppChange:
    """What `Directory.edit_app` changes; None (or empty) leaves a field as it is."""

    name: str | None = None
    callback_url: str | None = None
    """New calling webhook; "" removes it."""
    permissions: tuple[str, ...] | None = None
    """Replace the granted permissions with these."""
    add_permissions: tuple[str, ...] = ()
    remove_permissions: tuple[str, ...] = ()
    redirect_uris: tuple[str, ...] | None = None
    """Replace the redirect URIs with these."""
    add_redirect_uris: tuple[str, ...] = ()
    remove_redirect_uris: tuple[str, ...] = ()
    public_client: bool | None = None
    """Allow (True) or stop (False) sign-in without a client secret."""


def check_url(url: str, what: str) -> None:
    """BadRequest unless `url` is an absolute http(s) URL with a host."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        raise BadRequest(f"The {what} must be an absolute http(s) URL, e.g. https://bot.example/api/calls: {url!r}.")


def _permissions(names: Iterable[str]) -> list[str]:
    try:
        return [parse_permission(p).value for p in names]
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def _check_upn(upn: str) -> None:
    if not _UPN.match(upn):
        raise BadRequest(f"A user principal name looks like alice@contoso.example: {upn!r}.")


def _check_addresses(phone_number: str | None, sip_uri: str | None) -> None:
    if not phone_number and not sip_uri:
        raise BadRequest("An application instance needs a phone number (E.164) or a SIP URI.")
    if phone_number and not _E164.match(phone_number):
        raise BadRequest("The phone number must be in E.164 form, e.g. +14255550100.")
    if sip_uri and not _SIP_URI.match(sip_uri):
        raise BadRequest("The SIP URI must look like sip:user@host.")
