"""Client-credentials tokens: a pure cache with a refresh margin, and the fetch against the token endpoint.

The endpoint is Microsoft identity platform's shape, `{authority}/{tenant}/oauth2/v2.0/token`, which the node
serves as well. One fetch at a time per credentials object (concurrent requests share it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from opencomms.sdk.errors import AuthenticationError, GraphError


@dataclass(frozen=True, slots=True)
class CachedToken:
    token: str
    expires_at: float
    refresh_at: float


class TokenCache:
    """Holds one access token per scope, pure (time is an argument).

    A token is refreshed `margin` seconds before it expires, or at half its life if it lives less than 2 margins.
    """

    def __init__(self, margin: float = 300.0) -> None:
        self.margin = margin
        self._tokens: dict[str, CachedToken] = {}

    def get(self, scope: str, now: float) -> str | None:
        item = self._tokens.get(scope)
        if item is None or now >= item.refresh_at:
            return None
        return item.token

    def put(self, scope: str, token: str, expires_in: float, now: float) -> None:
        lead = min(self.margin, expires_in / 2)
        self._tokens[scope] = CachedToken(token, now + expires_in, now + expires_in - lead)

    def invalidate(self, scope: str | None = None) -> None:
        if scope is None:
            self._tokens.clear()
        else:
            self._tokens.pop(scope, None)


class ClientCredentials:
    """An application's identity: gets (and caches) app-only access tokens with the client-credentials grant.

    `authority` is the token service's base URL (the node's own URL, or https://login.microsoftonline.com);
    `scope` defaults to `{api base url}/.default`, which the client passes in.
    """

    def __init__(
        self,
        authority: str,
        tenant: str,
        client_id: str,
        client_secret: str,
        scope: str | None = None,
        *,
        refresh_margin: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.authority = authority.rstrip("/")
        self.tenant = tenant
        self.client_id = client_id
        self.scope = scope
        self._secret = client_secret
        self._cache = TokenCache(refresh_margin)
        self._clock = clock
        self._lock = asyncio.Lock()
        self.fetches = 0
        """Token requests made so far (observability, tests)."""

    @property
    def token_url(self) -> str:
        return f"{self.authority}/{self.tenant}/oauth2/v2.0/token"

    def __repr__(self) -> str:  # never show the secret
        return f"ClientCredentials(authority={self.authority!r}, tenant={self.tenant!r}, client_id={self.client_id!r})"

    def invalidate(self) -> None:
        """Forget cached tokens (after the API refused one)."""
        self._cache.invalidate()

    async def token(self, session: aiohttp.ClientSession, default_scope: str) -> str:
        scope = self.scope or default_scope
        cached = self._cache.get(scope, self._clock())
        if cached is not None:
            return cached
        async with self._lock:
            cached = self._cache.get(scope, self._clock())
            if cached is not None:
                return cached
            token, expires_in = await self._fetch(session, scope)
            self._cache.put(scope, token, expires_in, self._clock())
            return token

    async def _fetch(self, session: aiohttp.ClientSession, scope: str) -> tuple[str, float]:
        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self._secret,
            "scope": scope,
        }
        self.fetches += 1
        async with session.post(self.token_url, data=form) as resp:
            try:
                body: Any = await resp.json(content_type=None)
            except ValueError:
                body = None
            if resp.status != 200 or not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
                err = GraphError.from_response(resp.status, body, dict(resp.headers))
                raise AuthenticationError(
                    resp.status, err.code, err.message or "token request failed", body, retry_after=err.retry_after
                )
            expires_in = body.get("expires_in", 3600)
            try:
                seconds = float(expires_in)
            except (TypeError, ValueError):
                seconds = 3600.0
            return body["access_token"], seconds
