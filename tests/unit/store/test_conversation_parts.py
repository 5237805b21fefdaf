"""Partial writes of a conversation (issue 17 (c)): a command on a meeting writes its header and the parts of the legs
and roster entries it changed; a stale partial writer is refused, a failure between parts leaves nothing written,
a load assembles the whole document, and a store that cannot write parts keeps working with whole documents."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from opencomms.calling.core import Core
from opencomms.calling.ledger import conversation_delta
from opencomms.directory import Directory
from opencomms.domain import commands as c
from opencomms.domain import results
from opencomms.domain.conversation import Conversation
from opencomms.domain.errors import OpenCommsError
from opencomms.domain.legs import LegKind, LegSpec
from opencomms.domain.rules import ConversationKind, ConversationState
from opencomms.store import OutboxEntry, StoreUnavailable
from opencomms.store import conversations_sqlite as sqlite_store
from opencomms.store.base import Doc
from opencomms.store.conversations import (
    ConversationStore,
    Delta,
    Loaded,
    MemoryConversationStore,
    StaleVersion,
)
from opencomms.store.conversations_sqlite import SqliteConversationStore, read_conversations
from opencomms.store.memory import MemoryStore
from tests.unit.domain.conversation_kit import TIMEOUTS, ring, spec
from tests.unit.domain.test_conversation_fuzz import NAMES, random_command

MEETING = "m1"
NEW = (MEETING, "t1", ConversationKind.MEETING)


def bot(name: str) -> c.Join:
    attrs = {"callback_uri": f"http://127.0.0.1:9/{name}"}
    identity = {"application": {"id": f"app-{name}"}}
    spec = LegSpec(name, LegKind.BOT, f"p-{name}", "1", identity, app_id=f"app-{name}", attrs=attrs)
    return c.Join(spec, role="member")


def phone(name: str, *, lobby: bool = False) -> c.Join:
    identity = {"phone": {"id": f"+1555{name}"}}
    return c.Join(LegSpec(name, LegKind.SIP, f"p-{name}", "2", identity, external=f"sip-{name}"), in_lobby=lobby)


def entry(n: str) -> OutboxEntry:
    return OutboxEntry(n, MEETING, "app", "t1", "http://x/", b"{}", 1.0, 1.0)


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ConversationStore]:
    st: ConversationStore
    if request.param == "memory":
        st = MemoryConversationStore()
    else:
        st = await SqliteConversationStore.open(str(tmp_path / "c.db"))
    yield st
    await st.aclose()


class Recording(MemoryConversationStore):
    """Counts the parts each delta writes."""

    def __init__(self) -> None:
        super().__init__()
        self.deltas: list[Delta] = []

    def commit_delta(
        self, conv_id: str, expected_version: int, delta: Delta, outbox: Sequence[OutboxEntry] = ()
    ) -> Awaitable[int]:
        self.deltas.append(delta)
        return super().commit_delta(conv_id, expected_version, delta, outbox)


class _Sink:
    def release(self, entries: list[OutboxEntry]) -> None:
        pass


class NodeLedger:
    """One node's core on a store: its ledger (attributes pass through) and the units of its commands."""

    def __init__(self, store: ConversationStore) -> None:
        self.core = Core(store, Directory(MemoryStore()), _Sink(), clock=lambda: 100.0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.core.ledger, name)


def conversation_ledger(store: ConversationStore) -> Any:
    return NodeLedger(store)


async def run(ledger: Any, *commands: c.Command) -> None:
    for command in commands:
        await ledger.apply(MEETING, ledger.core.unit(command, 100.0, new=NEW[1:]))


async def test_a_join_writes_the_joiner_alone_however_large_the_meeting() -> None:
    st = Recording()
    ledger = conversation_ledger(st)
    await run(ledger, *(phone(f"x{i}") for i in range(50)))
    await run(ledger, bot("late"))
    delta = st.deltas[-1]
    assert not delta.complete and st.deltas[0].complete  # the first write is every part, later ones what changed
    assert [key for key, _ in delta.parts] == ["legs/late", "roster.participants/p-late"]
    assert list(delta.legs_added) == ["late"] and delta.header["legs"] == []


