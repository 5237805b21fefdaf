"""HTTP Digest computation for SIP (RFC 2617, RFC 7616, RFC 8760, RFC 3261 section 22): the algorithms, HA1 and
the ``response`` value, and the one error type of Digest authentication.

Algorithms MD5, MD5-sess, SHA-256, SHA-256-sess and, when hashlib has it, SHA-512-256(-sess); qop ``auth`` and
``auth-int``; legacy RFC 2069 responses (no qop).

Digest authentication is split by concept: this module (computation), ``digest_headers`` (challenge and
credentials header syntax), ``digest_nonces`` (stateless nonces, replay windows), ``digest_server``
(:class:`DigestChallenger`: challenges and verification against stored HA1s) and ``digest_client``
(:class:`DigestClient`: answering a trunk's 401/407).

Every failure, malformed input included, raises :class:`AuthError` with a :class:`AuthFailure` reason; nothing
else escapes the parsers or the verifier. Reasons are for logs and metrics: a server should answer every failure
with the same fresh challenge (``stale=true`` when :attr:`AuthError.stale`), never telling an unknown user apart
from a wrong password.
Must not: parse headers, keep state or read a clock.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum

__all__ = [
    "ALGORITHMS",
    "BASE_ALGORITHMS",
    "AuthError",
    "AuthFailure",
    "base_algorithm",
    "canonical_algorithm",
    "compute_ha1",
    "compute_response",
    "digest_hex",
    "is_hex",
]


class AuthFailure(StrEnum):
    """Why a header was refused or a request not authenticated."""

    MALFORMED = "malformed"  # header syntax or a missing/invalid parameter
    UNSUPPORTED = "unsupported"  # scheme, algorithm or qop we do not do (or did not offer)
    REALM_MISMATCH = "realm_mismatch"  # no credentials for our realm
    URI_MISMATCH = "uri_mismatch"  # digest uri differs from the Request-URI
    OPAQUE_MISMATCH = "opaque_mismatch"
    INVALID_NONCE = "invalid_nonce"  # not issued by us (tampered, other secret, from the future)
    STALE_NONCE = "stale_nonce"  # ours, expired (or forgotten under memory pressure); the digest was right
    UNKNOWN_USER = "unknown_user"
    BAD_RESPONSE = "bad_response"  # wrong password (or wrong method/uri/body)
    REPLAY = "replay"  # nc already seen for this nonce; the digest was right


class AuthError(Exception):
    """The single error type of this module."""

    def __init__(self, reason: AuthFailure, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail

    @property
    def stale(self) -> bool:
        """Whether the fresh challenge answering this failure should say ``stale=true``.

        RFC 7616 section 3.3: only when the nonce is no longer valid but the digest was right, so the client
        retries with the new nonce without asking its user again.
        """
        return self.reason in (AuthFailure.STALE_NONCE, AuthFailure.REPLAY)

    @classmethod
    def malformed(cls, detail: str) -> AuthError:
        """A header syntax error or a missing/invalid parameter."""
        return cls(AuthFailure.MALFORMED, detail)


_HASH_NAMES: dict[str, str] = {"MD5": "md5", "SHA-256": "sha256"}
try:  # SHA-512/256 needs OpenSSL; absent on some builds
    hashlib.new("sha512_256", b"")
    _HASH_NAMES["SHA-512-256"] = "sha512_256"
except ValueError:  # pragma: no cover - depends on the OpenSSL build
    pass

BASE_ALGORITHMS: tuple[str, ...] = tuple(_HASH_NAMES)
"""The hashes under the algorithms (HA1 values are stored per base), canonical spelling."""

ALGORITHMS: tuple[str, ...] = tuple(name for base in _HASH_NAMES for name in (base, base + "-sess"))
"""Every algorithm name this module can compute, canonical spelling."""

_HEX = frozenset("0123456789abcdefABCDEF")
_CANONICAL = {name.upper(): name for name in ALGORITHMS}


def canonical_algorithm(name: str) -> str:
    """The canonical spelling of a supported algorithm name (matched case-insensitively)."""
    found = _CANONICAL.get(name.strip().upper())
    if found is None:
        raise AuthError(AuthFailure.UNSUPPORTED, f"algorithm {name!r}")
    return found


def base_algorithm(name: str) -> str:
    """The hash under an algorithm: ``"SHA-256-sess"`` -> ``"SHA-256"``. HA1 values are stored per base."""
    canonical = canonical_algorithm(name)
    return canonical[: -len("-sess")] if canonical.endswith("-sess") else canonical


def is_hex(text: str) -> bool:
    """Whether ``text`` is a non-empty string of hex digits (an HA1, a response, an nc)."""
    return bool(text) and all(char in _HEX for char in text)


def digest_hex(base: str, data: str | bytes) -> str:
    """``H(data)`` as lowercase hex with a base algorithm's hash (``"MD5"``, ``"SHA-256"``, ...)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return hashlib.new(_HASH_NAMES[base], raw).hexdigest()


def compute_ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """``H(username:realm:password)`` with the algorithm's hash: the value a server stores instead of passwords.

    For ``-sess`` algorithms this is still the stored (non-session) HA1; :func:`compute_response` derives the
    session key from it.
    """
    return digest_hex(base_algorithm(algorithm), f"{username}:{realm}:{password}")


def compute_response(
    *,
    ha1: str,
    algorithm: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The ``response`` value (RFC 7616 section 3.4.1; RFC 2069 form when ``qop`` is None).

    ``nc`` is the literal 8-hex-digit string as sent: it enters the hash as text.
    """
    canonical = canonical_algorithm(algorithm)
    base = base_algorithm(canonical)
    key = ha1.lower()
    if canonical.endswith("-sess"):
        if cnonce is None:
            raise AuthError.malformed("a -sess algorithm needs a cnonce")
        key = digest_hex(base, f"{key}:{nonce}:{cnonce}")
    if qop == "auth-int":
        ha2 = digest_hex(base, f"{method}:{uri}:{digest_hex(base, body)}")
    elif qop in (None, "auth"):
        ha2 = digest_hex(base, f"{method}:{uri}")
    else:
        raise AuthError(AuthFailure.UNSUPPORTED, f"qop {qop!r}")
    if qop is None:
        return digest_hex(base, f"{key}:{nonce}:{ha2}")
    if nc is None or cnonce is None:
        raise AuthError.malformed("qop needs nc and cnonce")
    return digest_hex(base, f"{key}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
