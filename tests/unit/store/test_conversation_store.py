"""Both conversation stores honour one contract: versioned commits with fencing, the outbox in the same write, and
the index queries that replace loading everything at start."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from opencomms.store import MemoryStore, OutboxEntry, SqliteStore, StoreUnavailable
from opencomms.store.conversations import (
    ConversationStore,
    MemoryConversationStore,
    StaleVersion,
    open_conversations,
)
from opencomms.store.conversations_redis import RedisConversationStore
from opencomms.store.conversations_sqlite import SqliteConversationStore
from tests.redis_fixtures import redis_target, redis_url

__all__ = ["redis_target", "redis_url"]  # fixtures


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ConversationStore]:
    st: ConversationStore
    if request.param == "memory":
        st = MemoryConversationStore()
    elif request.param == "redis":
        st = RedisConversationStore(request.getfixturevalue("redis_target"))
    else:
        st = await SqliteConversationStore.open(str(tmp_path / "s.db"))
    yield st
    await st.aclose()


def entry(conv: str, n: int) -> OutboxEntry:
    return OutboxEntry(
        id=f"{conv}-{n}",
        order_key=conv,
        app_id="app",
        tenant_id="t",
        url="http://x/",
        body=f"{conv}:{n}".encode(),
        created_at=1.0,
        next_attempt_at=1.0,
    )


async def test_commit_load_delete_and_versions(store: ConversationStore) -> None:
    assert await store.load("c1") is None
    assert await store.commit("c1", 0, {"n": 1, "nested": [1, {"x": None}]}, legs=["a", "b"]) == 1
    got = await store.load("c1")
    assert got is not None and got.doc == {"n": 1, "nested": [1, {"x": None}]} and got.version == 1
    got.doc["n"] = 99  # callers never share the stored copy
    assert await store.commit("c1", 1, {"n": 2}) == 2
    assert await store.commit("c1", 2, {"n": 3}) == 3
    got = await store.load("c1")
    assert got is not None and got.doc == {"n": 3} and got.version == 3
    assert await store.find_leg("a") == "c1" and await store.find_leg("b") == "c1"  # legs=None: unchanged
    assert await store.commit("c1", 3, None) == 0
    assert await store.load("c1") is None
    assert await store.find_leg("a") is None


async def test_stale_writer_is_refused_and_writes_nothing(store: ConversationStore) -> None:
    await store.commit("c1", 0, {"who": "first"}, [entry("c1", 1)], legs=["a"])
    await store.commit("c1", 1, {"who": "second"}, [entry("c1", 2)])
    with pytest.raises(StaleVersion) as err:
        await store.commit("c1", 1, {"who": "stale"}, [entry("c1", 3)], legs=["z"])
    assert err.value.expected == 1 and err.value.actual == 2 and err.value.status == 409
    with pytest.raises(StaleVersion):  # a second create of the same conversation
        await store.commit("c1", 0, {"who": "again"}, [entry("c1", 4)])
    with pytest.raises(StaleVersion):  # nor may a stale writer delete it
        await store.commit("c1", 1, None, [entry("c1", 5)])
    with pytest.raises(StaleVersion) as err:  # nor write a conversation that is gone
        await store.commit("gone", 4, {"who": "ghost"})
    assert err.value.actual == 0
    got = await store.load("c1")
    assert got is not None and got.doc == {"who": "second"} and got.version == 2
    assert [e.id for e in await store.outbox_load()] == ["c1-1", "c1-2"]
    assert await store.find_leg("a") == "c1" and await store.find_leg("z") is None
    assert await store.load("gone") is None


async def test_outbox_is_written_with_the_document_in_order(store: ConversationStore) -> None:
    await store.commit("c1", 0, {}, [entry("c1", 1), entry("c1", 2)])
    await store.commit("c2", 0, {}, [entry("c2", 1)])
    await store.commit("c1", 1, None, [entry("c1", 3)])  # the last notification goes with the delete
    pending = await store.outbox_load()
    assert [e.id for e in pending] == ["c1-1", "c1-2", "c2-1", "c1-3"]
    assert [e.seq for e in pending] == sorted(e.seq for e in pending) and pending[0].seq > 0
    assert pending[0].body == b"c1:1"
    await store.outbox_remove(["c1-1", "c2-1"])
    assert [e.id for e in await store.outbox_load()] == ["c1-2", "c1-3"]
    retried = pending[1].with_attempt(99.0)  # the dispatcher's bookkeeping of a failed attempt
    await store.outbox_update([replace(retried, url="http://moved/")])
    after = await store.outbox_load()
    assert (after[0].attempts, after[0].next_attempt_at, after[0].url) == (1, 99.0, "http://moved/")
    assert after[0].seq == pending[1].seq


async def test_timers_and_live_pages(store: ConversationStore) -> None:
    for i, deadline in enumerate([30.0, 10.0, None, 20.0]):
        await store.commit(f"c{i}", 0, {"i": i}, deadline=deadline)
    assert await store.next_deadline() == 10.0
    assert await store.due(20.0) == [("c1", 10.0), ("c3", 20.0)]
    assert await store.due(100.0, limit=1) == [("c1", 10.0)]
    await store.commit("c1", 1, {"i": 1}, deadline=None)  # its timer is gone
    assert await store.due(20.0) == [("c3", 20.0)]
    assert await store.live(limit=2) == ["c0", "c1"]
    assert await store.live(after="c1", limit=2) == ["c2", "c3"]
    assert await store.live(after="c3") == []


async def test_an_unserialisable_document_writes_nothing(store: ConversationStore) -> None:
    await store.commit("c1", 0, {"v": 1}, [entry("c1", 1)])
    with pytest.raises((TypeError, ValueError)):
        await store.commit("c1", 1, {"v": object()}, [entry("c1", 2)])
    got = await store.load("c1")
    assert got is not None and got.version == 1 and got.doc == {"v": 1}
    assert [e.id for e in await store.outbox_load()] == ["c1-1"]


async def test_memory_store_shares_the_dispatchers_outbox() -> None:
    shared = MemoryStore()
    st = MemoryConversationStore(outbox=shared)
    await st.commit("c1", 0, {}, [entry("c1", 1)])
    assert [e.id for e in shared.outbox_load()] == ["c1-1"]
    await st.outbox_remove(["c1-1"])
    assert shared.outbox_load() == []


async def test_sqlite_shares_the_file_and_outbox_with_the_sync_store(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    sync = SqliteStore(path, checkpoint_thread=False)  # what the dispatcher drains today
    st = await SqliteConversationStore.open(path)
    await st.commit("c1", 0, {}, [entry("c1", 1)])
    assert [e.id for e in sync.outbox_load()] == ["c1-1"]
    sync.outbox_remove("c1-1")
    assert await st.outbox_load() == []
    for suffix in ("", "-wal", "-shm"):
        assert stat.S_IMODE(os.stat(path + suffix).st_mode) == 0o600
    await st.aclose()
    with pytest.raises(StoreUnavailable):
        st.commit("c1", 1, {})
    sync.close()


async def test_sqlite_disk_full_writes_neither_document_nor_outbox(tmp_path: Path) -> None:
    st = await SqliteConversationStore.open(str(tmp_path / "s.db"))
    await st.commit("c1", 0, {"v": 1}, [entry("c1", 1)])
    pages = await st.run(lambda db: db.execute("PRAGMA page_count").fetchone()[0])
    await st.run(lambda db: db.execute(f"PRAGMA max_page_count={pages + 2}"))  # a real SQLITE_FULL
    with pytest.raises(StoreUnavailable) as err:
        await st.commit("c1", 1, {"v": 2, "big": "x" * 200_000}, [entry("c1", 2)])
    assert err.value.reason == "full"
    got = await st.load("c1")
    assert got is not None and got.doc == {"v": 1} and got.version == 1
    assert [e.id for e in await st.outbox_load()] == ["c1-1"]
    await st.run(lambda db: db.execute("PRAGMA max_page_count=1073741823"))  # space returns
    assert await st.commit("c1", 1, {"v": 2, "big": "x" * 200_000}, [entry("c1", 2)]) == 2
    await st.aclose()


async def test_open_by_store_url(tmp_path: Path) -> None:
    shared = MemoryStore()
    mem = await open_conversations("memory://", outbox=shared)
    await mem.commit("c1", 0, {}, [entry("c1", 1)])
    assert len(shared.outbox_load()) == 1
    lite = await open_conversations(f"sqlite:///{tmp_path}/s.db", busy_timeout=0.5)
    assert isinstance(lite, SqliteConversationStore)
    await lite.aclose()
    with pytest.raises(ValueError):
        await open_conversations("mongodb://localhost")
