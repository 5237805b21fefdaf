"""Units of work of the calling core on the async ledger, without HTTP.

A unit whose commit fails leaves no trace (no phantom calls, no media or gateway side effects: subscribers hear
only committed events); a stale writer is refused and its command reruns on the state the other writer stored;
timers come from the store's deadline index and hold off after a storage fault.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import pytest

from opencomms.calling.invitations import origin
from opencomms.calling.model import Call
from opencomms.calling.service import Caller, CallService
from opencomms.directory import Directory
from opencomms.domain import commands as c
from opencomms.domain.legs import LegKind
from opencomms.domain.results import ResultInfo
from opencomms.domain.rules import ConversationKind
from opencomms.notify.dispatcher import Dispatcher
from opencomms.store import MemoryStore, StoreUnavailable
from opencomms.store.conversations import MemoryConversationStore, StaleVersion
from opencomms.testing.harness import app_target
from opencomms.wire import calls as wire

ROLES = frozenset({"Calls.Initiate.All", "Calls.AccessMedia.All", "Calls.InitiateGroupCall.All"})


class FaultyConversations(MemoryConversationStore):
    """A memory conversation store whose commits fail (like SQLite with a full disk) while `full` is set."""

    def __init__(self, outbox: MemoryStore) -> None:
        super().__init__(outbox)
        self.full = False

    def commit(self, conv_id: str, expected_version: int, doc: Any, outbox: Any = (), **kwargs: Any) -> Awaitable[int]:
        if self.full:
            fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            fut.set_exception(StoreUnavailable("store test.db is full (no space left)", reason="full"))
            return fut
        return super().commit(conv_id, expected_version, doc, outbox, **kwargs)


class Hooks:
    """Records media and gateway hook calls (both protocols)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def configured(self, call: Call) -> None:
        pass

    def connected(self, call: Call) -> None:
        self.events.append(("connected", call.id))

    def ending(self, call: Call, reason: ResultInfo | None = None) -> None:
        self.events.append(("ending", call.id))

    def dial(self, call: Call) -> None:
        self.events.append(("dial", call.id))

    def muted(self, leg_id: str, muted: bool) -> None:
        pass

    def reachable(self, tenant_id: str, identity: Any) -> bool:
        return False

    def can_refer(self, call: Call, target: Any) -> bool:
        return False

    def refer(self, call: Call, target: Any) -> None:
        pass


Setup = tuple[CallService, FaultyConversations, Hooks, Caller, Caller]


def _service(store: MemoryStore, directory: Directory, conversations: MemoryConversationStore, **kw: Any) -> Any:
    svc = CallService(store, directory, Dispatcher(store, sign=lambda a, t: "token"), conversations=conversations, **kw)
    hooks = Hooks()
    svc.attach_media(hooks)
    svc.gateways.register(LegKind.SIP, hooks)
    return svc, hooks


@pytest.fixture
def setup() -> Setup:
    store = MemoryStore()
    directory = Directory(store)
    tenant = directory.create_tenant("t")
    alice, _ = directory.create_app(tenant.id, "alice", permissions=ROLES, callback_url="http://127.0.0.1:9/a")
    bob, _ = directory.create_app(tenant.id, "bob", permissions=ROLES, callback_url="http://127.0.0.1:9/b")
    conversations = FaultyConversations(store)
    svc, hooks = _service(store, directory, conversations)
    return svc, conversations, hooks, Caller(tenant.id, alice.id, ROLES), Caller(tenant.id, bob.id, ROLES)


async def _create(svc: CallService, caller: Caller, callee_app: str) -> dict[str, Any]:
    body = {
        "callbackUri": "http://127.0.0.1:9/a",
        "targets": [app_target(callee_app)],
        "requestedModalities": ["audio"],
        "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
    }
    return await svc.create(caller, wire.create_call(body))


async def _answer(svc: CallService, caller: Caller, call_id: str) -> None:
    body = {
        "acceptedModalities": ["audio"],
        "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
    }
    await svc.answer(caller, call_id, wire.answer(body))


async def _stored(conversations: MemoryConversationStore) -> dict[str, str]:
    legs: dict[str, str] = {}
    for conv_id in await conversations.live():
        loaded = await conversations.load(conv_id)
        assert loaded is not None
        legs.update({leg["id"]: leg["state"] for leg in loaded.doc["legs"]})
    return legs


