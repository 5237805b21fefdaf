"""Console operators and their sessions: who may sign in, for how long, how often.

Operators are directory users who hold the `admin` role (`opencomms user set-role USER admin`; they sign in with
their user principal name and sign-in password), operators stored hashed (kind `consoleAdmin`, scrypt as client
secrets: `opencomms admin create NAME` prints a one-time password once), or the bootstrap operator `admin` named by
`[console] admin_password_file`. A session is a random 256-bit token in an HttpOnly, SameSite=Strict cookie (Secure
under TLS), kept in memory only (a restart signs everybody out), with an absolute lifetime and an idle timeout;
each carries its own CSRF token, required on every state-changing request. Sign-in attempts are rate-limited per
source address and per user name (token buckets), failed or not, so guessing costs time. Pure apart from the store
and the password file; the clock is handed in.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from opencomms.auth.secrets import hash_secret, verify_secret
from opencomms.config import ConsoleConfig
from opencomms.directory import Directory
from opencomms.domain.directory import ADMIN_ROLE
from opencomms.ratelimit import KeyedTokenBucket
from opencomms.store.base import Store

__all__ = ["KIND", "Operators", "Session", "Sessions", "SignInLimiter", "create_operator"]

KIND = "consoleAdmin"
BOOTSTRAP = "admin"
_MAX_NAME = 64
_MAX_SESSIONS = 1024


def _name(name: str) -> str:
    clean = name.strip().lower()
    if not clean or len(clean) > _MAX_NAME or not all(c.isalnum() or c in "._-@" for c in clean):
        raise ValueError("an operator name is 1 to 64 letters, digits or . _ - @")
    return clean


def create_operator(store: Store, name: str, now: float) -> str:
    """Create (or reset) operator `name` with a new random password; returns the password (shown once)."""
    password = secrets.token_urlsafe(18)
    store.put(KIND, _name(name), {"name": _name(name), "hash": hash_secret(password), "created_at": now})
    return password


class Operators:
    """Checks operator credentials: directory users with the admin role (by user principal name, with their
    sign-in password), console operators in the store, and the bootstrap password file."""

    def __init__(self, store: Store, password_file: str = "", directory: Directory | None = None) -> None:
        self.store = store
        self.directory = directory
        self._bootstrap: str | None = None
        if password_file:
            text = Path(password_file).read_text(encoding="utf-8").strip()
            if len(text) < 12:
                raise ValueError(f"{password_file}: the console admin password must have at least 12 characters")
            self._bootstrap = hash_secret(text)

    def check(self, name: str, password: str) -> str | None:
        """The operator's name if `password` is theirs, else None (never raises on bad input)."""
        try:
            key = _name(name)
        except ValueError:
            return None
        if not password or len(password) > 256:
            return None
        if "@" in key and self.directory is not None:
            user = self.directory.find_user(key)
            if user is not None and ADMIN_ROLE in user.roles and self.directory.check_password(user, password):
                return key
        doc = self.store.get(KIND, key)
        if doc is not None and verify_secret(password, str(doc.get("hash", ""))):
            return key
        if key == BOOTSTRAP and self._bootstrap is not None and verify_secret(password, self._bootstrap):
            return key
        return None


class SignInLimiter:
    """Sign-in attempts by source address and by user name: both must have a token left."""

    def __init__(self, config: ConsoleConfig) -> None:
        self.by_source = KeyedTokenBucket(config.sign_in_rate, config.sign_in_burst)
        self.by_name = KeyedTokenBucket(config.sign_in_rate, config.sign_in_burst)

    def attempt(self, source: str, name: str, now: float) -> float | None:
        """None: go ahead (a token of each was taken); else seconds to wait."""
        key = name.strip().lower()[:_MAX_NAME]
        wait = self.by_source.wait(source, now) or self.by_name.wait(key, now)
        if wait is not None:
            return wait
        self.by_source.take(source, now)
        self.by_name.take(key, now)
        return None


@dataclass(slots=True)
class Session:
    token: str
    operator: str
    csrf: str
    created_at: float
    last_seen: float


class Sessions:
    """Signed-in operators by session token (in memory), expiring by lifetime and idleness."""

    def __init__(self, config: ConsoleConfig, on_active: Callable[[float], None] | None = None) -> None:
        self.lifetime = config.session_lifetime
        self.idle = config.idle_timeout
        self._by_token: dict[str, Session] = {}
        self.on_active = on_active
        """Told, on every sign-in and every request of a live session, until when that session may stay active
        (the timelines record only while someone may be watching)."""

    def open(self, operator: str, now: float) -> Session:
        self._purge(now)
        if len(self._by_token) >= _MAX_SESSIONS:  # the oldest goes: sign-ins never fail for want of room
            oldest = min(self._by_token.values(), key=lambda s: s.created_at)
            self._by_token.pop(oldest.token, None)
        session = Session(secrets.token_urlsafe(32), operator, secrets.token_urlsafe(32), now, now)
        self._by_token[session.token] = session
        self._active(session, now)
        return session

    def _active(self, session: Session, now: float) -> None:
        if self.on_active is not None:
            self.on_active(min(now + self.idle, session.created_at + self.lifetime))

    def get(self, token: str | None, now: float) -> Session | None:
        """The live session of `token` (its idle clock restarted), or None."""
        if not token:
            return None
        session = self._by_token.get(token)
        if session is None:
            return None
        if now - session.created_at >= self.lifetime or now - session.last_seen >= self.idle:
            self._by_token.pop(token, None)
            return None
        session.last_seen = now
        self._active(session, now)
        return session

    def close(self, token: str) -> None:
        self._by_token.pop(token, None)

    @staticmethod
    def csrf_ok(session: Session, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(session.csrf.encode(), presented.encode())

    def _purge(self, now: float) -> None:
        stale = [
            t
            for t, s in self._by_token.items()
            if now - s.created_at >= self.lifetime or now - s.last_seen >= self.idle
        ]
        for token in stale:
            del self._by_token[token]

    def __len__(self) -> int:
        return len(self._by_token)
