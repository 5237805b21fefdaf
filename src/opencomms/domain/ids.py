"""Identifier helpers: random GUIDs for every id, and Graph's case- and dash-insensitive id comparison.

Nothing personal ever goes into an id.
"""

from __future__ import annotations

import os
import re
import threading
import uuid

_CANONICAL_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")


_POOL_BYTES = 4096
_pool = b""
_pool_at = 0
_pool_lock = threading.Lock()


def _reset_pool() -> None:
    global _pool, _pool_at
    _pool, _pool_at = b"", 0


os.register_at_fork(after_in_child=_reset_pool)  # a child must never reuse its parent's randomness


def random_bytes(n: int) -> bytes:
    """`n` random bytes, os.urandom's (the CSPRNG `secrets` and uuid.uuid4 use), each handed out once, read 4 KiB at
    a time: one system call (which also hands the GIL to other threads) per 4 KiB instead of one per id, tag or
    branch on the node's hottest paths (`opencomms.randpool` serves the SIP stack from the same pool)."""
    global _pool, _pool_at
    if n > _POOL_BYTES // 4:
        return os.urandom(n)
    with _pool_lock:
        at = _pool_at
        if at + n > len(_pool):
            _pool, at = os.urandom(_POOL_BYTES), 0
        _pool_at = at + n
        return _pool[at : at + n]


def new_id() -> str:
    """A new random GUID (version 4) in Graph's lower-case dashed form, from `random_bytes`."""
    raw = bytearray(random_bytes(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def is_guid(value: str) -> bool:
    """True if `value` is a GUID, dashed or not, in any case."""
    return bool(_GUID_RE.match(value))


def normalize_id(value: str) -> str:
    """Canonical form of an id: GUIDs (with or without dashes, any case) become lower-case dashed."""
    if _CANONICAL_RE.fullmatch(value):  # already lower-case dashed (the common case): no UUID round trip
        return value
    if _GUID_RE.match(value):
        return str(uuid.UUID(value))
    return value
