"""The node's SQLite Store and its conversation store on one connection: the conversation writes queued in a loop
iteration ride in the Store's next write transaction (one commit), a Store block that rolls back leaves them to
commit, a fault fails both, and an empty Store transaction costs no BEGIN/COMMIT."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from opencomms.store import OutboxEntry, SqliteStore, StoreUnavailable
from opencomms.store.conversations import conversations_beside
from opencomms.store.conversations_sqlite import SqliteConversationStore


def entry(conv: str, n: int) -> OutboxEntry:
    return OutboxEntry(
        id=f"{conv}-{n}",
        order_key=conv,
        app_id="app",
        tenant_id="t",
        url="http://x/",
        body=b"x",
        created_at=1.0,
        next_attempt_at=1.0,
    )


def _pair(tmp_path: Path) -> tuple[SqliteStore, SqliteConversationStore, list[str]]:
    st = SqliteStore(str(tmp_path / "s.db"), checkpoint_thread=False)
    conv = conversations_beside(st)
    assert isinstance(conv, SqliteConversationStore)
    trace: list[str] = []
    st.connection.set_trace_callback(trace.append)
    return st, conv, trace


async def test_one_connection_and_conversation_writes_ride_in_the_store_transaction(tmp_path: Path) -> None:
    st, conv, trace = _pair(tmp_path)
    assert conv._db is st.connection
    fut = conv.commit("c1", 0, {"n": 1}, [entry("c1", 1)], legs=["leg1"])
    with st.transaction():
        st.put("operation", "op1", {"status": "running"})
    assert await fut == 1
    assert [s for s in trace if s in ("BEGIN IMMEDIATE", "COMMIT")] == ["BEGIN IMMEDIATE", "COMMIT"]
    assert st.get("operation", "op1") == {"status": "running"}
    got = await conv.load("c1")
    assert got is not None and got.doc == {"n": 1} and await conv.find_leg("leg1") == "c1"
    # an autocommit write takes queued ones along too
    trace.clear()
    fut = conv.commit("c1", 1, None)
    st.delete("operation", "op1")
    assert await fut == 0 and [s for s in trace if s == "COMMIT"] == ["COMMIT"]
    assert await conv.load("c1") is None and st.get("operation", "op1") is None
    await conv.aclose()
    st.close()


async def test_a_store_block_that_rolls_back_leaves_the_riders_writes_committed(tmp_path: Path) -> None:
    st, conv, _ = _pair(tmp_path)
    fut = conv.commit("c1", 0, {"n": 1}, [entry("c1", 1)])
    with pytest.raises(RuntimeError), st.transaction():
        st.put("operation", "op1", {})
        raise RuntimeError("a bug in the block")
    assert await fut == 1
    assert st.get("operation", "op1") is None
    assert [e.id for e in await conv.outbox_load()] == ["c1-1"]
    await conv.aclose()
    st.close()


async def test_a_fault_fails_the_store_write_and_the_riders(tmp_path: Path) -> None:
    st, conv, _ = _pair(tmp_path)
    pages = st.connection.execute("PRAGMA page_count").fetchone()[0]
    st.connection.execute(f"PRAGMA max_page_count={pages + 2}")  # a real SQLITE_FULL, as on a full disk
    fut = conv.commit("c1", 0, {"big": "x" * 100_000})
    with pytest.raises(StoreUnavailable):
        st.put("k", "a", {"v": 1})
    with pytest.raises(StoreUnavailable):
        await fut
    st.connection.execute("PRAGMA max_page_count=1073741823")  # space returns
    assert st.get("k", "a") is None and await conv.load("c1") is None
    assert await conv.commit("c1", 0, {"n": 1}) == 1
    await conv.aclose()
    st.close()


async def test_a_bad_rider_write_fails_alone(tmp_path: Path) -> None:
    st, conv, _ = _pair(tmp_path)
    await conv.commit("c0", 0, {}, [entry("dup", 1)])
    bad = conv.commit("c1", 0, {}, [entry("dup", 1)])  # a duplicate outbox id: a bug in this write
    good = conv.commit("c2", 0, {})
    st.put("k", "a", {"v": 1})
    with pytest.raises(sqlite3.IntegrityError):
        await bad
    assert await good == 1 and st.get("k", "a") == {"v": 1}
    await conv.aclose()
    st.close()


def test_an_empty_transaction_costs_no_statement(tmp_path: Path) -> None:
    st = SqliteStore(str(tmp_path / "s.db"), checkpoint_thread=False)
    trace: list[str] = []
    st.connection.set_trace_callback(trace.append)
    with st.transaction():
        pass
    assert trace == []
    st.close()


async def test_group_commit_window_merges_batches_of_several_iterations_and_reads_do_not_wait(tmp_path: Path) -> None:
    st = SqliteStore(str(tmp_path / "s.db"), checkpoint_thread=False)
    conv = conversations_beside(st, group_window=0.05)
    assert isinstance(conv, SqliteConversationStore)
    loop = asyncio.get_running_loop()
    assert await conv.commit("c0", 0, {"n": 0}) == 1  # idle: the first batch goes at once
    before = conv.stats.transactions
    started = loop.time()
    first = conv.commit("c1", 0, {"n": 1}, [entry("c1", 1)])
    await asyncio.sleep(0)  # another loop iteration: its write joins the waiting batch
    second = conv.commit("c2", 0, {"n": 2})
    assert await first == 1 and await second == 1
    assert conv.stats.transactions - before == 1  # one transaction for both iterations' writes
    assert loop.time() - started < 1.0
    # a read right after a batch does not wait for the window, and takes the writes queued before it along
    third = conv.commit("c3", 0, {"n": 3})
    started = loop.time()
    loaded = await conv.load("c3")
    assert loaded is not None and loaded.doc == {"n": 3} and await third == 1
    assert loop.time() - started < 0.04
    await conv.aclose()
    st.close()


async def test_group_commit_window_zero_writes_each_iteration_at_its_end(tmp_path: Path) -> None:
    st = SqliteStore(str(tmp_path / "s.db"), checkpoint_thread=False)
    conv = conversations_beside(st)
    assert isinstance(conv, SqliteConversationStore)
    assert await conv.commit("c0", 0, {"n": 0}) == 1
    before = conv.stats.transactions
    first = conv.commit("c1", 0, {"n": 1})
    await asyncio.sleep(0)
    second = conv.commit("c2", 0, {"n": 2})
    assert await first == 1 and await second == 1
    assert conv.stats.transactions - before == 2
    await conv.aclose()
    st.close()