def _gate(conversations: MemoryConversationStore, gate: asyncio.Event) -> None:
    """Hold every commit (its version check included) until `gate` is set: writers load before any writes."""
    commit = conversations.commit

    def held(*args: Any, **kwargs: Any) -> Awaitable[int]:
        async def later() -> int:
            await gate.wait()
            return await commit(*args, **kwargs)

        return asyncio.ensure_future(later())

    conversations.commit = held  # type: ignore[method-assign]


async def test_failed_create_leaves_no_call(setup: Setup) -> None:
    svc, conversations, hooks, alice, bob = setup
    conversations.full = True
    with pytest.raises(StoreUnavailable):
        await _create(svc, alice, bob.app_id)
    assert svc.calls == {} and svc.active_conversations == 0 and await _stored(conversations) == {}
    assert svc.store.outbox_load() == [] and hooks.events == []
    assert svc.faults == 1
    conversations.full = False
    await _create(svc, alice, bob.app_id)
    assert len(svc.calls) == 2 and len(await _stored(conversations)) == 2
    written = svc.store.outbox_load()  # bob's `created` (and alice's `establishing`), written with the conversation
    assert written and {e.order_key for e in written} <= set(svc.calls)


async def test_failed_answer_leaves_state_and_connects_no_media(setup: Setup) -> None:
    svc, conversations, hooks, alice, bob = setup
    await _create(svc, alice, bob.app_id)
    before = await _stored(conversations)
    incoming = next(c for c in svc.calls.values() if c.app_id == bob.app_id)
    conversations.full = True
    with pytest.raises(StoreUnavailable):
        await _answer(svc, bob, incoming.id)
    assert {c.id: c.state.value for c in svc.calls.values()} == before
    assert hooks.events == []  # the engine never heard of the legs
    conversations.full = False
    await _answer(svc, bob, incoming.id)
    assert sorted(e for e, _ in hooks.events) == ["connected", "connected"]
    assert set((await _stored(conversations)).values()) == {"established"}


async def test_failed_hang_up_keeps_the_call_and_its_media(setup: Setup) -> None:
    svc, conversations, hooks, alice, bob = setup
    created = await _create(svc, alice, bob.app_id)
    incoming = next(c for c in svc.calls.values() if c.app_id == bob.app_id)
    await _answer(svc, bob, incoming.id)
    hooks.events.clear()
    conversations.full = True
    with pytest.raises(StoreUnavailable):
        await svc.hang_up(alice, created["id"])
    assert len(svc.calls) == 2 and set((await _stored(conversations)).values()) == {"established"}
    assert all(c.state.value == "established" for c in svc.calls.values())
    assert hooks.events == []  # media is freed after the commit only: nothing to undo
    conversations.full = False
    await svc.hang_up(alice, created["id"])
    assert svc.calls == {} and await _stored(conversations) == {}
    assert sorted(e for e, _ in hooks.events if e != "connected") == ["ending", "ending"]
    # (the failed unit dropped the cached conversation: the reload asked media to join again, which it ignores)


async def test_timers_come_from_the_store_and_hold_off_after_a_fault(setup: Setup) -> None:
    svc, conversations, _, alice, bob = setup
    await _create(svc, alice, bob.app_id)
    due = svc.next_deadline()
    assert due is not None and await conversations.next_deadline() == due
    now = due + 1
    conversations.full = True
    await svc.fire_due(now)  # the ring timeout cannot commit: no exception, no busy loop
    assert len(svc.calls) == 2
    held = svc.next_deadline()
    assert held is not None and held >= now + svc.core.timers.fault_retry - 0.001
    conversations.full = False
    await svc.fire_due(now + 0.5)  # still held off
    assert len(svc.calls) == 2
    await svc.fire_due(held)
    assert svc.calls == {} and await _stored(conversations) == {}
    assert svc.next_deadline() is None and svc.armed_timers == 0


async def test_a_stale_writer_is_refused_and_its_command_reruns_on_the_stored_state(setup: Setup) -> None:
    """Two services (two nodes) on one store: the second answers behind the first's back, so the first's cached
    conversation is stale; its hang-up is refused at commit, reloaded and applied to the answered call."""
    svc, conversations, _, alice, bob = setup
    other, _ = _service(svc.store, svc.directory, conversations)
    created = await _create(svc, alice, bob.app_id)
    incoming = next(c for c in svc.calls.values() if c.app_id == bob.app_id)
    await _answer(other, bob, incoming.id)  # `other` loads it from the store and commits version 2
    assert svc.leg(created["id"]).state.value == "establishing"  # type: ignore[union-attr]  # svc's view is old
    await svc.hang_up(alice, created["id"])
    assert svc.core.ledger.stale == 1  # refused once, rerun on version 2
    assert await _stored(conversations) == {}
    deleted = [e for e in svc.store.outbox_load() if b'"changeType":"deleted"' in e.body]
    assert {e.order_key for e in deleted} == {created["id"], incoming.id}  # each notified once, no lost update


