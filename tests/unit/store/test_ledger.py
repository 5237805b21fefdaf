"""The ledger: one command per unit of work, loaded on demand, notifications released only after the commit, a
stale writer reloads and retries, a failed commit leaves no trace in the cache, one command at a time per
conversation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import pytest

from opencomms.config import LedgerConfig, load_config
from opencomms.store import OutboxEntry, StoreUnavailable
from opencomms.store.base import Doc
from opencomms.store.conversations import ConversationStore, MemoryConversationStore, StaleVersion
from opencomms.store.conversations_sqlite import SqliteConversationStore
from opencomms.store.ledger import Index, Ledger, Unit, new_entry


@dataclass
class Tally:
    """A stand-in aggregate: a counter with legs and a timer."""

    id: str
    count: int = 0
    legs: list[str] = field(default_factory=list)
    deadline: float | None = None
    version: int = 0

    def to_doc(self) -> Doc:
        return {"id": self.id, "count": self.count, "legs": list(self.legs), "deadline": self.deadline}

    @classmethod
    def from_doc(cls, doc: Doc) -> Self:
        return cls(**doc)


def index(t: Tally) -> Index:
    return Index(frozenset(t.legs), t.deadline)


def bump(unit: Unit[Tally]) -> int:
    """Create the tally or add one, with a notification and an event."""
    tally = unit.state or Tally(unit.conv_id)
    tally.count += 1
    unit.put(tally)
    unit.notify(
        new_entry(order_key=unit.conv_id, app_id="app", tenant_id="t", url="http://x/", body=b"%d" % tally.count)
    )
    unit.emit(("bumped", tally.count))
    return tally.count


class Recorder:
    """Release and publish callbacks that check the store already holds what they are handed."""

    def __init__(self, store: ConversationStore) -> None:
        self.store = store
        self.released: list[OutboxEntry] = []
        self.events: list[tuple[str, object]] = []

    def release(self, entries: list[OutboxEntry]) -> None:
        self.released.extend(entries)

    def publish(self, conv_id: str, events: list[object]) -> None:
        self.events.extend((conv_id, e) for e in events)


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ConversationStore]:
    st: ConversationStore
    if request.param == "memory":
        st = MemoryConversationStore()
    else:
        st = await SqliteConversationStore.open(str(tmp_path / "s.db"))
    yield st
    await st.aclose()


def ledger_on(store: ConversationStore, rec: Recorder | None = None, **kw: Any) -> Ledger[Tally]:
    return Ledger(
        store,
        Tally,
        index=index,
        release=None if rec is None else rec.release,
        publish=None if rec is None else rec.publish,
        **kw,
    )


async def test_apply_commits_then_releases(store: ConversationStore) -> None:
    rec = Recorder(store)
    ledger = ledger_on(store, rec)
    assert await ledger.apply("c1", bump) == 1
    assert await ledger.apply("c1", bump) == 2
    got = await store.load("c1")
    assert got is not None and got.doc["count"] == 2 and got.version == 2
    assert [e.body for e in await store.outbox_load()] == [b"1", b"2"]
    assert [e.body for e in rec.released] == [b"1", b"2"]
    assert rec.events == [("c1", ("bumped", 1)), ("c1", ("bumped", 2))]
    cached = ledger.cached("c1")
    assert cached is not None and cached.version == 2


async def test_loads_on_demand_and_finds_legs(store: ConversationStore) -> None:
    await store.commit("c1", 0, Tally("c1", 5, ["leg-1"]).to_doc(), legs=["leg-1"])
    ledger = ledger_on(store)
    assert len(ledger) == 0 and ledger.cached("c1") is None
    assert await ledger.find_leg("leg-1") == "c1"  # from the store's index
    assert await ledger.apply("c1", bump) == 6

    def add_leg(unit: Unit[Tally]) -> None:
        assert unit.state is not None
        unit.state.legs.append("leg-2")
        unit.put(unit.state)

    await ledger.apply("c1", add_leg)
    ledger.evict("c1")
    assert await ledger.find_leg("leg-2") == "c1"
    await ledger.apply("c1", lambda u: u.delete())
    assert await store.load("c1") is None and len(ledger) == 0
    assert await ledger.find_leg("leg-1") is None and await ledger.find_leg("leg-2") is None


async def test_stale_cache_reloads_and_reruns_the_command(store: ConversationStore) -> None:
    mine, other = ledger_on(store), ledger_on(store)  # two nodes (or a node and a stale copy) on one store
    await mine.apply("c1", bump)
    await other.apply("c1", bump)  # mine still caches version 1
    attempts: list[int] = []

    def counted(unit: Unit[Tally]) -> int:
        attempts.append(unit.attempt)
        return bump(unit)

    assert await mine.apply("c1", counted) == 3  # rerun on the reloaded state: nothing of the other's is lost
    assert attempts == [0, 1] and mine.stale == 1
    got = await store.load("c1")
    assert got is not None and got.doc["count"] == 3 and got.version == 3


async def test_stale_beyond_the_retries_reaches_the_caller(store: ConversationStore) -> None:
    rec = Recorder(store)
    mine, other = ledger_on(store, rec, retries=0), ledger_on(store)
    await mine.apply("c1", bump)
    await other.apply("c1", bump)
    rec.released.clear()
    with pytest.raises(StaleVersion):
        await mine.apply("c1", bump)
    assert rec.released == [] and rec.events[-1] == ("c1", ("bumped", 1))
    assert mine.cached("c1") is None  # the next unit reloads
    assert await mine.apply("c1", bump) == 3


class Faulty(ConversationStore):
    """A memory store whose commits fail with StoreUnavailable while `down`."""

    def __init__(self) -> None:
        self.inner = MemoryConversationStore()
        self.down = False

    def commit(
        self,
        conv_id: str,
        expected_version: int,
        doc: Doc | None,
        outbox: Sequence[OutboxEntry] = (),
        *,
        legs: Collection[str] | None = None,
        deadline: float | None = None,
    ) -> Awaitable[int]:
        if self.down:
            raise StoreUnavailable("disk full", reason="full")
        return self.inner.commit(conv_id, expected_version, doc, outbox, legs=legs, deadline=deadline)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def load(self, conv_id: str) -> Any:
        return await self.inner.load(conv_id)

    async def find_leg(self, leg_id: str) -> str | None:
        return await self.inner.find_leg(leg_id)

    async def due(self, now: float, limit: int = 256) -> list[tuple[str, float]]:
        return await self.inner.due(now, limit)

    async def next_deadline(self) -> float | None:
        return await self.inner.next_deadline()

    async def live(self, after: str = "", limit: int = 1000) -> list[str]:
        return await self.inner.live(after, limit)

    async def outbox_load(self) -> list[OutboxEntry]:
        return await self.inner.outbox_load()

    async def outbox_remove(self, entry_ids: Any) -> None:
        await self.inner.outbox_remove(entry_ids)

    async def outbox_update(self, entries: Any) -> None:
        await self.inner.outbox_update(entries)


async def test_store_unavailable_rolls_back_the_cache() -> None:
    store = Faulty()
    rec = Recorder(store)
    ledger = ledger_on(store, rec)
    await ledger.apply("c1", bump)
    store.down = True
    with pytest.raises(StoreUnavailable):
        await ledger.apply("c1", bump)  # the cached tally was bumped in place, then the commit failed
    assert ledger.cached("c1") is None and ledger.rollbacks == 1
    assert len(rec.released) == 1 and len(rec.events) == 1  # nothing of the failed unit got out
    store.down = False
    assert await ledger.apply("c1", bump) == 2  # reloaded from the store: the failed bump left no trace


async def test_a_failing_command_writes_nothing(store: ConversationStore) -> None:
    ledger = ledger_on(store)
    await ledger.apply("c1", bump)

    def broken(unit: Unit[Tally]) -> None:
        bump(unit)
        raise ValueError("refused")

    with pytest.raises(ValueError):
        await ledger.apply("c1", broken)
    assert await ledger.apply("c1", lambda u: u.state.count if u.state else None) == 1
    assert len(await store.outbox_load()) == 1


async def test_one_command_at_a_time_per_conversation(store: ConversationStore) -> None:
    ledger = ledger_on(store)
    counts = await asyncio.gather(*(ledger.apply("c1", bump) for _ in range(20)))
    assert sorted(counts) == list(range(1, 21)) and ledger.stale == 0
    got = await store.load("c1")
    assert got is not None and got.version == 20


async def test_unit_context_manager(store: ConversationStore) -> None:
    ledger = ledger_on(store)
    async with ledger.unit("c1") as unit:
        bump(unit)
    async with ledger.unit("c1") as unit:
        assert unit.state is not None and unit.version == 1
        bump(unit)
    other = ledger_on(store)
    await other.apply("c1", bump)
    with pytest.raises(StaleVersion):  # the body cannot be rerun: the caller decides
        async with ledger.unit("c1") as unit:
            bump(unit)
    async with ledger.unit("c1") as unit:
        assert unit.state is not None and unit.state.count == 3


async def test_timers_are_indexed(store: ConversationStore) -> None:
    ledger = ledger_on(store)

    def arm(at: float) -> Any:
        def command(unit: Unit[Tally]) -> None:
            tally = unit.state or Tally(unit.conv_id)
            tally.deadline = at
            unit.put(tally)

        return command

    await ledger.apply("c1", arm(50.0))
    await ledger.apply("c2", arm(10.0))
    assert await store.due(20.0) == [("c2", 10.0)] and await store.next_deadline() == 10.0


async def test_a_cancelled_caller_still_releases_what_its_unit_committed(tmp_path: Path) -> None:
    store = await SqliteConversationStore.open(str(tmp_path / "s.db"))
    rec = Recorder(store)
    ledger = ledger_on(store, rec)
    await ledger.apply("c1", bump)
    task = asyncio.create_task(ledger.apply("c1", bump))
    await asyncio.sleep(0)  # the unit ran and its commit is queued for the writer thread
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    got = await store.load("c1")
    assert got is not None and got.version == 2  # the write went ahead…
    await asyncio.sleep(0)  # (the write's callbacks ran before the load's result came back)
    assert [e.body for e in rec.released] == [b"1", b"2"]  # …and so did its notification
    assert [e for _, e in rec.events] == [("bumped", 1), ("bumped", 2)]  # …and its events reached the subscribers
    assert ledger.cached("c1") is None  # the cache does not guess: the next unit reloads
    assert await ledger.apply("c1", bump) == 3
    await store.aclose()


def test_ledger_section_of_the_node_configuration() -> None:
    config = load_config(env={"OPENCOMMS_LEDGER__RETRIES": "5", "OPENCOMMS_LEDGER__BUSY_TIMEOUT": "0.5"})
    assert config.ledger == LedgerConfig(retries=5, busy_timeout=0.5)
    with pytest.raises(ValueError):
        LedgerConfig(max_batch=0)
