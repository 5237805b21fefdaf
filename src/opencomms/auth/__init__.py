"""Authentication: client secrets, RS256 signing keys and JWKS, access and callback tokens, permissions.

Owns token and key logic as pure code (time is a parameter); must not do HTTP, storage or role enforcement.
"""

from __future__ import annotations

from opencomms.auth.devcert import DevCertPaths, make_dev_cert
from opencomms.auth.keys import KeyRing, SigningKey, generate_signing_key
from opencomms.auth.permissions import Permission, normalize_roles, parse_permission
from opencomms.auth.secrets import generate_secret, hash_secret, verify_secret
from opencomms.auth.tokens import AccessClaims, TokenError, TokenErrorReason, TokenService

__all__ = [
    "AccessClaims",
    "DevCertPaths",
    "KeyRing",
    "Permission",
    "SigningKey",
    "TokenError",
    "TokenErrorReason",
    "TokenService",
    "generate_secret",
    "generate_signing_key",
    "hash_secret",
    "make_dev_cert",
    "normalize_roles",
    "parse_permission",
    "verify_secret",
]
