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


_POOL_IDS = 256
_pool = b""
_pool_at = 0
_pool_lock = threading.Lock()


def _reset_pool() -> None:
    global _pool, _pool_at
    _pool, _pool_at = b"", 0


os.register_at_fork(after_in_child=_reset_pool)  # a child must never hand out its parent's ids


def new_id() -> str:
    """A new random GUID (version 4) in Graph's lower-case dashed form.

    The randomness is os.urandom's, as uuid.uuid4 uses, but read 256 ids at a time: one system call (which also
    hands the GIL to other threads) per 256 ids instead of one each, on the node's hottest paths."""
    global _pool, _pool_at
    with _pool_lock:
        if _pool_at >= len(_pool):
            _pool, _pool_at = os.urandom(16 * _POOL_IDS), 0
        raw = bytearray(_pool[_pool_at : _pool_at + 16])
        _pool_at += 16
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
