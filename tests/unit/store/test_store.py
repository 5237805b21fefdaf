"""Both stores honour one contract: documents, nested transactions with rollback, an ordered outbox."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from opencomms.store import MemoryStore, OutboxEntry, SqliteStore, Store, open_store


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    st: Store = MemoryStore() if request.param == "memory" else SqliteStore(str(tmp_path / "s.db"))
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
