"""Client secrets: generation, salted scrypt hashing for storage, and constant-time verification.

Owns the stored hash format only; must not log, persist or cache plaintext secrets.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _random

__all__ = ["generate_secret", "hash_secret", "verify_secret"]

# scrypt cost: N=2**13, r=8, p=1 costs ~20 ms and 8 MiB per verification. Secrets we generate carry 240 bits
# of entropy, so the KDF is defence in depth for operator-chosen secrets; the format records the parameters,
# so they can be raised later without invalidating stored hashes.
_N = 2**13
_R = 8
_P = 1
_SALT_BYTES = 16
_HASH_BYTES = 32
# Upper bounds accepted when verifying, so that a corrupted or hostile stored hash cannot demand huge work.
_MAX_N = 2**17
_MAX_R = 16
_MAX_P = 4
_MAXMEM = 256 * 1024 * 1024


def generate_secret() -> str:
    """A new client secret: 40 url-safe characters (240 random bits)."""
    return _random.token_urlsafe(30)


def hash_secret(secret: str) -> str:
    """Salted hash for storage: ``scrypt$N$r$p$<salt b64>$<hash b64>``."""
    salt = _random.token_bytes(_SALT_BYTES)
    digest = _scrypt(secret.encode("utf-8"), salt, _N, _R, _P, _HASH_BYTES)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_secret(secret: str, hashed: str) -> bool:
    """True if ``secret`` matches ``hashed``; False for a wrong secret or a malformed hash, never raises."""
    try:
        scheme, n_s, r_s, p_s, salt_s, digest_s = hashed.split("$")
        if scheme != "scrypt":
            return False
        n, r, p = int(n_s), int(r_s), int(p_s)
        if not (1 < n <= _MAX_N and n & (n - 1) == 0 and 0 < r <= _MAX_R and 0 < p <= _MAX_P):
            return False
        salt = base64.b64decode(salt_s, validate=True)
        expected = base64.b64decode(digest_s, validate=True)
        if not salt or not 16 <= len(expected) <= 64:
            return False
        actual = _scrypt(secret.encode("utf-8"), salt, n, r, p, len(expected))
    except (ValueError, binascii.Error, MemoryError):
        return False
    return hmac.compare_digest(actual, expected)


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=dklen)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
