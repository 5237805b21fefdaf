"""The SQLite conversation store under contention and crashes: a second connection's stale write is refused, commits
of one loop iteration share a transaction, the loop keeps running while another process holds the write lock, and a
kill -9 mid-batch leaves every committed version with its outbox entries."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from opencomms.store import OutboxEntry, StoreUnavailable
from opencomms.store.conversations import StaleVersion
from opencomms.store.conversations_sqlite import SqliteConversationStore


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


async def test_second_connection_with_an_old_version_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    a = await SqliteConversationStore.open(path)
    b = await SqliteConversationStore.open(path)
    await a.commit("c1", 0, {"owner": "a"}, [entry("c1", 1)], legs=["leg-a"])
    seen = await b.load("c1")
    assert seen is not None and seen.version == 1
    assert await a.commit("c1", 1, {"owner": "a", "n": 2}, [entry("c1", 2)]) == 2
    with pytest.raises(StaleVersion) as err:  # b still holds version 1
        await b.commit("c1", seen.version, {"owner": "b"}, [entry("c1", 99)], legs=["leg-b"])
    assert err.value.actual == 2
    got = await b.load("c1")
    assert got is not None and got.doc == {"owner": "a", "n": 2} and got.version == 2
    assert [e.id for e in await b.outbox_load()] == ["c1-1", "c1-2"]
    assert await b.find_leg("leg-a") == "c1" and await b.find_leg("leg-b") is None
    await a.aclose()
    await b.aclose()


async def test_commits_of_one_loop_iteration_share_a_transaction(tmp_path: Path) -> None:
    st = await SqliteConversationStore.open(str(tmp_path / "s.db"))
    await st.commit("old", 0, {})
    await st.commit("old", 1, {})
    futs = [st.commit(f"c{i}", 0, {"i": i}, [entry(f"c{i}", 1)], legs=[f"leg{i}"]) for i in range(50)]
    futs.append(st.commit("old", 1, {"stale": True}, [entry("old", 9)]))  # refused alone
    before = st.stats.transactions
    results = await asyncio.gather(*futs, return_exceptions=True)
    assert results[:50] == [1] * 50
    assert isinstance(results[50], StaleVersion)
    assert st.stats.transactions - before == 1 and st.stats.largest_batch == 51
    assert len(await st.outbox_load()) == 50 and await st.find_leg("leg49") == "c49"
    await st.aclose()


async def test_a_write_that_fails_half_way_fails_alone(tmp_path: Path) -> None:
    st = await SqliteConversationStore.open(str(tmp_path / "s.db"))
    await st.commit("c0", 0, {}, [entry("c0", 1)])
    results = await asyncio.gather(
        st.commit("c1", 0, {"i": 1}, [entry("c1", 1)]),
        st.commit("c2", 0, {"i": 2}, [entry("c0", 1)]),  # a duplicate outbox id, after its document was written
        st.commit("c3", 0, {"i": 3}, [entry("c3", 1)]),
        return_exceptions=True,
    )
    assert results[0] == 1 and results[2] == 1 and isinstance(results[1], sqlite3.IntegrityError)
    assert await st.load("c2") is None and await st.load("c3") is not None
    assert [e.id for e in await st.outbox_load()] == ["c0-1", "c1-1", "c3-1"]
    assert st.stats.commits == 3
    await st.aclose()


_HOLD_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("ROLLBACK")
"""


async def _probe(stop: asyncio.Event, step: float = 0.005) -> float:
    """The worst delay of a 5 ms loop timer until `stop` is set."""
    loop = asyncio.get_running_loop()
    worst = 0.0
    while not stop.is_set():
        t = loop.time()
        await asyncio.sleep(step)
        worst = max(worst, loop.time() - t - step)
    return worst


async def _hold_lock(path: str, seconds: float) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _HOLD_LOCK, path, str(seconds), stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    assert (await proc.stdout.readline()).strip() == b"locked"
    return proc


