"""Guards client-secret verification at the token endpoint, whose hash (scrypt) costs ~20 ms of a core: wrong-secret
attempts are throttled per client id and per source address *before* any hashing, a verified secret is remembered
briefly (a keyed hash in memory, never the secret), and verifications run in threads, a bounded few at a time.

The bookkeeping is pure (takes `now`); only `SecretGuard.verify` awaits. Must not log or keep plaintext secrets.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from opencomms.ratelimit import KeyedTokenBucket, retry_after

__all__ = ["SecretGuard", "SecretGuardConfig", "Verdict"]

_MAX_SOURCES = 65536
"""Source addresses whose failure buckets are remembered; the oldest are forgotten first."""


@dataclass(frozen=True, slots=True)
class SecretGuardConfig:
    failed_burst: float = 10.0
    """Wrong-secret attempts a client id may make before 429."""
    failed_rate: float = 0.1
    """Attempts per second a client id regains."""
    failed_burst_per_source: float = 30.0
    """Wrong-secret attempts a source address may make (all client ids) before 429."""
    failed_rate_per_source: float = 0.5
    """Attempts per second a source address regains."""
    cache_seconds: float = 300.0
    """Seconds a verified secret is remembered (0: never)."""
    max_checks: int = 2
    """Verifications running at once (threads)."""
    max_queued: int = 32
    """Requests waiting for a verification slot; beyond, 429."""

    def __post_init__(self) -> None:
        if min(self.failed_rate, self.failed_rate_per_source) <= 0:
            raise ValueError("failed-secret refill rates must be positive")
        if min(self.failed_burst, self.failed_burst_per_source) < 1:
            raise ValueError("failed-secret bursts must allow at least one attempt")
        if self.max_checks < 1 or self.max_queued < 0 or self.cache_seconds < 0:
            raise ValueError("max_checks must be at least 1; max_queued and cache_seconds not negative")


@dataclass(frozen=True, slots=True)
class Verdict:
    """`ok`: the secret is right; `wrong`: it is not; `throttled`: not checked, retry after `retry_after` s."""

    outcome: Literal["ok", "wrong", "throttled"]
    retry_after: int = 0


class _Buckets(KeyedTokenBucket):
    """Failed-attempt buckets answering whole seconds (a success refunds its reservation with `give_back`)."""

    __slots__ = ()

    def take_seconds(self, key: str, now: float) -> int | None:
        wait = self.take(key, now)
        return None if wait is None else retry_after(wait)


class SecretGuard:
    """Throttle, cache and concurrency bound around one `check(secret) -> bool` per request."""

    def __init__(self, config: SecretGuardConfig | None = None) -> None:
        self.config = cfg = config or SecretGuardConfig()
        self._clients = _Buckets(cfg.failed_rate, cfg.failed_burst, _MAX_SOURCES)
        self._sources = _Buckets(cfg.failed_rate_per_source, cfg.failed_burst_per_source, _MAX_SOURCES)
        self._key = secrets.token_bytes(32)  # per process: the cache is useless to anyone reading memory dumps later
        self._verified: dict[str, tuple[tuple[str, ...], bytes, float]] = {}
        self._slots: asyncio.Semaphore | None = None
        self._waiting = 0
        self.hashed = 0
        """Verifications actually run (the slow hash), for tests and /healthz."""

    def _digest(self, secret: str) -> bytes:
        return hmac.new(self._key, secret.encode("utf-8"), hashlib.sha256).digest()

    def remembered(self, client_id: str, hashes: tuple[str, ...], secret: str, now: float) -> bool:
        """True if this client proved this secret recently and its stored hashes have not changed since."""
        hit = self._verified.get(client_id)
        if hit is None:
            return False
        stored, digest, until = hit
        if now >= until or stored != hashes:
            del self._verified[client_id]
            return False
        return hmac.compare_digest(digest, self._digest(secret))

    def reserve(self, client_id: str, source: str, now: float) -> int | None:
        """Take one failed-attempt token from the client's and the source's buckets; else the seconds to wait."""
        wait = self._clients.take_seconds(client_id, now)
        if wait is not None:
            return wait
        wait = self._sources.take_seconds(source, now)
        if wait is not None:
            self._clients.give_back(client_id)
        return wait

    def succeeded(self, client_id: str, source: str, hashes: tuple[str, ...], secret: str, now: float) -> None:
        """A right secret: its reservation is given back, and it is remembered for `cache_seconds`."""
        self._clients.give_back(client_id)
        self._sources.give_back(source)
        if self.config.cache_seconds > 0:
            if len(self._verified) >= _MAX_SOURCES:
                del self._verified[next(iter(self._verified))]
            self._verified[client_id] = (hashes, self._digest(secret), now + self.config.cache_seconds)

    async def verify(
        self,
        client_id: str,
        source: str,
        hashes: tuple[str, ...],
        secret: str,
        now: float,
        check: Callable[[str], bool],
    ) -> Verdict:
        """Decide on `secret`: from the cache, else throttled, else by `check` in a thread (bounded)."""
        if self.remembered(client_id, hashes, secret, now):
            return Verdict("ok")
        wait = self.reserve(client_id, source, now)
        if wait is not None:
            return Verdict("throttled", wait)
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.config.max_checks)
        if self._slots.locked() and self._waiting >= self.config.max_queued:
            self._clients.give_back(client_id)
            self._sources.give_back(source)
            return Verdict("throttled", 1)
        self._waiting += 1
        queued = True
        try:
            async with self._slots:
                self._waiting -= 1
                queued = False
                self.hashed += 1
                ok = await asyncio.to_thread(check, secret)
        finally:
            if queued:  # cancelled while waiting for a slot
                self._waiting -= 1
        if ok:
            self.succeeded(client_id, source, hashes, secret, now)
            return Verdict("ok")
        return Verdict("wrong")
