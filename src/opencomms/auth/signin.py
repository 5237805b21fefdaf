"""Delegated sign-in state: sign-in forms, authorization codes (PKCE S256), device codes and refresh tokens.

Sans-I/O except for refresh tokens, kept hashed in the store ("refreshToken") so they survive a restart; forms,
codes and device codes are short-lived and held in memory (bounded, oldest dropped first). Time is an input.
Errors are `GrantError`s carrying OAuth's error word and an Entra ID-like code; the routes turn them into bodies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, replace
from typing import Any, TypeVar

from opencomms.auth.permissions import DelegatedScope, parse_scope
from opencomms.config import SignInConfig
from opencomms.ratelimit import KeyedTokenBucket
from opencomms.store.base import Store

__all__ = ["AuthRequest", "DeviceFlow", "Grant", "GrantError", "SignIn", "parse_scopes", "redirect_allowed"]

OIDC_SCOPES = ("openid", "profile", "offline_access", "email")
REFRESH_KIND = "refreshToken"
"""Also named in directory.py (REFRESH_TOKENS), which revokes a user's tokens when the password changes."""
_USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"  # no vowels (no words), no look-alikes
_LOOPBACK = ("localhost", "127.0.0.1", "[::1]", "::1")
_V = TypeVar("_V")


class GrantError(Exception):
    """An OAuth error: `error` is the RFC word (invalid_grant, authorization_pending, …)."""

    def __init__(self, error: str, description: str, code: int, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.code = code
        self.status = status


@dataclass(frozen=True, slots=True)
class Grant:
    """What a code, a device code or a refresh token stands for: a user's consent for an app and scopes."""

    tenant_id: str
    app_id: str
    user_id: str
    audience: str
    scopes: tuple[str, ...]
    """Delegated permission names (OnlineMeetings.ReadWrite …), as they go into `scp`."""
    requested: tuple[str, ...]
    """The resource scopes as the client wrote them (echoed in the token response's `scope`)."""
    oidc: tuple[str, ...] = ()
    nonce: str | None = None


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """A checked /authorize request waiting for its user to sign in on the form."""

    tenant_id: str
    app_id: str
    redirect_uri: str
    audience: str
    scopes: tuple[str, ...]
    requested: tuple[str, ...]
    oidc: tuple[str, ...]
    state: str | None
    nonce: str | None
    code_challenge: str
    csrf: str
    expires_at: float


@dataclass(slots=True)
class _Code:
    grant: Grant
    redirect_uri: str
    code_challenge: str
    expires_at: float


@dataclass(slots=True)
class DeviceFlow:
    tenant_id: str
    app_id: str
    audience: str
    scopes: tuple[str, ...]
    requested: tuple[str, ...]
    oidc: tuple[str, ...]
    user_code: str
    expires_at: float
    last_poll: float = float("-inf")
    user_id: str | None = None
    done: bool = False


@dataclass
class _Bounded:
    limit: int
    items: OrderedDict[str, Any] = field(default_factory=OrderedDict)

    def put(self, key: str, value: Any) -> None:
        while len(self.items) >= self.limit:
            self.items.popitem(last=False)
        self.items[key] = value


Names = tuple[str, ...]


def parse_scopes(scope: str, audiences: tuple[str, ...]) -> tuple[str, Names, Names, Names]:
    """(audience, delegated permission names, resource scopes as written, OpenID scopes) of a `scope` parameter.

    `https://graph.microsoft.com/OnlineMeetings.ReadWrite`, a bare `OnlineMeetings.ReadWrite` (Graph's, as Entra
    ID reads it) or `<audience>/.default` (every delegated permission); one resource per request."""
    oidc: list[str] = []
    names: list[str] = []
    written: list[str] = []
    audience: str | None = None
    default = next((a for a in audiences if a.rstrip("/") == "https://graph.microsoft.com"), audiences[0])
    for item in scope.split():
        if item.lower() in OIDC_SCOPES:
            oidc.append(item.lower())
            continue
        resource, slash, name = item.rpartition("/")
        found = default if not slash else next((a for a in audiences if a.rstrip("/") == resource.rstrip("/")), None)
        if found is None:
            raise GrantError("invalid_resource", f"The resource of the scope {item[:80]!r} is not served here.", 500011)
        if audience is not None and found != audience:
            raise GrantError("invalid_scope", "Scopes of several resources cannot be requested at once.", 28000)
        audience = found
        if name == ".default":
            names.extend(s.value for s in DelegatedScope)
        else:
            known = parse_scope(name)
            if known is None:
                text = f"The scope {item[:80]!r} is not a known delegated permission."
                raise GrantError("invalid_scope", text, 70011)
            names.append(known.value)
        written.append(item)
    if audience is None:
        raise GrantError("invalid_scope", "Request a resource scope, e.g. https://graph.microsoft.com/.default.", 70011)
    return audience, tuple(dict.fromkeys(names)), tuple(written), tuple(dict.fromkeys(oidc))


def redirect_allowed(uri: str, registered: tuple[str, ...]) -> bool:
    """Exact match, or a loopback redirect that differs only by port (RFC 8252 §7.3, as Entra ID allows)."""
    if uri in registered:
        return True
    scheme, _, rest = uri.partition("://")
    host, _, path = rest.partition("/")
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if name not in _LOOPBACK:
        return False
    for item in registered:
        r_scheme, _, r_rest = item.partition("://")
        r_host, _, r_path = r_rest.partition("/")
        r_name = r_host.rsplit(":", 1)[0] if not r_host.endswith("]") else r_host
        if r_scheme == scheme and r_name == name and r_path == path:
            return True
    return False


def pkce_s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).decode().rstrip("=")


