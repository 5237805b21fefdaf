"""Access tokens (Microsoft identity platform v2 style: application and delegated), ID tokens and callback
tokens, RS256 only.

Owns claim layout, issuance, validation and their caches; must not read the clock, check roles against APIs,
or put token contents into error messages.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import jwt
from jwt.api_jws import PyJWS

from opencomms.auth.keys import KeyRing, SigningKey
from opencomms.auth.permissions import normalize_roles

__all__ = ["AccessClaims", "TokenError", "TokenErrorReason", "TokenService"]

TokenErrorReason = Literal[
    "malformed",
    "unknown_key",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "wrong_issuer",
    "wrong_audience",
    "missing_claim",
    "lifetime_too_long",
]


class TokenError(Exception):
    """A token was refused. ``reason`` is machine-readable; the message never quotes the token."""

    def __init__(self, reason: TokenErrorReason, message: str) -> None:
        super().__init__(message)
        self.reason: TokenErrorReason = reason


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """What the API needs from a validated access token. Roles use canonical permission spellings."""

    tenant_id: str
    app_id: str
    roles: frozenset[str]
    audience: str
    expires_at: float
    token_id: str
    user_id: str | None = None
    """The signed-in user (`oid`) of a delegated token; None for an application token."""
    scopes: frozenset[str] = frozenset()
    """A delegated token's `scp`, split."""


@dataclass(frozen=True, slots=True)
class _Validated:
    claims: AccessClaims
    kid: str
    private_pem: str  # identifies the exact key, in case a kid is ever reused
    valid_from: float  # nbf - leeway
    valid_until: float  # exp + leeway


@dataclass(frozen=True, slots=True)
class _IssuedCallback:
    token: str
    issued_at: float
    refresh_at: float


_JWS = PyJWS(algorithms=["RS256"])
_CALLBACK_CACHE_SIZE = 4096  # distinct (app, tenant, key) triples remembered; oldest evicted first
_K = TypeVar("_K")
_V = TypeVar("_V")


