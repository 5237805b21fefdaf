"""Persistence behind one interface: in-memory (tests), SQLite (embedded default), Redis (many nodes, later).

`open_store(url)` picks the implementation from a URL: `memory://`, `sqlite:///path/to.db`.
"""

from __future__ import annotations

from opencomms.store.base import OutboxEntry, Store
from opencomms.store.memory import MemoryStore
from opencomms.store.sqlite import SqliteStore


def open_store(url: str) -> Store:
    """Open the store named by `url` (`memory://` or `sqlite:///relative/or//absolute/path.db`)."""
    if url.startswith("memory:"):
        return MemoryStore()
    if url.startswith("sqlite:///"):
        return SqliteStore(url.removeprefix("sqlite:///"))
    raise ValueError(f"unsupported store url: {url!r} (use memory:// or sqlite:///path.db)")


__all__ = ["MemoryStore", "OutboxEntry", "SqliteStore", "Store", "open_store"]
