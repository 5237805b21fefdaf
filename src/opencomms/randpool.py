"""Random numbers for the node's hot paths (SIP tags, branches, Call-IDs, CSeqs) from one pooled os.urandom read
instead of a `getrandom` system call each (each such call also hands the GIL to the media thread). The pool is
`domain.ids.random_bytes`, which new ids use too. The bytes are the operating system's CSPRNG's, as `secrets` would
give; secrets that guard access (tokens, keys, nonces) keep using `secrets` directly.
"""

from __future__ import annotations

from opencomms.domain.ids import random_bytes

__all__ = ["random_below", "random_bytes"]


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
