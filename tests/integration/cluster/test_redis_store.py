"""The Redis stores against a real redis-server: conversation leases with fencing tokens (only the owner writes, a
lapsed lease is refused and never overwrites newer state), and the outbox stream's consumer group (a silent node's
notifications are claimed by another node and delivered in per-call order, at least once)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Callable

import pytest

from opencomms.notify import Dispatcher, RetryPolicy
from opencomms.store import OutboxEntry, StoreUnavailable
from opencomms.store.conversations import StaleVersion
from opencomms.store.conversations_redis import LeaseLost, NotOwner, RedisConversationStore
from opencomms.store.ledger import Ledger, Unit
from opencomms.store.redis_common import RedisTarget
from opencomms.store.redis_sync import RedisStore
from tests.redis_fixtures import redis_target, redis_url
from tests.unit.notify.conftest import receiver
from tests.unit.notify.notify_receiver import Receiver

__all__ = ["receiver", "redis_target", "redis_url"]  # fixtures

FAST = RetryPolicy(initial_delay=0.01, multiplier=2.0, max_delay=0.05, max_attempts=50, max_age=30.0, jitter=0.0)


def entry(conv: str, n: int, url: str = "http://x/") -> OutboxEntry:
    body = json.dumps({"key": conv, "i": n}).encode()
    return OutboxEntry(f"{conv}-{n}", conv, "app", "t", url, body, created_at=1.0, next_attempt_at=1.0)


@pytest.fixture
async def nodes(redis_target: RedisTarget) -> AsyncIterator[Callable[[str], RedisConversationStore]]:
    """Stores of several nodes on the same Redis and key prefix."""
    made: list[RedisConversationStore] = []

    def node(name: str) -> RedisConversationStore:
        made.append(RedisConversationStore(dataclasses.replace(redis_target, node=name)))
        return made[-1]

    yield node
    for st in made:
        await st.aclose()


def pause(st: RedisConversationStore) -> None:
    """The node stops renewing its leases (a stalled process, a partition)."""
    assert st._renewer is not None
    st._renewer.cancel()


async def test_only_the_owner_writes(nodes: Callable[[str], RedisConversationStore]) -> None:
    a, b = nodes("a"), nodes("b")
    assert await a.commit("c1", 0, {"by": "a"}, legs=["leg1"]) == 1
    with pytest.raises(NotOwner) as err:  # b may not load it for writing while a holds it
        await b.load("c1")
    assert err.value.status == 503 and err.value.retry_after == 1
    with pytest.raises(LeaseLost):  # nor write it blind with the version it could guess
        await b.commit("c1", 1, {"by": "b"})
    with pytest.raises(StaleVersion):  # nor take it by creating it again
        await b.commit("c1", 0, {"by": "b"})
    got = await a.load("c1")
    assert got is not None and got.doc == {"by": "a"} and got.version == 1
    await asyncio.sleep(a.target.lease * 1.5)  # a renews its lease meanwhile
    with pytest.raises(NotOwner):
        await b.load("c1")
    assert await a.commit("c1", 1, {"by": "a", "n": 2}) == 2
    assert a.leases == 1 and b.leases == 0


async def test_a_lapsed_lease_is_refused_and_cannot_overwrite_newer_state(
    nodes: Callable[[str], RedisConversationStore],
) -> None:
    a, b = nodes("a"), nodes("b")
    await a.commit("c1", 0, {"by": "a"}, [entry("c1", 1)], legs=["leg1"], deadline=50.0)
    pause(a)
    await asyncio.sleep(a.target.lease * 1.3)  # a's lease lapses
    got = await b.load("c1")  # b takes the conversation over, with a newer fencing token
    assert got is not None and got.version == 1
    assert await b.commit("c1", 1, {"by": "b"}, [entry("c1", 2)], legs=["leg2"], deadline=60.0) == 2
    with pytest.raises(StaleVersion):  # a comes back and writes as if nothing happened
        await a.commit("c1", 1, {"by": "a, stale"}, [entry("c1", 3)], legs=["leg3"])
    with pytest.raises(LeaseLost) as err:  # even with the current version: a's token is not the owner's
        await a.commit("c1", 2, {"by": "a, stale"}, [entry("c1", 3)], legs=["leg3"])
    assert isinstance(err.value, StaleVersion) and err.value.status == 409  # the ledger reloads and retries
    assert err.value.owner.startswith("b|")
    got = await b.load("c1")
    assert got is not None and got.doc == {"by": "b"} and got.version == 2
    assert await b.find_leg("leg2") == "c1" and await b.find_leg("leg3") is None
    # a's refused writes appended nothing; b took a's pending notification over with the conversation
    assert [e.id for e in await b.outbox_load()] == ["c1-1", "c1-2"]
    assert await a.outbox_load() == []
    assert await b.due(100.0) == [("c1", 60.0)] and await a.due(100.0) == []  # timers: the owner's only


async def test_a_lapsed_lease_nobody_took_is_taken_again_after_a_reload(
    nodes: Callable[[str], RedisConversationStore],
) -> None:
    a = nodes("a")
    await a.commit("c1", 0, {"v": 1})
    pause(a)
    await asyncio.sleep(a.target.lease * 1.3)
    with pytest.raises(LeaseLost):  # refused even though nobody else wrote: a must reload first
        await a.commit("c1", 1, {"v": 2})
    got = await a.load("c1")  # takes the free lease again (a newer token) and the stored state
    assert got is not None and got.version == 1
    assert await a.commit("c1", 1, {"v": 2}) == 2


async def test_a_silent_nodes_notifications_are_claimed_in_order(
    nodes: Callable[[str], RedisConversationStore],
) -> None:
    a, b = nodes("a"), nodes("b")
    await a.commit("c1", 0, {}, [entry("c1", 1), entry("c1", 2)])
    await a.commit("c2", 0, {}, [entry("c2", 1)])
    await a.commit("c1", 1, {}, [entry("c1", 3)])
    assert await b.outbox_claim() == []  # a is alive: its entries are its own
    for _ in range(4):  # a polls (keeps its entries fresh) for longer than the claim time
        assert await a.outbox_claim() == []
        await asyncio.sleep(a.target.claim_idle / 2)
    assert await b.outbox_claim() == []
    await asyncio.sleep(a.target.claim_idle * 1.3)  # a falls silent
    claimed = await b.outbox_claim()
    assert [e.id for e in claimed] == ["c1-1", "c1-2", "c2-1", "c1-3"]
    await b.outbox_update([claimed[0].with_attempt(99.0)])
    await b.outbox_remove(["c1-2", "c2-1"])
    assert [e.id for e in await a.outbox_load()] == []  # a restarted: what b took is b's
    again = await b.outbox_load()
    assert [e.id for e in again] == ["c1-1", "c1-3"] and again[0].attempts == 1


async def test_dispatcher_of_another_node_delivers_a_dead_nodes_notifications(
    nodes: Callable[[str], RedisConversationStore], redis_target: RedisTarget, receiver: Receiver
) -> None:
    a, b = nodes("a"), nodes("b")
    url = receiver.url("/cb")
    for i in range(20):  # a commits and dies before delivering anything
        await a.commit(f"c{i % 2}", i // 2, {}, [entry(f"c{i % 2}", i, url)])
    sync_b = RedisStore(dataclasses.replace(redis_target, node="b"))
    async with Dispatcher(sync_b, sign=lambda a, t: "tok", policy=FAST, outbox=b) as d:
        await receiver.wait_until(lambda: len(receiver.requests) >= 20, within=5.0)
        await asyncio.wait_for(d.wait_idle(), 5.0)
    for key in ("c0", "c1"):
        assert [r.index for r in receiver.requests if r.key == key] == list(range(int(key[1]), 20, 2))
    assert receiver.max_in_flight_per_key == 1
    assert await b.outbox_claim() == [] and sync_b.outbox_load() == []  # acknowledged and gone
    sync_b.close()


async def test_redis_down_is_store_unavailable(redis_url: str) -> None:
    st = RedisConversationStore(RedisTarget("redis://127.0.0.1:1/0", "a", timeout=0.2))
    with pytest.raises(StoreUnavailable):
        await st.commit("c1", 0, {})
    with pytest.raises(StoreUnavailable):
        await st.load("c1")
    await st.aclose()
    with pytest.raises(StoreUnavailable):
        RedisStore(RedisTarget("redis://127.0.0.1:1/0", "a", timeout=0.2))


@dataclasses.dataclass
class Counter:
    """A stand-in aggregate for the ledger."""

    n: int = 0
    version: int = 0

    def to_doc(self) -> dict[str, int]:
        return {"n": self.n}

    @classmethod
    def from_doc(cls, doc: dict[str, int]) -> Counter:
        return cls(doc["n"])


def bump(unit: Unit[Counter]) -> int:
    state = unit.state or Counter()
    state.n += 1
    unit.put(state)
    return state.n


async def test_the_ledger_of_a_node_that_lost_its_lease_reloads_or_gives_way(
    nodes: Callable[[str], RedisConversationStore],
) -> None:
    a, b = nodes("a"), nodes("b")
    la, lb = Ledger(a, Counter), Ledger(b, Counter)
    assert await la.apply("c1", bump) == 1 and await la.apply("c1", bump) == 2
    pause(a)
    await asyncio.sleep(a.target.lease * 1.3)  # a's lease lapsed, nobody took it: a's next command reloads
    assert await la.apply("c1", bump) == 3 and la.stale == 1
    pause(a)
    await asyncio.sleep(a.target.lease * 1.3)
    assert await lb.apply("c1", bump) == 4  # b takes the lapsed conversation over, from the stored state
    with pytest.raises(NotOwner):  # a's cached copy is refused, and a may not take it back while b holds it
        await la.apply("c1", bump)
    assert la.cached("c1") is None
    got = await b.load("c1")
    assert got is not None and got.doc == {"n": 4} and got.version == 4


async def test_taking_a_conversation_over_claims_the_last_writers_notifications_first(
    nodes: Callable[[str], RedisConversationStore],
) -> None:
    a, b = nodes("a"), nodes("b")
    b.target = dataclasses.replace(b.target, claim_idle=60.0)  # not the idle claims: the takeover itself
    await a.commit("c1", 0, {}, [entry("c1", 1), entry("c1", 2)])
    await a.commit("c2", 0, {}, [entry("c2", 1)])
    pause(a)
    await asyncio.sleep(a.target.lease * 1.3)
    heard: list[list[str]] = []
    b.on_claimed = lambda entries: heard.append([e.id for e in entries])
    assert await b.load("c1") is not None
    assert heard == [["c1-1", "c1-2", "c2-1"]]  # before load returns, so before b's own entries of c1
    assert await b.load("c1") is not None and len(heard) == 1  # b's own now: nothing more to take
    assert await b.outbox_claim() == [] and [e.id for e in await b.outbox_load()] == ["c1-1", "c1-2", "c2-1"]


async def test_a_closed_store_refuses_and_hands_its_leases_back(nodes: Callable[[str], RedisConversationStore]) -> None:
    a, b = nodes("a"), nodes("b")
    await a.commit("c1", 0, {"v": 1}, [entry("c1", 1)])
    await a.aclose()
    for call in (lambda: a.load("c1"), lambda: a.find_leg("x"), lambda: a.outbox_remove(["c1-1"])):
        with pytest.raises(StoreUnavailable):
            await call()
    with pytest.raises(StoreUnavailable):
        a.commit("c1", 1, {"v": 2})
    got = await b.load("c1")  # at once: a handed its lease back when it closed
    assert got is not None and got.doc == {"v": 1}
    assert [e.id for e in await b.outbox_load()] == ["c1-1"]  # taken over with the conversation


def test_a_node_sees_directory_writes_of_other_nodes_and_not_their_call_records(redis_target: RedisTarget) -> None:
    """The directory's cache marker moves with another node's (or the CLI's) app writes, not with the call records
    and operations every call writes: those would empty every node's directory cache several times a second."""
    from opencomms.directory import Directory

    a = RedisStore(redis_target)
    b = RedisStore(dataclasses.replace(redis_target, node="n2"))
    try:
        marker = a.change_marker()
        b.put("callRecord", "c1", {"id": "c1"})
        b.delete("operation", "x/y")
        with b.transaction():
            b.put("operation", "x/z", {"id": "z"})
        assert a.change_marker() == marker
        tenant = Directory(b).create_tenant("Contoso", "contoso.example")
        assert a.change_marker() != marker
        assert Directory(a).get_tenant(tenant.id) is not None
        marker = a.change_marker()
        a.put("app", "k", {"id": "k"})  # its own writes: its caches are told directly
        assert a.change_marker() == marker
    finally:
        a.close()
        b.close()
