"""Validation of the node's callback tokens: RS256 against its JWKS (cached, refreshed on an unknown key id).

The node signs every notification POST with `Authorization: Bearer <JWT>`: `iss` is the callback issuer
(`https://api.botframework.com` by default, as Microsoft's), `aud` the bot's app id, `tid` its tenant. A bot
must check all of it. Refusals carry the HTTP status to answer: 401 for a missing, malformed, badly signed,
expired or unknown-key token; 403 for a valid token meant for another application (or tenant).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt

from opencomms.sdk.errors import CallbackAuthError

log = logging.getLogger("opencomms.sdk")

DEFAULT_CALLBACK_ISSUER = "https://api.botframework.com"


def jwks_url_for(node_url: str) -> str:
    """The JWKS the node publishes its signing keys at."""
    return f"{node_url.rstrip('/')}/common/discovery/v2.0/keys"


class JwksCache:
    """Public keys by `kid`, fetched from a JWKS URL.

    Fetched on first use and again after `max_age`; an unknown `kid` triggers a refresh (key rotation), at most
    once per `min_refresh_interval` so that forged tokens with random key ids cannot make us hammer the node.
    A failed fetch keeps the keys we had.
    """

    def __init__(
        self,
        url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        max_age: float = 3600.0,
        min_refresh_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.max_age = max_age
        self.min_refresh_interval = min_refresh_interval
        self.fetches = 0
        self._session = session
        self._own_session = session is None
        self._clock = clock
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None
        self._unknown_at: float | None = None
        self._failed_at: float | None = None
        self._lock = asyncio.Lock()

    def known(self, kid: str) -> bool:
        return kid in self._keys

    async def key(self, kid: str) -> Any | None:
        now = self._clock()
        if self._fetched_at is None or now - self._fetched_at >= self.max_age:
            await self.refresh()
        elif kid not in self._keys and (
            self._unknown_at is None or now - self._unknown_at >= self.min_refresh_interval
        ):
            self._unknown_at = now  # rate-limits only refreshes caused by unknown key ids
            await self.refresh()
        return self._keys.get(kid)

    async def refresh(self) -> None:
        """Fetch the JWKS now (concurrent callers share one fetch); a failure keeps the keys we had."""
        started = self._clock()
        async with self._lock:
            if self._fetched_at is not None and self._fetched_at >= started:
                return  # someone fetched while we waited for the lock
            if self._failed_at is not None and started - self._failed_at < 1.0:
                return  # the node's JWKS just failed: do not retry it for every request
            try:
                keys = await self._fetch()
            except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                log.warning("JWKS fetch failed: %s", type(exc).__name__, extra={"url": self.url})
                self._failed_at = self._clock()
                return
            self._keys = keys
            self._fetched_at = self._clock()

    async def _fetch(self) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        self.fetches += 1
        timeout = aiohttp.ClientTimeout(total=10)
        async with self._session.get(self.url, timeout=timeout) as resp:
            if resp.status != 200:
                raise ValueError(f"JWKS answered {resp.status}")
            doc = await resp.json(content_type=None)
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise ValueError("not a JWKS document")
        keys: dict[str, Any] = {}
        for jwk in doc["keys"]:
            if not isinstance(jwk, dict) or jwk.get("kty") != "RSA" or not isinstance(jwk.get("kid"), str):
                continue
            try:
                keys[jwk["kid"]] = jwt.PyJWK(jwk, algorithm="RS256").key
            except (jwt.PyJWKError, ValueError, TypeError):
                continue
        return keys

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None


@dataclass(frozen=True, slots=True)
class _Accepted:
    claims: dict[str, Any]
    kid: str
    expires_at: float


class CallbackValidator:
    """Checks a notification's Authorization header; returns the token's claims or raises CallbackAuthError."""

    def __init__(
        self,
        jwks: JwksCache,
        *,
        app_id: str | Iterable[str],
        issuer: str = DEFAULT_CALLBACK_ISSUER,
        tenants: Iterable[str] | None = None,
        leeway: float = 60.0,
        cache_size: int = 1024,
    ) -> None:
        self.jwks = jwks
        self.app_ids = [app_id] if isinstance(app_id, str) else list(app_id)
        self.issuer = issuer
        self.tenants = None if tenants is None else frozenset(t.lower() for t in tenants)
        self.leeway = leeway
        self._cache_size = cache_size
        self._accepted: OrderedDict[str, _Accepted] = OrderedDict()

    async def validate(self, authorization: str | None) -> dict[str, Any]:
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise CallbackAuthError(401, "missing bearer token")
        hit = self._accepted.get(token)
        if hit is not None and time.time() < hit.expires_at + self.leeway and self.jwks.known(hit.kid):
            return hit.claims
        claims, kid = await self._verify(token)
        exp = claims.get("exp")
        if isinstance(exp, int | float) and self._cache_size > 0:
            self._accepted[token] = _Accepted(claims, kid, float(exp))
            while len(self._accepted) > self._cache_size:
                self._accepted.popitem(last=False)
        return claims

    async def _verify(self, token: str) -> tuple[dict[str, Any], str]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise CallbackAuthError(401, "malformed token") from None
        if header.get("alg") != "RS256":
            raise CallbackAuthError(401, "only RS256 tokens are accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise CallbackAuthError(401, "token has no key id")
        key = await self.jwks.key(kid)
        if key is None:
            raise CallbackAuthError(401, "token signed with an unknown key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=self.app_ids,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.InvalidAudienceError:
            raise CallbackAuthError(403, "token is meant for another application") from None
        except jwt.InvalidSignatureError:
            raise CallbackAuthError(401, "bad token signature") from None
        except jwt.ExpiredSignatureError:
            raise CallbackAuthError(401, "token expired") from None
        except jwt.InvalidIssuerError:
            raise CallbackAuthError(401, "unexpected token issuer") from None
        except jwt.InvalidTokenError:
            raise CallbackAuthError(401, "invalid token") from None
        tid = claims.get("tid")
        if not isinstance(tid, str) or not tid:
            raise CallbackAuthError(401, "token has no tenant (tid)")
        if self.tenants is not None and tid.lower() not in self.tenants:
            raise CallbackAuthError(403, "token is for another tenant")
        return claims, kid
