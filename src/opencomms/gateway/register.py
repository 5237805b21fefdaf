"""The node's SIP registrar: softphones REGISTER with digest auth; their bindings live in the store.

RFC 3261 section 10.3 around the sans-I/O :class:`~opencomms.sip.registrar.Registrar`: the To URI names the
account (its user part is the SIP user name; when `[sip] domain` is set, its host must be that domain or one
of the node's addresses, else 404); a REGISTER without valid credentials gets 401 with one challenge per
algorithm of `[sip] register_digest_algorithms` (MD5 only by default: baresip 1.0 refuses a 401 that also
offers SHA-256; SIPp answers only the first, so MD5 stays first), and the digest `uri` must be the
Request-URI; credentials of another account than the To user get 403.

Bindings of an account are one store document, read, changed by the registrar and written back in one store
transaction, so another node (same store) or a restarted one sees them; times are wall-clock, expired
bindings are ignored, dropped when next touched and purged at start-up. Each binding keeps the address the
REGISTER came from, to reach a softphone behind NAT (see :mod:`opencomms.gateway.softphone`).

The digest nonce secret is made once and kept in the store, so every node verifies every node's nonces."""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from opencomms.config import SipConfig
from opencomms.domain.ids import normalize_id
from opencomms.gateway.accounts import SipAccount, SipAccounts, realm_for
from opencomms.logs import mask_name
from opencomms.sip.digest import AuthError
from opencomms.sip.digest_server import DigestChallenger
from opencomms.sip.endpoint_config import DEFAULT_METHODS
from opencomms.sip.handles import ServerTransactionHandle
from opencomms.sip.headers import HeaderError
from opencomms.sip.message import SipRequest
from opencomms.sip.registrar import Binding, ContactSpec, Registrar, RegistrarConfig
from opencomms.sip.uri import SipUri
from opencomms.store.base import Store

log = logging.getLogger("opencomms.sip")

KIND = "sip_binding"
_SECRET_KIND, _SECRET_KEY = "sip_secret", "digest-nonce"
REGISTRAR_METHODS = DEFAULT_METHODS | {"REGISTER"}
"""What the gateway's endpoint accepts: the stack's defaults and REGISTER."""


def nonce_secret(store: Store) -> bytes:
    """The digest nonce secret shared by every node of a store (made on first use)."""
    with store.transaction():
        doc = store.get(_SECRET_KIND, _SECRET_KEY)
        if doc is None:
            doc = {"secret": secrets.token_hex(32)}
            store.put(_SECRET_KIND, _SECRET_KEY, doc)
    return bytes.fromhex(str(doc["secret"]))


@dataclass(frozen=True, slots=True)
class Reachable:
    """A live binding of an account: where to send an INVITE for it."""

    account: SipAccount
    binding: Binding


