"""A unit of work whose commit fails leaves no trace: no phantom calls, no media or gateway side effects."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from opencomms.calling.model import Call
from opencomms.calling.service import Caller, CallService
from opencomms.directory import Directory
from opencomms.domain.legs import LegKind
from opencomms.domain.results import ResultInfo
from opencomms.notify.dispatcher import Dispatcher
from opencomms.store import MemoryStore, StoreUnavailable
from opencomms.testing.harness import app_target
from opencomms.wire import calls as wire

ROLES = frozenset({"Calls.Initiate.All", "Calls.AccessMedia.All", "Calls.InitiateGroupCall.All"})


class FaultyStore(MemoryStore):
    """A memory store whose commits fail (like SQLite with a full disk) while `full` is set. Unit tests only."""

    def __init__(self) -> None:
        super().__init__()
        self.full = False

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with super().transaction():
            yield
            if self.full and self._depth == 1:
                raise StoreUnavailable("store test.db is full (no space left)", reason="full")


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


@pytest.fixture
def setup() -> tuple[CallService, FaultyStore, Hooks, Caller, Caller]:
    store = FaultyStore()
    directory = Directory(store)
    tenant = directory.create_tenant("t")
    alice, _ = directory.create_app(tenant.id, "alice", permissions=ROLES, callback_url="http://127.0.0.1:9/a")
    bob, _ = directory.create_app(tenant.id, "bob", permissions=ROLES, callback_url="http://127.0.0.1:9/b")
    svc = CallService(store, directory, Dispatcher(store, sign=lambda a, t: "token"))
    hooks = Hooks()
    svc.attach_media(hooks)
    svc.gateways.register(LegKind.SIP, hooks)
    return svc, store, hooks, Caller(tenant.id, alice.id, ROLES), Caller(tenant.id, bob.id, ROLES)


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


def _stored(store: MemoryStore) -> dict[str, str]:
    return {leg["id"]: leg["state"] for _, doc in store.scan("conversation") for leg in doc["legs"]}


async def test_failed_create_leaves_no_call(setup: Any) -> None:
    svc, store, _, alice, bob = setup
    store.full = True
    with pytest.raises(StoreUnavailable):
        await _create(svc, alice, bob.app_id)
    assert svc.calls == {} and svc.active_conversations == 0 and _stored(store) == {}
    assert store.outbox_load() == []
    assert svc.units.faults == 1
    store.full = False
    await _create(svc, alice, bob.app_id)
    assert len(svc.calls) == 2 and len(_stored(store)) == 2


async def test_failed_answer_rolls_back_state_and_connects_no_media(setup: Any) -> None:
    svc, store, hooks, alice, bob = setup
    await _create(svc, alice, bob.app_id)
    before = _stored(store)
    incoming = next(c for c in svc.calls.values() if c.app_id == bob.app_id)
    store.full = True
    with pytest.raises(StoreUnavailable):
        await _answer(svc, bob, incoming.id)
    assert {c.id: c.state.value for c in svc.calls.values()} == before
    assert hooks.events == []  # the engine never heard of the legs
    store.full = False
    await _answer(svc, bob, incoming.id)
    assert sorted(e for e, _ in hooks.events) == ["connected", "connected"]
    assert set(_stored(store).values()) == {"established"}


async def test_failed_hang_up_keeps_the_call_and_its_media(setup: Any) -> None:
    svc, store, hooks, alice, bob = setup
    created = await _create(svc, alice, bob.app_id)
    incoming = next(c for c in svc.calls.values() if c.app_id == bob.app_id)
    await _answer(svc, bob, incoming.id)
    hooks.events.clear()
    store.full = True
    with pytest.raises(StoreUnavailable):
        await svc.hang_up(alice, created["id"])
    assert len(svc.calls) == 2 and set(_stored(store).values()) == {"established"}
    assert all(c.state.value == "established" for c in svc.calls.values())
    ended = {cid for e, cid in hooks.events if e == "ending"}
    reconnected = {cid for e, cid in hooks.events if e == "connected"}
    assert ended and ended == reconnected  # media taken down in the unit came back with the rollback
    store.full = False
    await svc.hang_up(alice, created["id"])
    assert svc.calls == {} and _stored(store) == {}


async def test_timers_hold_off_after_a_fault(setup: Any) -> None:
    svc, store, _, alice, bob = setup
    await _create(svc, alice, bob.app_id)
    due = svc.next_deadline()
    assert due is not None
    now = due + 1
    store.full = True
    svc.fire_due(now)  # the ring timeout cannot commit: no exception, no busy loop
    assert len(svc.calls) == 2
    held = svc.next_deadline()
    assert held is not None and held >= now + svc.units.fault_retry - 0.001
    store.full = False
    svc.fire_due(now + 0.5)  # still held off
    assert len(svc.calls) == 2
    svc.fire_due(held)
    assert svc.calls == {} and _stored(store) == {}
