"""Persistence behind one interface: in-memory (tests), SQLite (embedded default), Redis (many nodes, later).

`open_store(url)` picks the implementation from a URL: `memory://`, `sqlite:///path/to.db`.
"""

from __future__ import annotations

from opencomms.store.base import OutboxEntry, Store, StoreUnavailable
from opencomms.store.memory import MemoryStore
from opencomms.store.sqlite import SqliteStore


def open_store(url: str, *, busy_timeout: float = 5.0) -> Store:
    """Open the store named by `url` (`memory://` or `sqlite:///relative/or//absolute/path.db`). `busy_timeout`:
    seconds a write waits for another process's lock before StoreUnavailable. Raises StoreUnavailable when the
    store cannot be opened for writing."""
    if url.startswith("memory:"):
        return MemoryStore()
    if url.startswith("sqlite:///"):
        return SqliteStore(url.removeprefix("sqlite:///"), busy_timeout=busy_timeout)
    raise ValueError(f"unsupported store url: {url!r} (use memory:// or sqlite:///path.db)")


__all__ = ["MemoryStore", "OutboxEntry", "SqliteStore", "Store", "StoreUnavailable", "open_store"]
