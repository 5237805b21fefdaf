"""Both stores honour one contract: documents, nested transactions with rollback, an ordered outbox."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from opencomms.store import MemoryStore, OutboxEntry, SqliteStore, Store, open_store
from opencomms.store.redis_common import RedisTarget
from opencomms.store.redis_sync import RedisStore
from opencomms.testing.redis_trips import CountingRedis
from tests.redis_fixtures import redis_target, redis_url

__all__ = ["redis_target", "redis_url"]  # fixtures


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    st: Store
    if request.param == "redis":
        st = RedisStore(request.getfixturevalue("redis_target"))
    else:
        st = MemoryStore() if request.param == "memory" else SqliteStore(str(tmp_path / "s.db"))
    yield st
    st.close()


def entry(i: int, key: str = "call-1") -> OutboxEntry:
    return OutboxEntry(
        id=f"id-{i}",
        order_key=key,
        app_id="app",
        tenant_id="t",
        url="http://x/",
        body=b"{}",
        created_at=1.0,
        next_attempt_at=1.0,
    )


def test_documents(store: Store) -> None:
    store.put("call", "b", {"n": 2})
    store.put("call", "a", {"n": 1, "nested": {"x": [1, 2]}})
    doc = store.get("call", "a")
    assert doc == {"n": 1, "nested": {"x": [1, 2]}}
    assert doc is not None
    doc["n"] = 99  # callers never mutate the stored copy
    assert store.get("call", "a") == {"n": 1, "nested": {"x": [1, 2]}}
    assert [k for k, _ in store.scan("call")] == ["a", "b"]
    assert store.delete("call", "a") and not store.delete("call", "a")
    assert store.get("call", "a") is None and store.get("other", "b") is None


def test_transaction_rollback_and_nesting(store: Store) -> None:
    store.put("k", "keep", {"v": 1})
    with pytest.raises(RuntimeError), store.transaction():
        store.put("k", "keep", {"v": 2})
        with store.transaction():
            store.put("k", "new", {"v": 3})
            store.outbox_append(entry(1))
        raise RuntimeError("boom")
    assert store.get("k", "keep") == {"v": 1} and store.get("k", "new") is None
    assert store.outbox_load() == []
    with store.transaction(), store.transaction():
        store.put("k", "new", {"v": 4})
    assert store.get("k", "new") == {"v": 4}


def test_outbox_order_update_remove(store: Store) -> None:
    appended = [store.outbox_append(entry(i, key=f"call-{i % 2}")) for i in range(5)]
    assert [e.seq for e in appended] == sorted(e.seq for e in appended) and len({e.seq for e in appended}) == 5
    store.outbox_update(appended[1].with_attempt(next_attempt_at=9.0))
    store.outbox_remove(appended[0].id)
    loaded = store.outbox_load()
    assert [e.id for e in loaded] == ["id-1", "id-2", "id-3", "id-4"]
    assert loaded[0].attempts == 1 and loaded[0].next_attempt_at == 9.0 and loaded[0].body == b"{}"


def test_sqlite_persists_across_reopen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    first = open_store(url)
    first.put("tenant", "t1", {"name": "Contoso"})
    first.outbox_append(entry(1))
    first.close()
    second = open_store(url)
    assert second.get("tenant", "t1") == {"name": "Contoso"} and len(second.outbox_load()) == 1
    second.close()
    with pytest.raises(ValueError):
        open_store("postgres://nope")


def test_batched_writes_match_single_ones(store: Store) -> None:
    """The multi-row forms the node's hot path uses (one statement per batch) behave like the single ones."""
    store.put("call", "a", {"n": 0})
    store.put_many("call", [("a", {"n": 1, "text": "é\u2028"}), *((f"k{i:03}", {"n": i}) for i in range(150))])
    assert store.get("call", "a") == {"n": 1, "text": "é\u2028"}
    assert len(list(store.scan("call"))) == 151
    store.delete_many("call", ["a", "missing", *(f"k{i:03}" for i in range(149))])
    assert [k for k, _ in store.scan("call")] == ["k149"]
    with store.transaction():
        single = store.outbox_append(entry(0))
        many = store.outbox_append_many([entry(i) for i in range(1, 131)])
    loaded = store.outbox_load()  # numbered in append order (inside a transaction a store may number at the commit)
    assert [e.id for e in loaded] == [single.id, *(e.id for e in many)]
    assert [e.seq for e in loaded] == sorted({e.seq for e in loaded}) and loaded[0].seq > 0
    assert [e.with_seq(0) for e in loaded] == [e.with_seq(0) for e in [single, *many]]
    store.outbox_remove_many([e.id for e in many[:120]] + ["missing"])
    assert [e.id for e in store.outbox_load()] == [single.id, *(e.id for e in many[120:])]


