"""Digest nonces: stateless issuing and checking (an HMAC over issue time, realm and a random salt, so that any node
sharing the secret verifies them) and the per-process replay protection (a sliding nc window per nonce, in
bounded memory, that never trusts a forgotten nonce again).

Must not: read a clock (``now`` is an input), verify digests or know about SIP messages.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
from collections import OrderedDict
from dataclasses import dataclass, field

from opencomms.sip.digest import AuthError, AuthFailure

__all__ = ["NcWindow", "NonceIssuer", "NonceTracker"]

_NONCE_DOMAIN = b"opencomms sip digest nonce v1\x00"
_NONCE_TS = struct.Struct(">Q")  # issue time, milliseconds
_SALT_BYTES = 8
_MAC_BYTES = 16
_NONCE_BYTES = _NONCE_TS.size + _SALT_BYTES + _MAC_BYTES
_WINDOW = 64  # nc values remembered below the highest one seen, per nonce


class NonceIssuer:
    """Makes and reads back stateless nonces:
    ``base64url(issue_ms || salt || HMAC-SHA256(secret, domain || realm || issue_ms || salt)[:16])``."""

    def __init__(self, realm: str, secret: bytes) -> None:
        self.realm = realm
        self._secret = secret

    def new(self, now: float) -> str:
        """A fresh nonce issued at ``now``."""
        issued = _NONCE_TS.pack(max(0, int(now * 1000)))
        salt = secrets.token_bytes(_SALT_BYTES)
        raw = issued + salt + self._mac(issued + salt)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    def issued(self, nonce: str) -> float:
        """The issue time of a nonce we made; INVALID_NONCE for anything else."""
        try:
            if len(nonce) > 64:
                raise ValueError
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (ValueError, binascii.Error):
            raise AuthError(AuthFailure.INVALID_NONCE, "nonce is not ours") from None
        if len(raw) != _NONCE_BYTES:
            raise AuthError(AuthFailure.INVALID_NONCE, "nonce is not ours")
        head, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(head)):
            raise AuthError(AuthFailure.INVALID_NONCE, "nonce is not ours")
        (issued_ms,) = _NONCE_TS.unpack(head[: _NONCE_TS.size])
        return float(issued_ms) / 1000.0

    def _mac(self, data: bytes) -> bytes:
        message = _NONCE_DOMAIN + self.realm.encode("utf-8") + b"\x00" + data
        return hmac.new(self._secret, message, hashlib.sha256).digest()[:_MAC_BYTES]


@dataclass
class NcWindow:
    issued: float
    highest: int
    mask: int  # bit i set = nc (highest - i) seen


@dataclass
class NonceTracker:
    """nc values seen per nonce, bounded. A forgotten nonce is never trusted again: see :meth:`check`."""

    capacity: int
    entries: OrderedDict[str, NcWindow] = field(default_factory=OrderedDict)
    # Issue time of the newest nonce ever evicted while possibly still valid. An untracked nonce issued at or
    # before it may have been used already, so it is treated as stale (the client re-authenticates without
    # prompting) instead of trusted: replay protection survives the memory bound.
    floor: float = float("-inf")

    def check(self, nonce: str, issued: float, nc: int, expires_before: float) -> AuthFailure | None:
        window = self.entries.get(nonce)
        if window is None:
            if issued <= self.floor:
                return AuthFailure.STALE_NONCE
            self._make_room(expires_before)
            self.entries[nonce] = NcWindow(issued=issued, highest=nc, mask=1)
            return None
        self.entries.move_to_end(nonce)
        if nc > window.highest:
            shift = nc - window.highest
            window.mask = ((window.mask << shift) | 1) & ((1 << _WINDOW) - 1) if shift < _WINDOW else 1
            window.highest = nc
            return None
        offset = window.highest - nc
        if offset >= _WINDOW or (window.mask >> offset) & 1:
            return AuthFailure.REPLAY
        window.mask |= 1 << offset
        return None

    def _make_room(self, expires_before: float) -> None:
        # Expired entries at the old end go first; they need no floor (their nonces are stale anyway).
        while self.entries:
            oldest = next(iter(self.entries.values()))
            if oldest.issued >= expires_before:
                break
            self.entries.popitem(last=False)
        while len(self.entries) >= self.capacity:
            _nonce, evicted = self.entries.popitem(last=False)
            self.floor = max(self.floor, evicted.issued)

    def __len__(self) -> int:
        return len(self.entries)