async def test_load_after_partial_writes_is_the_whole_document(store: ConversationStore) -> None:
    ledger = conversation_ledger(store)
    await run(ledger, bot("host"), phone("a"), phone("b", lobby=True), phone("c"), bot("guest"))
    await run(ledger, c.Mute("host", True, "p-a"), c.Admit("host"), c.KeepAlive("guest"))
    await run(ledger, c.EndLeg("a", results.PSTN_HUNG_UP), c.MoveCallback("guest", "http://127.0.0.1:9/moved"))
    await run(ledger, phone("d"))
    conv = ledger.cached(MEETING)
    assert conv is not None
    loaded = await store.load(MEETING)
    assert loaded is not None and loaded.version == conv.version == 11
    assert loaded.doc == conv.to_doc()
    assert [leg["id"] for leg in loaded.doc["legs"]] == ["host", "b", "c", "guest", "d"]  # the order they came
    assert [p["id"] for p in loaded.doc["roster"]["participants"]] == ["p-host", "p-b", "p-c", "p-guest", "p-d"]
    assert await store.find_leg("d") == MEETING and await store.find_leg("a") is None
    assert await store.next_deadline() == conv.next_deadline()
    again = Conversation.from_doc(loaded.doc)  # a restart: the next write is every part again, then deltas
    assert again.to_doc() == conv.to_doc()
    fresh = conversation_ledger(store)
    await run(fresh, phone("e"), c.HangUp("guest"))
    reloaded = await store.load(MEETING)
    assert reloaded is not None and reloaded.doc == fresh.cached(MEETING).to_doc()  # type: ignore[union-attr]


async def test_a_stale_partial_writer_is_refused_and_writes_nothing(store: ConversationStore) -> None:
    first, second = conversation_ledger(store), conversation_ledger(store)
    await run(first, bot("host"), phone("a"))
    await run(second, phone("b"))  # loaded at version 2, writes version 3
    before, pending = await store.load(MEETING), await store.outbox_load()
    conv = first.cached(MEETING)  # still at version 2
    assert conv is not None and before is not None and before.version == 3
    conv.apply(phone("c"), 100.0)
    with pytest.raises(StaleVersion):
        await store.commit_delta(MEETING, 2, conversation_delta(conv), [entry("stale")])
    after = await store.load(MEETING)
    assert after == before and "c" not in [leg["id"] for leg in after.doc["legs"]]
    assert await store.find_leg("c") is None and await store.outbox_load() == pending  # no "stale" entry
    await run(first, phone("c"))  # the ledger reloads on StaleVersion and runs the command again
    got = await store.load(MEETING)
    assert got is not None and [leg["id"] for leg in got.doc["legs"]] == ["host", "a", "b", "c"]


async def test_a_failure_between_parts_leaves_nothing_half_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    st = await SqliteConversationStore.open(str(tmp_path / "c.db"))
    ledger = conversation_ledger(st)
    await run(ledger, bot("host"), phone("a"))
    before = await st.load(MEETING)
    real = sqlite_store._write_parts

    def half(db: sqlite3.Connection, conv: str, delta: Any, **kw: Any) -> None:  # a part lands, then the disk fails
        delta.parts = delta.parts[:1]
        real(db, conv, delta, **kw)
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(sqlite_store, "_write_parts", half)
    with pytest.raises(StoreUnavailable):
        await run(ledger, phone("b"))
    monkeypatch.setattr(sqlite_store, "_write_parts", real)
    assert await st.load(MEETING) == before and await st.find_leg("b") is None
    parts = await st.run(lambda db: db.execute("SELECT key FROM conversation_parts ORDER BY ord").fetchall())
    assert [k for (k,) in parts] == ["legs/host", "roster.participants/p-host", "legs/a", "roster.participants/p-a"]
    await run(ledger, phone("b"))  # the unit was dropped from the cache: it reloads and writes again
    got = await st.load(MEETING)
    assert got is not None and [leg["id"] for leg in got.doc["legs"]] == ["host", "a", "b"]
    await st.aclose()


