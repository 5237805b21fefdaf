"""Server side of SIP Digest (RFC 7616, RFC 3261 section 22): :class:`DigestChallenger` issues challenges and checks
credentials against stored HA1 values (never passwords), with expiry (``stale=true``), replay protection and
constant-time comparisons; :class:`HA1Table` is the in-memory :data:`HA1Lookup` (the registrar and the gateway's
accounts plug their own lookup in).

Must not: read a clock (``now`` is an input), build SIP messages or decide what a failure is answered with.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from opencomms.sip.digest import (
    BASE_ALGORITHMS,
    AuthError,
    AuthFailure,
    base_algorithm,
    canonical_algorithm,
    compute_ha1,
    compute_response,
    digest_hex,
    is_hex,
)
from opencomms.sip.digest_headers import DigestChallenge, DigestCredentials, parse_credentials, quote_string
from opencomms.sip.digest_nonces import NonceIssuer, NonceTracker

__all__ = ["DigestChallenger", "HA1Lookup", "HA1Table", "Verified"]

HA1Lookup = Callable[[str, str, str], str | None]
"""``(username, realm, base algorithm) -> HA1 hex or None``: e.g. ``("alice", "example.com", "SHA-256")``."""


class HA1Table:
    """In-memory :data:`HA1Lookup`. :meth:`add` hashes a password once per algorithm and keeps only the HA1s."""

    def __init__(self) -> None:
        self._ha1: dict[tuple[str, str, str], str] = {}

    def add(self, username: str, realm: str, password: str, algorithms: Iterable[str] | None = None) -> None:
        for algorithm in algorithms if algorithms is not None else BASE_ALGORITHMS:
            base = base_algorithm(algorithm)
            self._ha1[(username, realm, base)] = compute_ha1(username, realm, password, base)

    def set(self, username: str, realm: str, algorithm: str, ha1: str) -> None:
        """Store a precomputed HA1 (as provisioned by an operator)."""
        if not is_hex(ha1):
            raise ValueError("HA1 must be hex")
        self._ha1[(username, realm, base_algorithm(algorithm))] = ha1.lower()

    def remove(self, username: str, realm: str) -> None:
        for key in [key for key in self._ha1 if key[:2] == (username, realm)]:
            del self._ha1[key]

    def __call__(self, username: str, realm: str, algorithm: str) -> str | None:
        return self._ha1.get((username, realm, algorithm))


@dataclass(frozen=True)
class Verified:
    """Credentials that passed: who, and with what."""

    username: str
    realm: str
    algorithm: str
    qop: str | None
    nonce: str
    nc: int | None


class DigestChallenger:
    """Server side of Digest: issues challenges and verifies credentials. Time is an input (``now``, seconds).

    Nonces are stateless: ``base64url(issue_ms || salt || HMAC-SHA256(secret, realm || issue_ms || salt)[:16])``.
    Any node sharing ``secret`` verifies them; only the nc windows (replay protection) are per process.
    """

    def __init__(
        self,
        realm: str,
        secret: bytes,
        lookup: HA1Lookup,
        *,
        algorithms: Sequence[str] = ("SHA-256", "MD5"),
        qop: Sequence[str] = ("auth",),
        nonce_ttl: float = 300.0,
        max_tracked_nonces: int = 10_000,
        opaque: str | None = None,
        clock_skew: float = 5.0,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("secret must be at least 16 bytes")
        if not algorithms:
            raise ValueError("at least one algorithm")
        if any(q not in ("auth", "auth-int") for q in qop):
            raise ValueError("qop must be auth and/or auth-int")
        if nonce_ttl <= 0 or max_tracked_nonces < 1:
            raise ValueError("nonce_ttl and max_tracked_nonces must be positive")
        quote_string(realm)
        self.realm = realm
        self.algorithms = tuple(canonical_algorithm(name) for name in algorithms)
        self.qop = tuple(qop)
        self.nonce_ttl = nonce_ttl
        self.opaque = opaque
        self.clock_skew = clock_skew
        self._lookup = lookup
        self._nonces = NonceIssuer(realm, secret)
        self._tracker = NonceTracker(capacity=max_tracked_nonces)

    # -- challenges

    def new_nonce(self, now: float) -> str:
        return self._nonces.new(now)

    def challenges(self, now: float, *, stale: bool = False) -> list[DigestChallenge]:
        """One challenge per algorithm, preferred first (RFC 8760: one header each), sharing one fresh nonce."""
        nonce = self.new_nonce(now)
        return [
            DigestChallenge(
                realm=self.realm, nonce=nonce, algorithm=algorithm, qop=self.qop, opaque=self.opaque, stale=stale
            )
            for algorithm in self.algorithms
        ]

    def challenge_headers(self, now: float, *, stale: bool = False) -> list[str]:
        """The ``WWW-Authenticate`` (401) or ``Proxy-Authenticate`` (407) values to send, in order."""
        return [challenge.to_header() for challenge in self.challenges(now, stale=stale)]

    # -- verification

    def verify(
        self,
        authorization: str | Sequence[str],
        method: str,
        request_uri: str | None,
        now: float,
        *,
        body: bytes = b"",
    ) -> Verified:
        """Check the credentials for our realm; raise :class:`AuthError` otherwise.

        ``authorization``: one header value or all of them (a request may carry credentials for several realms).
        ``request_uri``: when given, the digest ``uri`` must equal it (RFC 7616 section 3.4.6); None skips the check.
        """
        values = [authorization] if isinstance(authorization, str) else list(authorization)
        creds = self._ours(values)
        try:
            algorithm = canonical_algorithm(creds.algorithm)
        except AuthError:
            raise AuthError(AuthFailure.UNSUPPORTED, f"algorithm {creds.algorithm!r}") from None
        if algorithm not in self.algorithms:
            raise AuthError(AuthFailure.UNSUPPORTED, f"algorithm {algorithm} not offered")
        if creds.userhash:
            raise AuthError(AuthFailure.UNSUPPORTED, "userhash")
        if self.qop:
            if creds.qop not in self.qop:
                raise AuthError(AuthFailure.UNSUPPORTED, f"qop {creds.qop!r} not offered")
        elif creds.qop is not None:
            raise AuthError(AuthFailure.UNSUPPORTED, "qop not offered")
        if self.opaque is not None and not _equal(creds.opaque or "", self.opaque):
            raise AuthError(AuthFailure.OPAQUE_MISMATCH, "opaque differs from the challenge")
        if request_uri is not None and creds.uri != request_uri:
            raise AuthError(AuthFailure.URI_MISMATCH, "digest uri differs from the Request-URI")
        issued = self._nonces.issued(creds.nonce)
        if issued > now + self.clock_skew:
            raise AuthError(AuthFailure.INVALID_NONCE, "nonce from the future")
        base = base_algorithm(algorithm)
        ha1 = self._lookup(creds.username, self.realm, base)
        known = ha1 is not None and is_hex(ha1)
        expected = compute_response(
            ha1=ha1 if known and ha1 is not None else digest_hex(base, secrets.token_bytes(16)),  # same work either way
            algorithm=algorithm,
            nonce=creds.nonce,
            method=method,
            uri=creds.uri,
            qop=creds.qop,
            nc=creds.nc,
            cnonce=creds.cnonce,
            body=body,
        )
        matches = _equal(expected, creds.response)
        if not known:
            raise AuthError(AuthFailure.UNKNOWN_USER, "no HA1 for this user")
        if not matches:
            raise AuthError(AuthFailure.BAD_RESPONSE, "response does not match")
        if now - issued > self.nonce_ttl:
            raise AuthError(AuthFailure.STALE_NONCE, "nonce expired")
        nc = creds.nc_value
        verdict = self._tracker.check(creds.nonce, issued, nc if nc is not None else 1, now - self.nonce_ttl)
        if verdict is AuthFailure.REPLAY:
            raise AuthError(verdict, f"nc {creds.nc or '(none)'} already used with this nonce")
        if verdict is AuthFailure.STALE_NONCE:
            raise AuthError(verdict, "nonce forgotten under memory pressure")
        return Verified(
            username=creds.username, realm=creds.realm, algorithm=algorithm, qop=creds.qop, nonce=creds.nonce, nc=nc
        )

    @property
    def tracked_nonces(self) -> int:
        return len(self._tracker)

    def _ours(self, values: Sequence[str]) -> DigestCredentials:
        errors: list[AuthError] = []
        for value in values:
            try:
                creds = parse_credentials(value)
            except AuthError as exc:
                errors.append(exc)
                continue
            if creds.realm == self.realm:
                return creds
            errors.append(AuthError(AuthFailure.REALM_MISMATCH, f"realm {creds.realm!r}"))
        if len(errors) == 1:
            raise errors[0]
        raise AuthError(AuthFailure.REALM_MISMATCH, "no credentials for our realm")


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))