class SignIn:
    """The sign-in state of one node."""

    def __init__(self, config: SignInConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self._forms = _Bounded(config.max_pending)
        self._codes = _Bounded(config.max_pending)
        self._devices = _Bounded(config.max_pending)
        self._user_codes: dict[str, str] = {}
        self.failures = KeyedTokenBucket(config.failed_sign_in_rate, config.failed_sign_in_burst)
        self.starts = KeyedTokenBucket(config.start_rate, config.start_burst)
        """Forms and device codes opened per client address: keeps one address from flushing the bounded state."""

    # -- the sign-in form ----------------------------------------------------------------------------------
    def open_form(self, request: AuthRequest) -> str:
        """A transaction id for the form; the request carries the form's CSRF value."""
        txn = secrets.token_urlsafe(24)
        self._forms.put(txn, request)
        return txn

    def form(self, txn: str, csrf_form: str, csrf_cookie: str, now: float) -> AuthRequest:
        request: AuthRequest | None = self._forms.items.get(txn[:64])
        if request is None or request.expires_at <= now:
            raise GrantError("invalid_request", "This sign-in page has expired; start again.", 50058)
        if not (hmac.compare_digest(csrf_form, request.csrf) and hmac.compare_digest(csrf_cookie, request.csrf)):
            raise GrantError("invalid_request", "The sign-in form did not come from this page; start again.", 90014)
        return request

    def new_csrf(self, now: float) -> str:
        """A CSRF value for a page without a transaction (the device login page)."""
        csrf = secrets.token_urlsafe(24)
        self._forms.put(f"csrf:{csrf}", now + self.config.form_lifetime)
        return csrf

    def check_csrf(self, csrf_form: str, csrf_cookie: str, now: float) -> bool:
        expiry = self._forms.items.get(f"csrf:{csrf_form[:64]}")
        return expiry is not None and expiry > now and hmac.compare_digest(csrf_form, csrf_cookie)

    def wait(self, keys: tuple[str, ...], now: float) -> float | None:
        """Seconds before another sign-in attempt is judged for these keys (None: now)."""
        waits = [w for k in keys if (w := self.failures.wait(k, now)) is not None]
        return max(waits) if waits else None

    def failed(self, keys: tuple[str, ...], now: float) -> None:
        for key in keys:
            self.failures.take(key, now)

    def finish_form(self, txn: str, request: AuthRequest, user_id: str, now: float) -> str:
        """The user signed in: the form is used up and an authorization code is issued."""
        self._forms.items.pop(txn, None)
        grant = Grant(
            request.tenant_id,
            request.app_id,
            user_id,
            request.audience,
            request.scopes,
            request.requested,
            request.oidc,
            request.nonce,
        )
        code = secrets.token_urlsafe(32)
        expires = now + self.config.code_lifetime
        self._codes.put(code, _Code(grant, request.redirect_uri, request.code_challenge, expires))
        return code

    # -- authorization code ------------------------------------------------------------------------------------
    def redeem_code(self, code: str, client_id: str, redirect_uri: str, verifier: str, now: float) -> Grant:
        found: _Code | None = self._codes.items.pop(code[:128], None)  # single use, whatever happens next
        if found is None or found.expires_at <= now:
            raise GrantError("invalid_grant", "The authorization code is invalid, used or expired.", 70008)
        if found.grant.app_id != client_id:
            raise GrantError("invalid_grant", "The authorization code was issued to another application.", 70002)
        if redirect_uri != found.redirect_uri:
            raise GrantError("invalid_grant", "The redirect_uri does not match the authorization request.", 70001)
        if not verifier or not hmac.compare_digest(pkce_s256(verifier), found.code_challenge):
            raise GrantError("invalid_grant", "The code_verifier does not match the code_challenge.", 501481)
        return found.grant

    # -- device code ---------------------------------------------------------------------------------------
    def start_device(self, flow: DeviceFlow) -> str:
        device_code = secrets.token_urlsafe(32)
        while flow.user_code in self._user_codes:
            flow.user_code = self.user_code()
        self._devices.put(device_code, flow)
        self._user_codes[flow.user_code] = device_code
        if len(self._user_codes) > 2 * self.config.max_pending:
            self._user_codes = {u: d for u, d in self._user_codes.items() if d in self._devices.items}
        return device_code

    @staticmethod
    def user_code() -> str:
        return "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(9))

    def device_by_user_code(self, user_code: str, now: float) -> DeviceFlow | None:
        device_code = self._user_codes.get(user_code.strip().upper().replace("-", "")[:16])
        flow = None if device_code is None else self._devices.items.get(device_code)
        return None if flow is None or flow.expires_at <= now or flow.user_id is not None else flow

    def poll_device(self, device_code: str, client_id: str, now: float) -> Grant:
        flow: DeviceFlow | None = self._devices.items.get(device_code[:128])
        if flow is None or flow.done or flow.app_id != client_id:
            raise GrantError("invalid_grant", "The device code is invalid or was already redeemed.", 70000)
        if flow.expires_at <= now:
            self._forget_device(device_code, flow)
            raise GrantError("expired_token", "The device code has expired; start again.", 70019)
        early = now - flow.last_poll < self.config.device_poll_interval - 0.5
        flow.last_poll = now
        if flow.user_id is None:
            if early:
                raise GrantError("slow_down", "Poll less often (see interval).", 70018)
            raise GrantError("authorization_pending", "The user has not signed in yet.", 70016)
        self._forget_device(device_code, flow)
        return Grant(flow.tenant_id, flow.app_id, flow.user_id, flow.audience, flow.scopes, flow.requested, flow.oidc)

    def _forget_device(self, device_code: str, flow: DeviceFlow) -> None:
        flow.done = True
        self._devices.items.pop(device_code, None)
        self._user_codes.pop(flow.user_code, None)

    # -- refresh tokens ------------------------------------------------------------------------------------
    def issue_refresh(self, grant: Grant, now: float) -> str:
        token = secrets.token_urlsafe(48)
        doc = {**asdict(grant), "expires_at": now + self.config.refresh_token_lifetime}
        self.store.put(REFRESH_KIND, _digest(token), doc)
        return token

    def redeem_refresh(self, token: str, client_id: str, now: float) -> Grant:
        """The refresh token's grant; the token is used up (the response carries its successor)."""
        key = _digest(token[:512])
        doc = self.store.get(REFRESH_KIND, key)
        if doc is None:
            raise GrantError("invalid_grant", "The refresh token is invalid, used or revoked.", 9002313)
        if doc.get("app_id") != client_id:
            raise GrantError("invalid_grant", "The refresh token was issued to another application.", 70000)
        self.store.delete(REFRESH_KIND, key)
        if float(doc.pop("expires_at")) <= now:
            raise GrantError("invalid_grant", "The refresh token has expired; sign in again.", 700082)
        doc["scopes"], doc["requested"], doc["oidc"] = (tuple(doc[k]) for k in ("scopes", "requested", "oidc"))
        return replace(Grant(**doc), nonce=None)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()