class Registrations:
    """REGISTER handling and binding look-ups for the gateway. Synchronous: one store transaction per request."""

    def __init__(
        self,
        config: SipConfig,
        store: Store,
        *,
        local_hosts: tuple[str, ...] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.realm = realm_for(config)
        self.store = store
        self.clock = clock
        self.accounts = SipAccounts(store, self.realm, clock)
        self.registrar_config = RegistrarConfig(
            min_expires=config.register_min_expires,
            default_expires=max(config.register_min_expires, min(3600, config.register_max_expires)),
            max_expires=config.register_max_expires,
        )
        self.check_domain = bool(config.domain)
        self.local_hosts = frozenset(
            h.lower().strip("[]") for h in (config.domain, config.host, config.public_host, *local_hosts) if h
        )
        self.challenger = DigestChallenger(
            self.realm, nonce_secret(store), self.accounts.ha1, algorithms=config.register_digest_algorithms
        )
        self.purge()  # bindings that expired while no node was running

    # -- REGISTER ----------------------------------------------------------------------------------------------
    def handle(self, handle: ServerTransactionHandle, req: SipRequest) -> None:
        """Answer one REGISTER (every outcome is a response; nothing raises)."""
        try:
            to_uri = req.to.uri
            cseq = req.cseq.number
            contacts = self._contacts(req)
        except (HeaderError, ValueError) as exc:
            handle.respond(400, f"Bad Request: {exc}"[:120])
            return
        if not isinstance(to_uri, SipUri) or not to_uri.user:
            handle.respond(404, "Not Found")
            return
        if self.check_domain and to_uri.host_unbracketed.lower() not in self.local_hosts:
            handle.respond(404, "Not Found: not a domain of this registrar")
            return
        now = self.clock()
        credentials = req.headers.get_all("Authorization")
        if not credentials:
            self._challenge(handle, now)
            return
        try:
            verified = self.challenger.verify(credentials, "REGISTER", str(req.uri), now)
        except AuthError as exc:
            log.info("REGISTER not authenticated", extra={"reason": str(exc.reason)})
            self._challenge(handle, now, stale=exc.stale)
            return
        user = to_uri.user
        if verified.username != user:
            handle.respond(403, "Forbidden: credentials of another user")
            return
        account = self.accounts.get(user)
        if account is None:  # deleted between the challenge and now
            self._challenge(handle, now)
            return
        source = f"{handle.source.transport}:{handle.source.host}:{handle.source.port}"
        with self.store.transaction():
            registrar = self._load(account.username)
            result = registrar.register(
                self._aor(account.username), contacts, req.call_id, cseq, req.expires, now, source=source
            )
            if result.ok:
                self._save(account.username, registrar)
        headers = [("Contact", value) for value in result.contact_headers()]
        headers += list(result.headers)
        handle.respond(result.status, result.reason, headers=headers)
        if result.ok:
            log.info("REGISTER", extra={"sip_user": mask_name(account.username), "bindings": len(result.bindings)})

    def _challenge(self, handle: ServerTransactionHandle, now: float, *, stale: bool = False) -> None:
        headers = [("WWW-Authenticate", value) for value in self.challenger.challenge_headers(now, stale=stale)]
        handle.respond(401, "Unauthorized", headers=headers)

    @staticmethod
    def _contacts(req: SipRequest) -> list[ContactSpec]:
        if req.contact_star:
            return [("*", None, None)]
        specs: list[ContactSpec] = []
        for contact in req.contacts:
            raw_expires = contact.param("expires")
            expires = contact.expires
            if raw_expires is not None and expires is None:
                raise ValueError("invalid expires parameter")
            raw_q = contact.param("q")
            q: float | None = None
            if raw_q is not None:
                try:
                    q = float(raw_q)
                except ValueError:
                    raise ValueError("invalid q parameter") from None
            specs.append((str(contact.uri), expires, q))
        return specs

    # -- bindings in the store ---------------------------------------------------------------------------------
    def _aor(self, username: str) -> str:
        return f"sip:{username}@{self.realm}"

    def _load(self, username: str) -> Registrar:
        registrar = Registrar(self.registrar_config)
        doc = self.store.get(KIND, username)
        if doc is not None:
            with contextlib.suppress(ValueError):
                registrar.restore(doc)
        return registrar

    def _save(self, username: str, registrar: Registrar) -> None:
        snapshot = registrar.snapshot()
        if snapshot["bindings"]:
            self.store.put(KIND, username, snapshot)
        else:
            self.store.delete(KIND, username)

    def bindings(self, username: str) -> list[Binding]:
        """Live bindings of an account, best first (highest q, then most recently refreshed)."""
        if self.store.get(KIND, username) is None:
            return []
        return self._load(username).lookup(self._aor(username), self.clock())

    def purge(self) -> int:
        """Drop expired bindings from the store; the number dropped."""
        now, dropped = self.clock(), 0
        for username, doc in list(self.store.scan(KIND)):
            registrar = Registrar(self.registrar_config)
            try:
                registrar.restore(doc)
            except ValueError:
                self.store.delete(KIND, username)
                continue
            count = registrar.purge(now)
            if count:
                dropped += count
                self._save(username, registrar)
        return dropped

    # -- calls to users ----------------------------------------------------------------------------------------
    def reachable(self, tenant_id: str, user_id: str) -> list[Reachable]:
        """Live bindings of every account a `user` target with this id reaches (see SipAccounts.for_target)."""
        found: list[Reachable] = []
        for account in self.accounts.for_target(tenant_id, normalize_id(user_id) if user_id else ""):
            found += [Reachable(account, binding) for binding in self.bindings(account.username)]
        return found


__all__ = ["KIND", "REGISTRAR_METHODS", "Reachable", "Registrations", "nonce_secret"]