class TokenService:
    """Issues and validates the node's tokens with the keys of a :class:`KeyRing` (shared, mutable)."""

    def __init__(
        self,
        keyring: KeyRing,
        *,
        issuer_base: str,
        audiences: Sequence[str],
        access_token_lifetime: float = 3600.0,
        callback_issuer: str = "https://api.botframework.com",
        callback_token_lifetime: float = 3600.0,
        leeway: float = 60.0,
        callback_refresh_margin: float = 300.0,
        validation_cache_size: int = 10_000,
    ) -> None:
        if not audiences:
            raise ValueError("at least one accepted audience is required")
        if access_token_lifetime < 1 or callback_token_lifetime < 1:
            raise ValueError("token lifetimes must be at least one second")
        if leeway < 0 or callback_refresh_margin < 0 or validation_cache_size < 0:
            raise ValueError("leeway, refresh margin and cache size must not be negative")
        self._keyring = keyring
        self._issuer_base = issuer_base.rstrip("/")
        self._audience_list = tuple(dict.fromkeys(audiences))
        self._audiences = frozenset(self._audience_list)
        self._access_lifetime = int(access_token_lifetime)
        self._callback_issuer = callback_issuer
        self._callback_lifetime = int(callback_token_lifetime)
        self._leeway = leeway
        self._refresh_margin = callback_refresh_margin
        self._cache_size = validation_cache_size
        self._validated: dict[str, _Validated] = {}
        self._callbacks: dict[tuple[str, str, str], _IssuedCallback] = {}

    @property
    def max_token_lifetime(self) -> float:
        """How long after retirement a key must stay published: pass to ``KeyRing.published/prune/jwks``."""
        return max(self._access_lifetime, self._callback_lifetime) + self._leeway

    @property
    def audiences(self) -> tuple[str, ...]:
        """Accepted token audiences, in configuration order (the first is the node's own URL)."""
        return self._audience_list

    @property
    def callback_issuer(self) -> str:
        return self._callback_issuer

    def jwks(self, now: float) -> dict[str, list[dict[str, str]]]:
        """The published signing keys (active and recently retired) as a JWKS document."""
        return self._keyring.jwks(now, self.max_token_lifetime)

    def issuer_for(self, tenant_id: str) -> str:
        """The v2 issuer for a tenant, like ``https://login.microsoftonline.com/{tid}/v2.0``."""
        return f"{self._issuer_base}/{tenant_id}/v2.0"

    # -- access tokens -------------------------------------------------------------------------------------

    def issue_access_token(
        self, *, tenant_id: str, app_id: str, roles: Iterable[str], audience: str, now: float
    ) -> tuple[str, int]:
        """A signed app-only access token and its ``expires_in`` in seconds."""
        return self._access(tenant_id, app_id, audience, now, roles=sorted(set(roles)), sub=app_id, idtyp="app")

    def issue_delegated_token(
        self, *, tenant_id: str, app_id: str, user_id: str, scopes: Iterable[str], audience: str, now: float
    ) -> tuple[str, int]:
        """A signed access token for a signed-in user (`scp`, `oid`), and its ``expires_in`` in seconds."""
        scp = " ".join(sorted(set(scopes)))
        return self._access(tenant_id, app_id, audience, now, scp=scp, sub=user_id, idtyp="user")

    def _access(
        self, tenant_id: str, app_id: str, audience: str, now: float, *, sub: str, idtyp: str, **grant: Any
    ) -> tuple[str, int]:
        """An access token's claims in Entra ID's v2 shape (`grant`: `roles` or `scp`), signed with the active key."""
        if audience not in self._audiences:
            raise ValueError("audience is not one this service accepts")
        iat = int(now)
        claims = {
            "aud": audience,
            "iss": self.issuer_for(tenant_id),
            "iat": iat,
            "nbf": iat,
            "exp": iat + self._access_lifetime,
            "tid": tenant_id,
            "appid": app_id,
            "azp": app_id,
            **grant,
            "sub": sub,
            "oid": sub,
            "ver": "2.0",
            "jti": str(uuid.uuid4()),
            "idtyp": idtyp,
        }
        return self._sign(claims, self._keyring.active), self._access_lifetime

    def issue_id_token(
        self, *, tenant_id: str, client_id: str, user_id: str, name: str, username: str, nonce: str | None, now: float
    ) -> str:
        """An OpenID Connect ID token for the client (audience = its client id)."""
        iat = int(now)
        claims: dict[str, Any] = {
            "aud": client_id,
            "iss": self.issuer_for(tenant_id),
            "iat": iat,
            "nbf": iat,
            "exp": iat + self._access_lifetime,
            "tid": tenant_id,
            "oid": user_id,
            "sub": user_id,
            "name": name,
            "preferred_username": username,
            "ver": "2.0",
        }
        if nonce is not None:
            claims["nonce"] = nonce
        return self._sign(claims, self._keyring.active)

    def validate_access_token(self, token: str, now: float) -> AccessClaims:
        """The claims of a valid access token; raises :class:`TokenError`. Repeated tokens hit a cache."""
        hit = self._validated.get(token)
        if hit is not None:
            key = self._keyring.get(hit.kid)
            if key is not None and key.private_pem == hit.private_pem and hit.valid_from <= now < hit.valid_until:
                return hit.claims
            self._validated.pop(token, None)  # full validation below yields the precise reason
        kid, private_pem, claims = self._verify(token)
        exp, nbf = self._check_lifetime(claims, now, self._access_lifetime)
        tenant_id = _str_claim(claims, "tid")
        app_id = _str_claim(claims, "appid") or _str_claim(claims, "azp")
        if not tenant_id or not app_id:
            raise TokenError("missing_claim", "token lacks the tenant (tid) or application (appid) claim")
        if claims.get("iss") != self.issuer_for(tenant_id):
            raise TokenError("wrong_issuer", "token issuer does not match its tenant")
        audience = self._match_audience(claims.get("aud"), self._audiences)
        roles = claims.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise TokenError("malformed", "roles claim must be a list of strings")
        scp = claims.get("scp")
        user_id = None
        if scp is not None:
            user_id = _str_claim(claims, "oid")
            if not isinstance(scp, str) or not user_id:
                raise TokenError("malformed", "a delegated token needs a scp string and the user's oid")
        result = AccessClaims(
            tenant_id=tenant_id,
            app_id=app_id,
            roles=frozenset() if scp is not None else normalize_roles(roles),
            audience=audience,
            expires_at=exp,
            token_id=_str_claim(claims, "jti") or _str_claim(claims, "uti"),
            user_id=user_id,
            scopes=frozenset(str(scp).split()) if scp is not None else frozenset(),
        )
        entry = _Validated(result, kid, private_pem, nbf - self._leeway, exp + self._leeway)
        _put_bounded(self._validated, token, entry, self._cache_size)
        return result

    # -- callback tokens -----------------------------------------------------------------------------------

    def callback_token(self, *, app_id: str, tenant_id: str, now: float) -> str:
        """Bearer token for a bot's notifications, reused until ``callback_refresh_margin`` before exp."""
        key = self._keyring.active
        cache_key = (app_id, tenant_id, key.kid)
        issued = self._callbacks.get(cache_key)
        if issued is not None and issued.issued_at <= now < issued.refresh_at:
            return issued.token
        iat = int(now)
        exp = iat + self._callback_lifetime
        claims = {
            "iss": self._callback_issuer,
            "aud": app_id,
            "tid": tenant_id,
            "appid": app_id,
            "iat": iat,
            "nbf": iat,
            "exp": exp,
        }
        token = self._sign(claims, key)
        _put_bounded(
            self._callbacks,
            cache_key,
            _IssuedCallback(token, iat, exp - self._refresh_margin),
            _CALLBACK_CACHE_SIZE,
        )
        return token

    def validate_callback_token(self, token: str, *, app_id: str, now: float) -> dict[str, Any]:
        """The checks a bot performs on a callback's bearer token; returns the claims or raises TokenError."""
        _, _, claims = self._verify(token)
        self._check_lifetime(claims, now, self._callback_lifetime)
        if not _str_claim(claims, "tid"):
            raise TokenError("missing_claim", "callback token lacks the tenant (tid) claim")
        if claims.get("iss") != self._callback_issuer:
            raise TokenError("wrong_issuer", "callback token has an unexpected issuer")
        self._match_audience(claims.get("aud"), frozenset((app_id,)))
        return claims

    # -- shared steps --------------------------------------------------------------------------------------

    @staticmethod
    def _sign(claims: dict[str, Any], key: SigningKey) -> str:
        return jwt.encode(claims, key.private_key(), algorithm="RS256", headers={"kid": key.kid, "typ": "JWT"})

    def _verify(self, token: str) -> tuple[str, str, dict[str, Any]]:
        """Header, key lookup and signature; returns (kid, key PEM, claims)."""
        try:
            header = _JWS.get_unverified_header(token)
        except (jwt.InvalidTokenError, ValueError, TypeError):
            raise TokenError("malformed", "token is not a well-formed JWS") from None
        if header.get("alg") != "RS256":
            raise TokenError("malformed", "only RS256-signed tokens are accepted")
        kid = header.get("kid")
        key = self._keyring.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise TokenError("unknown_key", "token is signed with a key that is not published")
        try:
            decoded = _JWS.decode_complete(token, key.public_key(), algorithms=["RS256"])
        except jwt.InvalidSignatureError:
            raise TokenError("bad_signature", "token signature does not verify") from None
        except (jwt.InvalidTokenError, ValueError, TypeError):
            raise TokenError("malformed", "token is not a well-formed JWS") from None
        try:
            claims = json.loads(decoded["payload"])
        except ValueError:
            raise TokenError("malformed", "token payload is not JSON") from None
        if not isinstance(claims, dict):
            raise TokenError("malformed", "token payload is not a JSON object")
        return key.kid, key.private_pem, claims

    def _check_lifetime(self, claims: dict[str, Any], now: float, lifetime: float) -> tuple[float, float]:
        """Checks exp, nbf, then that the token lives no longer than `lifetime` (the node never issues longer ones,
        so a longer one is forged with a stolen key or minted by a bug: `exp - iat` and `exp - now` are capped),
        all with leeway; returns (exp, nbf), nbf defaulting to -inf when absent."""
        exp = _time_claim(claims, "exp")
        if exp is None:
            raise TokenError("missing_claim", "token lacks an expiry (exp) claim")
        if now >= exp + self._leeway:
            raise TokenError("expired", "token has expired")
        nbf = _time_claim(claims, "nbf")
        if nbf is not None and now < nbf - self._leeway:
            raise TokenError("not_yet_valid", "token is not valid yet")
        longest = lifetime + self._leeway
        iat = _time_claim(claims, "iat")
        if exp - now > longest or (iat is not None and exp - iat > longest):
            raise TokenError("lifetime_too_long", "token lifetime is longer than this service issues")
        return exp, float("-inf") if nbf is None else nbf

    @staticmethod
    def _match_audience(aud: object, accepted: frozenset[str]) -> str:
        candidates = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        for candidate in candidates:
            if isinstance(candidate, str) and candidate in accepted:
                return candidate
        raise TokenError("wrong_audience", "token audience is not accepted here")


def _str_claim(claims: dict[str, Any], name: str) -> str:
    value = claims.get(name)
    return value if isinstance(value, str) else ""


def _time_claim(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenError("malformed", f"the {name} claim is not a number")
    return float(value)


def _put_bounded(cache: dict[_K, _V], key: _K, value: _V, limit: int) -> None:
    """Insert, evicting the oldest entries first once ``limit`` is reached (limit 0 disables caching)."""
    if limit <= 0:
        return
    while len(cache) >= limit:
        del cache[next(iter(cache))]
    cache[key] = value
