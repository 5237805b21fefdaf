"""Persistence behind one interface: in-memory (tests), SQLite (embedded default), Redis (many nodes).

`open_store(url)` picks the implementation from a URL: `memory://`, `sqlite:///path/to.db`, `redis://host:port/db`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opencomms.store.base import OutboxEntry, Store, StoreUnavailable
from opencomms.store.memory import MemoryStore
from opencomms.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from opencomms.store.redis_common import RedisTarget


def open_store(url: str, *, busy_timeout: float = 5.0, cluster: RedisTarget | None = None) -> Store:
    """Open the store named by `url` (`memory://`, `sqlite:///relative/or//absolute/path.db` or
    `redis://host:port/db`). `busy_timeout`: seconds a write waits for another process's lock before
    StoreUnavailable; `cluster`: this node's name and timings on Redis (default: host-pid, default timings).
    Raises StoreUnavailable when the store cannot be opened for writing."""
    if url.startswith("memory:"):
        return MemoryStore()
    if url.startswith("sqlite:///"):
        return SqliteStore(url.removeprefix("sqlite:///"), busy_timeout=busy_timeout)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from opencomms.store.redis_common import RedisTarget, default_node_id
        from opencomms.store.redis_sync import RedisStore

        return RedisStore(cluster if cluster is not None else RedisTarget(url, default_node_id()))
    raise ValueError(f"unsupported store url: {url!r} (use memory://, sqlite:///path.db or redis://host:port/db)")


__all__ = ["MemoryStore", "OutboxEntry", "SqliteStore", "Store", "StoreUnavailable", "open_store"]