async def test_a_stale_writer_without_retries_gets_a_conflict(setup: Setup) -> None:
    svc, conversations, _, alice, bob = setup
    strict, _ = _service(svc.store, svc.directory, conversations, retries=0)
    created = await _create(strict, alice, bob.app_id)
    incoming = next(c for c in strict.calls.values() if c.app_id == bob.app_id)
    await _answer(svc, bob, incoming.id)
    with pytest.raises(StaleVersion) as refused:
        await strict.hang_up(alice, created["id"])
    assert refused.value.status == 409
    assert set((await _stored(conversations)).values()) == {"established"}  # nothing of the stale write landed
    await strict.hang_up(alice, created["id"])  # the refusal dropped the stale copy: this one reloads
    assert await _stored(conversations) == {}


async def test_concurrent_creators_of_one_meeting_both_land_in_it(setup: Setup) -> None:
    """`execute(create=...)` on two nodes at once: the second creator's write is stale, and its command reruns on
    the conversation the first one stored."""
    svc, conversations, _, alice, bob = setup
    other, _ = _service(svc.store, svc.directory, conversations)
    gate = asyncio.Event()
    _gate(conversations, gate)
    meeting = "0f0e0d0c-0000-4000-8000-000000000001"
    create = (alice.tenant_id, ConversationKind.MEETING)

    def join(who: Caller) -> c.Join:
        identity = {"application": {"id": who.app_id}}
        source = {"@odata.type": "#microsoft.graph.participantInfo", "identity": identity}
        return c.Join(origin(LegKind.BOT, identity, source, [], app_id=who.app_id))

    first = asyncio.create_task(svc.execute(meeting, join(alice), create=create))
    second = asyncio.create_task(other.execute(meeting, join(bob), create=create))
    await asyncio.sleep(0.01)
    gate.set()
    await asyncio.gather(first, second)
    stored = await conversations.load(meeting)  # a node's cached copy may be behind: the store has both
    assert stored is not None and stored.version == 2 and stored.doc["kind"] == ConversationKind.MEETING.value
    assert sorted(leg["app_id"] for leg in stored.doc["legs"]) == sorted([alice.app_id, bob.app_id])
    assert svc.core.ledger.stale + other.core.ledger.stale == 1


class Phones(Hooks):
    """A SIP gateway that reaches phones and says whether this process holds a leg's signalling."""

    def __init__(self, held: bool) -> None:
        super().__init__()
        self.held = held

    def reachable(self, tenant_id: str, identity: Any) -> bool:
        return "phone" in identity

    def holds(self, leg_id: str) -> bool:
        return self.held


async def test_a_conversation_loaded_after_a_restart_rejoins_media_and_ends_legs_nobody_holds(setup: Setup) -> None:
    svc, conversations, _, alice, _ = setup
    svc.gateways.register(LegKind.SIP, Phones(held=True))
    phone = {"@odata.type": "#microsoft.graph.invitationParticipantInfo", "identity": {"phone": {"id": "+15550100"}}}
    hosted = {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}
    body = {"callbackUri": "http://127.0.0.1:9/a", "targets": [phone], "mediaConfig": hosted}
    created = await svc.create(alice, wire.create_call(body))
    external = next(c for c in svc.calls.values() if c.is_external)
    await svc.external_answered(external.id)
    assert set((await _stored(conversations)).values()) == {"established"}

    restarted, hooks = _service(svc.store, svc.directory, conversations)  # a new process: nothing in memory
    gateway = Phones(held=False)
    restarted.gateways.register(LegKind.SIP, gateway)
    assert restarted.calls == {} and restarted.next_deadline() is None
    await restarted.start()
    assert restarted.next_deadline() is not None  # alice's keepAlive deadline, from the store's index
    call = await restarted.get(alice, created["id"])  # loaded on demand
    assert call.state.value == "established"
    assert ("connected", created["id"]) in hooks.events  # its media joins the engine again
    await asyncio.sleep(0.01)  # the phone's leg is ended (a task of the service): its signalling died with the process
    assert ("ending", external.id) in gateway.events and await _stored(conversations) == {}
    await restarted.aclose()