async def test_loop_runs_while_another_process_holds_the_write_lock(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    st = await SqliteConversationStore.open(path, busy_timeout=5.0)
    await st.commit("c1", 0, {"v": 1})
    proc = await _hold_lock(path, 0.6)
    try:
        stop = asyncio.Event()
        probe = asyncio.create_task(_probe(stop))
        start = time.monotonic()
        version = await st.commit("c1", 1, {"v": 2}, [entry("c1", 2)])  # waits for the lock, off the loop
        waited = time.monotonic() - start
        stop.set()
        worst = await probe
    finally:
        await asyncio.wait_for(proc.wait(), 10)
    assert version == 2 and waited > 0.3
    assert worst < 0.25, f"event loop stalled {worst * 1000:.0f} ms"
    await st.aclose()


async def test_lock_held_past_busy_timeout_fails_the_batch_and_writes_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    st = await SqliteConversationStore.open(path, busy_timeout=0.1)
    await st.commit("c1", 0, {"v": 1})
    proc = await _hold_lock(path, 1.0)
    try:
        results = await asyncio.gather(
            st.commit("c1", 1, {"v": 2}, [entry("c1", 2)]), st.commit("c2", 0, {}), return_exceptions=True
        )
        assert all(isinstance(r, StoreUnavailable) and r.reason == "locked" for r in results), results
        got = await st.load("c1")  # reads go on (WAL)
        assert got is not None and got.version == 1 and await st.load("c2") is None
    finally:
        await asyncio.wait_for(proc.wait(), 10)
    assert await st.commit("c1", 1, {"v": 2}) == 2  # and writes recover once the lock is gone
    assert await st.outbox_load() == []
    await st.aclose()


_WRITER = """
import asyncio, sys
from opencomms.store import OutboxEntry
from opencomms.store.conversations_sqlite import SqliteConversationStore

def entry(conv, n):
    return OutboxEntry(id=f"{conv}-{n}", order_key=conv, app_id="a", tenant_id="t", url="http://x/",
                       body=b"x" * 300, created_at=1.0, next_attempt_at=1.0)

async def main():
    st = await SqliteConversationStore.open(sys.argv[1])
    versions = {f"c{i}": 0 for i in range(20)}
    while True:
        convs = list(versions)
        futs = [st.commit(c, versions[c], {"c": c, "v": versions[c] + 1, "pad": "p" * 500},
                          [entry(c, versions[c] + 1), entry(c, f"{versions[c] + 1}b")]) for c in convs]
        for c, v in zip(convs, await asyncio.gather(*futs)):
            versions[c] = v
            print(c, v, flush=True)

asyncio.run(main())
"""


def test_kill_9_mid_batch_keeps_every_committed_version_with_its_outbox(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_WRITER), path], stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    acked: dict[str, int] = {}
    try:
        while len(acked) < 20 or min(acked.values()) < 15:  # many batches committed, more in flight
            line = proc.stdout.readline()
            assert line, "the writer died"
            conv, version = line.split()
            acked[conv.decode()] = int(version)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    db = sqlite3.connect(path)
    stored = dict(db.execute("SELECT id, version FROM conversations").fetchall())
    ids = {row[0] for row in db.execute("SELECT id FROM outbox")}
    db.close()
    for conv, version in acked.items():
        assert stored[conv] >= version, conv  # nothing acknowledged is lost
    for conv, version in stored.items():  # and every stored version has exactly its own notifications
        expected = {f"{conv}-{n}" for n in range(1, version + 1)} | {f"{conv}-{n}b" for n in range(1, version + 1)}
        assert {i for i in ids if i.split("-")[0] == conv} == expected, conv


async def test_on_the_loop_without_a_writer_thread(tmp_path: Path) -> None:
    """`writer_thread=False`: the same versioned writes, batched per loop iteration, written on the loop."""
    path = str(tmp_path / "s.db")
    st = SqliteConversationStore(path, writer_thread=False)
    other = await SqliteConversationStore.open(path)
    try:
        first = [st.commit(f"c{i}", 0, {"n": i}, [entry(f"c{i}", 1)], legs=[f"leg{i}"]) for i in range(3)]
        assert await asyncio.gather(*first) == [1, 1, 1]
        assert st.stats.transactions == 1  # one iteration: one transaction
        assert await other.commit("c0", 1, {"n": 10}) == 2
        with pytest.raises(StaleVersion):
            await st.commit("c0", 1, {"n": 11})  # the other connection moved it on
        loaded = await st.load("c0")
        assert loaded is not None and loaded.doc == {"n": 10} and loaded.version == 2
        assert await st.find_leg("leg2") == "c2" and len(await st.outbox_load()) == 3
    finally:
        await st.aclose()
        await other.aclose()
