"""Random bytes from os.urandom, read a few KiB at a time: the node's hot paths (ids, SIP tags, branches, CSeqs)
take their randomness from one pooled read instead of a `getrandom` system call each, and each such call also hands
the GIL to the media thread. The bytes are the operating system's CSPRNG's, as `secrets` would give; secrets that
guard access (tokens, keys, nonces) keep using `secrets` directly.
"""

from __future__ import annotations

import os
import threading

__all__ = ["random_below", "random_bytes"]

_POOL_BYTES = 4096
_pool = b""
_pool_at = 0
_pool_lock = threading.Lock()


def _reset_pool() -> None:
    global _pool, _pool_at
    _pool, _pool_at = b"", 0


os.register_at_fork(after_in_child=_reset_pool)  # a child must never reuse its parent's randomness


def random_bytes(n: int) -> bytes:
    """`n` random bytes (os.urandom's), each handed out once."""
    global _pool, _pool_at
    if n > _POOL_BYTES // 4:
        return os.urandom(n)
    with _pool_lock:
        at = _pool_at
        if at + n > len(_pool):
            _pool, at = os.urandom(_POOL_BYTES), 0
        _pool_at = at + n
        return _pool[at : at + n]


def random_below(n: int) -> int:
    """A uniformly random integer in [0, n) (rejection sampling, as `secrets.randbelow`)."""
    if n <= 0:
        raise ValueError("n must be > 0")
    bits = (n - 1).bit_length()
    size = (bits + 7) // 8
    while True:
        value = int.from_bytes(random_bytes(size), "big") >> (size * 8 - bits)
        if value < n:
            return value