def test_change_marker_sees_other_connections(tmp_path: Path) -> None:
    """A node's store notices when another process (the CLI) commits to the same SQLite file."""
    path = str(tmp_path / "shared.db")
    node, cli = SqliteStore(path), SqliteStore(path)
    try:
        before = node.change_marker()
        node.put("app", "a", {"v": 1})
        assert node.change_marker() == before  # its own writes do not count
        cli.put("app", "a", {"v": 2})
        assert node.change_marker() != before
    finally:
        node.close()
        cli.close()


def test_outbox_entry_with_seq_keeps_every_other_field() -> None:
    entry = OutboxEntry("i", "k", "a", "t", "http://x", b"{}", 1.0, 2.0, attempts=3, seq=4)
    assert entry.with_seq(9) == dataclasses.replace(entry, seq=9)
    # with_seq lists the fields by position: a new field must be added there too
    assert [f.name for f in dataclasses.fields(OutboxEntry)] == [
        "id",
        "order_key",
        "app_id",
        "tenant_id",
        "url",
        "body",
        "created_at",
        "next_attempt_at",
        "attempts",
        "seq",
    ]


def test_update_builds_on_the_stored_document(store: Store) -> None:
    """`update` hands its change the stored document (None at first) and writes what it returns."""
    seen: list[object] = []

    def bump(doc: dict[str, int] | None) -> dict[str, int]:
        seen.append(doc)
        return {"n": (doc or {"n": 0})["n"] + 1}

    assert store.update("callRecord", "c", bump) == {"n": 1}
    assert store.update("callRecord", "c", bump) == {"n": 2}
    with store.transaction():
        assert store.update("callRecord", "c", bump) == {"n": 3}
    assert store.get("callRecord", "c") == {"n": 3} and seen[-1] == {"n": 2}


def test_redis_writes_of_a_call_take_one_round_trip_each(redis_target: RedisTarget) -> None:
    """A media operation's document with its notification, a call record and a lone document: one round trip each
    (no INCRBY to number the entries first, no script check, no read before the record's write)."""
    counting = CountingRedis.from_url(redis_target.url)
    store = RedisStore(redis_target, client=counting)
    other = RedisStore(redis_target)
    try:
        counting.trips = 0
        store.put("operation", "call/op", {"status": "running"})
        assert counting.trips == 1
        counting.trips = 0
        with store.transaction():
            store.put("operation", "call/op", {"status": "completed"})
            store.outbox_append_many([entry(1), entry(2)])
        assert counting.trips <= 2  # the script is loaded once (NOSCRIPT), then one EVALSHA per commit
        counting.trips = 0
        with store.transaction():
            store.put("operation", "call/op2", {"status": "completed"})
            store.outbox_append(entry(3))
        assert counting.trips == 1
        assert [e.id for e in other.outbox_load()] == ["id-1", "id-2", "id-3"]
        assert other.get("operation", "call/op") == {"status": "completed"}
        counting.trips = 0
        assert store.update("callRecord", "c", lambda doc: {"sessions": [*(doc or {"sessions": []})["sessions"], "a"]})
        assert counting.trips <= 2 and other.get("callRecord", "c") == {"sessions": ["a"]}
        # another node wrote the record meanwhile: the guess fails and the change is applied to what it wrote
        other.put("callRecord", "c", {"sessions": ["b"]})
        store.update("callRecord", "c", lambda doc: {"sessions": [*(doc or {"sessions": []})["sessions"], "c"]})
        assert other.get("callRecord", "c") == {"sessions": ["b", "c"]}
    finally:
        store.close()
        other.close()


async def test_redis_delete_later_rides_along_with_the_next_write(redis_target: RedisTarget) -> None:
    """An ended call's operations are deleted with the next write (no round trip of their own), or alone shortly."""
    import asyncio

    from opencomms.store import redis_sync

    counting = CountingRedis.from_url(redis_target.url)
    store = RedisStore(redis_target, client=counting)
    other = RedisStore(redis_target)
    try:
        store.put_docs([("operation", "c/1", {"s": 1}), ("operation", "c/2", {"s": 2})])
        counting.trips = 0
        store.delete_later("operation", ["c/1"])
        assert counting.trips == 0 and other.get("operation", "c/1") == {"s": 1}
        store.put("operation", "d/1", {"s": 3})
        assert counting.trips == 1 and other.get("operation", "c/1") is None
        with store.transaction():  # and with a transaction's script
            store.delete_later("operation", ["d/1"])
            store.outbox_append(entry(1))
        assert other.get("operation", "d/1") is None
        store.delete_later("operation", ["c/2"])  # nothing else written: sent alone after LATER_S
        await asyncio.sleep(redis_sync.LATER_S + 0.1)
        assert other.get("operation", "c/2") is None
    finally:
        store.close()
        other.close()
