"""RS256 signing keys and the key ring: generation, JWKS publication, rotation without downtime, pruning.

Owns key material and which keys are published; must not issue or validate tokens, read the clock or do I/O.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["KeyRing", "SigningKey", "generate_signing_key"]


_GENERATED: dict[str, rsa.RSAPrivateKey] = {}
"""Keys this process generated, by PEM, until first loaded: a new node's first key is not parsed back from its PEM
(the RSA checks of a parse take tens of milliseconds of every fresh node's start)."""


@lru_cache(maxsize=64)
def _load_private(pem: str) -> rsa.RSAPrivateKey:
    # Keyed by the PEM itself (not the kid), so a foreign key reusing a kid never hits another key's entry.
    generated = _GENERATED.pop(pem, None)
    if generated is not None:
        return generated
    key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("signing key is not an RSA private key")
    return key


@lru_cache(maxsize=64)
def _load_public(pem: str) -> rsa.RSAPublicKey:
    return _load_private(pem).public_key()


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One RSA key pair. ``retired_at`` is None while the key may sign; set when a newer key takes over."""

    kid: str
    private_pem: str = field(repr=False)
    created_at: float
    retired_at: float | None = None

    def private_key(self) -> rsa.RSAPrivateKey:
        """The loaded private key (parsed once per process, then cached)."""
        return _load_private(self.private_pem)

    def public_key(self) -> rsa.RSAPublicKey:
        """The loaded public key (cached)."""
        return _load_public(self.private_pem)

    def public_jwk(self) -> dict[str, str]:
        """The public half as a JSON Web Key, as listed in the JWKS document."""
        numbers = self.public_key().public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": _b64url_uint(numbers.n),
            "e": _b64url_uint(numbers.e),
        }

    def to_doc(self) -> dict[str, Any]:
        """A JSON-serialisable document for the store (contains the private key)."""
        return {
            "kid": self.kid,
            "private_pem": self.private_pem,
            "created_at": self.created_at,
            "retired_at": self.retired_at,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> SigningKey:
        """Inverse of :meth:`to_doc`; raises ValueError on a malformed document."""
        kid, pem = doc.get("kid"), doc.get("private_pem")
        if not isinstance(kid, str) or not kid or not isinstance(pem, str):
            raise ValueError("signing key document needs string 'kid' and 'private_pem'")
        created = _number(doc, "created_at")
        if created is None:
            raise ValueError("signing key document needs a numeric 'created_at'")
        return cls(kid=kid, private_pem=pem, created_at=created, retired_at=_number(doc, "retired_at"))


def _number(doc: dict[str, Any], name: str) -> float | None:
    value = doc.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"signing key document: {name!r} must be a number or null")
    return float(value)


def _thumbprint(key: rsa.RSAPublicKey) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url), used as the kid."""
    numbers = key.public_numbers()
    canonical = json.dumps(
        {"e": _b64url_uint(numbers.e), "kty": "RSA", "n": _b64url_uint(numbers.n)},
        separators=(",", ":"),
        sort_keys=True,
    )
    digest = hashlib.sha256(canonical.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def generate_signing_key(now: float) -> SigningKey:
    """A new RSA-2048 key; its kid is the key's RFC 7638 thumbprint."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    while len(_GENERATED) >= 8:  # generated but never used: forgotten, oldest first
        del _GENERATED[next(iter(_GENERATED))]
    _GENERATED[pem] = private
    return SigningKey(kid=_thumbprint(private.public_key()), private_pem=pem, created_at=now)


class KeyRing:
    """The keys a node signs with and publishes. Always holds at least one active (non-retired) key.

    ``get`` answers for every key still in the ring; call :meth:`prune` periodically so that keys whose
    tokens can no longer be valid stop being published and stop validating.
    """

    def __init__(self, keys: Iterable[SigningKey]) -> None:
        self._keys: dict[str, SigningKey] = {}
        for key in keys:
            if key.kid in self._keys:
                raise ValueError(f"duplicate signing key id {key.kid!r}")
            self._keys[key.kid] = key
        if not any(k.retired_at is None for k in self._keys.values()):
            raise ValueError("a key ring needs at least one active (non-retired) signing key")

    @classmethod
    def empty_with_new_key(cls, now: float) -> KeyRing:
        """A ring holding one freshly generated key."""
        return cls([generate_signing_key(now)])

    @property
    def keys(self) -> list[SigningKey]:
        """Every key in the ring, oldest first, for persistence."""
        return sorted(self._keys.values(), key=lambda k: k.created_at)

    @property
    def active(self) -> SigningKey:
        """The key that signs new tokens: the newest non-retired key."""
        return max((k for k in self._keys.values() if k.retired_at is None), key=lambda k: k.created_at)

    def get(self, kid: str) -> SigningKey | None:
        """The key with this id if it is still in the ring (not pruned), else None."""
        return self._keys.get(kid)

    def replace_keys(self, keys: Iterable[SigningKey]) -> None:
        """Adopt a freshly loaded set of keys (another process rotated them); the ring stays the same object."""
        fresh = KeyRing(keys)
        self._keys = fresh._keys

    def warm(self) -> None:
        """Parse every key now (once per process, then cached): a node that loads keys another node made pays the
        RSA parse (tens of milliseconds) at start, not in the first request or callback it signs or checks."""
        for key in self._keys.values():
            key.public_key()

    def rotate(self, now: float) -> SigningKey:
        """Generate a new active key; every previously active key is retired at ``now``."""
        new = generate_signing_key(now)
        for kid, key in list(self._keys.items()):
            if key.retired_at is None:
                self._keys[kid] = dataclasses.replace(key, retired_at=now)
        self._keys[new.kid] = new
        return new

    def published(self, now: float, max_token_lifetime: float) -> list[SigningKey]:
        """Active keys plus retired keys whose tokens may still be valid, active first."""
        live = [k for k in self._keys.values() if _is_published(k, now, max_token_lifetime)]
        return sorted(live, key=lambda k: (k.retired_at is not None, -k.created_at))

    def prune(self, now: float, max_token_lifetime: float) -> list[SigningKey]:
        """Remove and return the keys that are no longer published."""
        dropped = [k for k in self._keys.values() if not _is_published(k, now, max_token_lifetime)]
        for key in dropped:
            del self._keys[key.kid]
        return dropped

    def jwks(self, now: float, max_token_lifetime: float) -> dict[str, list[dict[str, str]]]:
        """The JWKS document: ``{"keys": [jwk, ...]}`` for the published keys."""
        return {"keys": [k.public_jwk() for k in self.published(now, max_token_lifetime)]}


def _is_published(key: SigningKey, now: float, max_token_lifetime: float) -> bool:
    return key.retired_at is None or key.retired_at + max_token_lifetime > now