async def test_a_whole_document_stored_before_parts_is_replaced_by_its_parts(tmp_path: Path) -> None:
    st = await SqliteConversationStore.open(str(tmp_path / "c.db"))
    conv = Conversation(MEETING, "t1", ConversationKind.MEETING)
    conv.apply(bot("host"), 1.0)
    conv.apply(phone("a"), 1.0)
    await st.commit(MEETING, 0, conv.to_doc(), legs=list(conv.legs))  # as a node before partial writes did
    ledger = conversation_ledger(st)
    await run(ledger, phone("b"))
    got = await st.load(MEETING)
    assert got is not None and [leg["id"] for leg in got.doc["legs"]] == ["host", "a", "b"]
    assert got.doc == ledger.cached(MEETING).to_doc()  # type: ignore[union-attr]
    await run(ledger, c.EndLeg("a", results.PSTN_HUNG_UP))
    got = await st.load(MEETING)
    assert got is not None and [leg["id"] for leg in got.doc["legs"]] == ["host", "b"]
    await st.aclose()
    assert read_conversations(str(tmp_path / "c.db")) == [got.doc]  # the CLI's reader assembles the parts too


class WholeOnly(ConversationStore):
    """A store written against the protocol before partial writes (as a Redis store would be): whole documents."""

    def __init__(self) -> None:
        self.inner = MemoryConversationStore()
        self.docs: list[Doc | None] = []

    async def load(self, conv_id: str) -> Loaded | None:
        return await self.inner.load(conv_id)

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
        self.docs.append(doc)
        return self.inner.commit(conv_id, expected_version, doc, outbox, legs=legs, deadline=deadline)

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

    async def outbox_remove(self, entry_ids: Iterable[str]) -> None:
        await self.inner.outbox_remove(entry_ids)

    async def outbox_update(self, entries: Iterable[OutboxEntry]) -> None:
        await self.inner.outbox_update(entries)


async def test_a_store_without_partial_writes_gets_whole_documents() -> None:
    st = WholeOnly()
    ledger = conversation_ledger(st)
    await run(ledger, bot("host"), phone("a"), c.EndLeg("a", results.PSTN_HUNG_UP), phone("b"))
    assert all(doc is not None and "legs" in doc for doc in st.docs) and len(st.docs) == 4
    got = await st.load(MEETING)
    conv = ledger.cached(MEETING)
    assert got is not None and conv is not None and got.doc == conv.to_doc() and got.version == 4
    assert await st.find_leg("b") == MEETING and await st.find_leg("a") is None
    ledger.evict(MEETING)  # a reload from the whole document, then writes go on
    await run(ledger, phone("c"))
    got = await st.load(MEETING)
    assert got is not None and [leg["id"] for leg in got.doc["legs"]] == ["host", "b", "c"]


@pytest.mark.parametrize("kind", list(ConversationKind))
@pytest.mark.parametrize("seed", range(25))
async def test_random_commands_written_in_parts_load_as_the_whole_document(kind: ConversationKind, seed: int) -> None:
    rng = random.Random(seed)
    st = MemoryConversationStore()
    conv = Conversation("conv", "tenant", kind, timeouts=TIMEOUTS)
    first = c.Join(spec("a")) if kind is ConversationKind.MEETING else c.Create(spec("a"), (ring("b"),))
    conv.apply(first, 0.0)
    version = await st.commit_delta("conv", 0, conversation_delta(conv))
    now = 0.0
    for step in range(60):
        if conv.state is ConversationState.ENDED or not conv.legs:
            break
        now += rng.choice([0.0, 1.0, 20.0, 61.0, 3000.0])
        fresh = rng.choice(NAMES) if rng.random() < 0.2 else f"n{step}"
        try:
            conv.apply(random_command(rng, fresh, list(conv.legs)), now)
        except OpenCommsError:
            continue
        if not conv.legs:
            break
        version = await st.commit_delta("conv", version, conversation_delta(conv))
        loaded = await st.load("conv")
        assert loaded is not None and loaded.doc == conv.to_doc(), step
        brute = min((d for leg in conv.legs.values() for d in leg.deadlines()), default=None)
        assert await st.next_deadline() == conv.next_deadline() and (brute is None or conv.next_deadline() <= brute)
        assert {leg for leg in conv.legs if await st.find_leg(leg) == "conv"} == set(conv.legs)
