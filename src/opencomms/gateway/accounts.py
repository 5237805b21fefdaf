"""Softphone accounts: who may REGISTER with the node's SIP registrar, repository over the store.

An account is a SIP user name (unique on the node: it is the digest user name in the node's one realm), the
tenant it belongs to, a display name and optionally the directory user it stands for (a `user` call target
with that user's id rings the account's registered softphones). The password is never stored: only its digest
HA1 values for the realm (MD5 and SHA-256), which is all a registrar needs to verify a REGISTER. Changing the
realm (`[sip] domain`) therefore invalidates every password: accounts must be given new ones.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opencomms.config import SipConfig
from opencomms.directory import Directory
from opencomms.domain.errors import BadRequest, Conflict, NotFound
from opencomms.domain.ids import normalize_id
from opencomms.sip.digest import base_algorithm, compute_ha1
from opencomms.store.base import Store

KIND = "sip_account"
HA1_ALGORITHMS = ("MD5", "SHA-256")
"""Digest algorithms whose HA1 is kept per account (SIPp and older softphones know only MD5)."""
MIN_PASSWORD = 8
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~+-]{0,63}$")


def realm_for(config: SipConfig) -> str:
    """The node's registrar domain and digest realm: `[sip] domain`, else the public host, else the bind host."""
    return config.domain or config.public_host or config.host


@dataclass(frozen=True, slots=True)
class SipAccount:
    """One softphone account. `ha1` maps a base digest algorithm to its HA1 for `realm`."""

    username: str
    tenant_id: str
    display_name: str
    realm: str
    ha1: Mapping[str, str] = field(repr=False)
    user_id: str | None = None
    created_at: float = 0.0

    def to_doc(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "tenant_id": self.tenant_id,
            "display_name": self.display_name,
            "realm": self.realm,
            "ha1": dict(self.ha1),
            "user_id": self.user_id,
            "created_at": self.created_at,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> SipAccount:
        return cls(
            username=str(doc["username"]),
            tenant_id=str(doc["tenant_id"]),
            display_name=str(doc.get("display_name") or doc["username"]),
            realm=str(doc["realm"]),
            ha1={str(k): str(v) for k, v in dict(doc.get("ha1") or {}).items()},
            user_id=doc.get("user_id") or None,
            created_at=float(doc.get("created_at") or 0.0),
        )

    def public(self) -> dict[str, Any]:
        """What may be shown (CLI, logs): everything but the HA1 values."""
        return {
            "username": self.username,
            "tenant_id": self.tenant_id,
            "display_name": self.display_name,
            "user_id": self.user_id,
            "realm": self.realm,
        }


def _ha1s(username: str, realm: str, password: str) -> dict[str, str]:
    return {algorithm: compute_ha1(username, realm, password, algorithm) for algorithm in HA1_ALGORITHMS}


class SipAccounts:
    """Accounts by SIP user name. `realm` is the node's (see :func:`realm_for`)."""

    def __init__(self, store: Store, realm: str, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.realm = realm
        self.clock = clock
        self.directory = Directory(store, clock)

    def add(
        self,
        tenant: str,
        username: str,
        password: str,
        *,
        display_name: str | None = None,
        user_id: str | None = None,
    ) -> SipAccount:
        """Create an account. `tenant` is an id or domain; `user_id` a directory user of that tenant (whose
        display name the account takes unless given one)."""
        found = self.directory.require_tenant(tenant)
        if not _USERNAME.match(username):
            raise BadRequest(
                "A SIP user name is 1-64 characters: letters, digits and . _ ~ + - (not starting with a symbol)."
            )
        if len(password) < MIN_PASSWORD:
            raise BadRequest(f"The password must have at least {MIN_PASSWORD} characters.")
        if user_id is not None:
            user = self.directory.get_user(user_id)
            if user is None or user.tenant_id != found.id:
                raise NotFound(f"No user {user_id!r} in this tenant.")
            user_id = user.id
            display_name = display_name or user.display_name
        account = SipAccount(
            username=username,
            tenant_id=found.id,
            display_name=display_name or username,
            realm=self.realm,
            ha1=_ha1s(username, self.realm, password),
            user_id=user_id,
            created_at=self.clock(),
        )
        with self.store.transaction():
            if self.store.get(KIND, username.lower()) is not None:
                raise Conflict(f"The SIP user name {username!r} is taken.")
            self.store.put(KIND, username.lower(), account.to_doc())
        return account

    def set_password(self, username: str, password: str) -> None:
        account = self.require(username)
        if len(password) < MIN_PASSWORD:
            raise BadRequest(f"The password must have at least {MIN_PASSWORD} characters.")
        doc = account.to_doc()
        doc.update(realm=self.realm, ha1=_ha1s(account.username, self.realm, password))
        self.store.put(KIND, username.lower(), doc)

    def get(self, username: str) -> SipAccount | None:
        doc = self.store.get(KIND, username.lower())
        if doc is None:
            return None
        account = SipAccount.from_doc(doc)
        return account if account.username == username else None  # SIP user names compare case-sensitively

    def require(self, username: str) -> SipAccount:
        account = self.get(username)
        if account is None:
            raise NotFound(f"No SIP account {username!r}.")
        return account

    def list_accounts(self, tenant_id: str | None = None) -> list[SipAccount]:
        accounts = [SipAccount.from_doc(doc) for _, doc in self.store.scan(KIND)]
        return [a for a in accounts if tenant_id is None or a.tenant_id == tenant_id]

    def delete(self, username: str) -> None:
        self.require(username)
        self.store.delete(KIND, username.lower())

    def for_target(self, tenant_id: str, user_id: str) -> list[SipAccount]:
        """Accounts a `user` call target reaches: those linked to directory user `user_id`, or, for an account
        without a linked user, the one whose SIP user name is `user_id`. Only within `tenant_id`."""
        if not user_id:
            return []
        wanted = normalize_id(user_id)
        linked = [
            a for a in self.list_accounts(tenant_id) if a.user_id is not None and normalize_id(a.user_id) == wanted
        ]
        if linked:
            return linked
        named = self.get(user_id)
        if named is not None and named.tenant_id == tenant_id and named.user_id is None:
            return [named]
        return []

    def ha1(self, username: str, realm: str, algorithm: str) -> str | None:
        """:data:`opencomms.sip.digest_server.HA1Lookup` over the accounts (None for another realm or algorithm)."""
        account = self.get(username)
        if account is None or account.realm != realm:
            return None
        return account.ha1.get(base_algorithm(algorithm))


__all__ = ["HA1_ALGORITHMS", "KIND", "SipAccount", "SipAccounts", "realm_for"]
