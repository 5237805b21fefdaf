"""Private files on disk: the store, its WAL and shared-memory files, key files and recordings are for the node's
user only (0600, directories 0700). Creation runs under a restrictive umask; existing files that are more open are
tightened with a warning. No knowledge of what the files hold.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("opencomms.store")

FILE_MODE = 0o600
DIR_MODE = 0o700


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Files created inside the block are readable by their owner only (process-wide umask: keep the block short)."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def tighten(path: str | Path, mode: int = FILE_MODE) -> bool:
    """Make an existing file (or directory) no more open than `mode`; warns and returns True when it was."""
    try:
        current = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return False
    if current & ~mode:
        try:
            os.chmod(path, current & mode)
        except OSError as exc:
            log.warning("%s is mode %o and cannot be made private: %s", path, current, exc)
            return True
        log.warning("%s was mode %o, readable by other users: changed to %o", path, current, current & mode)
        return True
    return False


def private_dir(path: str | Path) -> Path:
    """Create `path` (and parents) as 0700, or tighten it if it exists."""
    p = Path(path)
    with private_umask():
        p.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    tighten(p, DIR_MODE)
    return p


def write_private(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically (a 0600 temporary file renamed over it); the temporary goes on failure."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
