"""Meeting notifications on the async ledger: rosters and finished operations are projected inside the command's
unit of work and written with it. A write that fails sends no roster; a unit rerun after a stale write sends its
roster once, so each listener sees every `rosterSequenceNumber` once and in order; hold music's operation ends
with its `deleted` notification in the same write."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import orjson
import pytest

from opencomms.calling.service import CallService
from opencomms.directory import Directory
from opencomms.domain import commands as c
from opencomms.domain.legs import LegKind, LegSpec
from opencomms.domain.rules import ConversationKind
from opencomms.notify.dispatcher import Dispatcher
from opencomms.store import MemoryStore, StoreUnavailable
from opencomms.store.conversations import MemoryConversationStore

MEETING = "0f0e0d0c-0000-4000-8000-0000000000aa"
CREATE = ("t1", ConversationKind.MEETING)


class Conversations(MemoryConversationStore):
    """Commits fail while `full`; held until `gate` is set while one is given."""

    def __init__(self, outbox: MemoryStore) -> None:
        super().__init__(outbox)
        self.full = False
        self.gate: asyncio.Event | None = None

    def commit(self, *args: Any, **kwargs: Any) -> Awaitable[int]:
        if self.full:
            fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            fut.set_exception(StoreUnavailable("store test.db is full (no space left)", reason="full"))
            return fut
        gate, commit = self.gate, super().commit
        if gate is None:
            return commit(*args, **kwargs)

        async def later() -> int:
            await gate.wait()
            return await commit(*args, **kwargs)

        return asyncio.ensure_future(later())


def bot(name: str) -> c.Join:
    attrs = {"callback_uri": f"http://127.0.0.1:9/{name}", "call_options": {"isDeltaRosterEnabled": True}}
    identity = {"application": {"id": f"app-{name}"}}
    return c.Join(LegSpec(name, LegKind.BOT, f"p-{name}", "1", identity, app_id=f"app-{name}", attrs=attrs))


def node(store: MemoryStore, conversations: Conversations) -> CallService:
    return CallService(store, Directory(store), Dispatcher(store, sign=lambda a, t: "t"), conversations=conversations)


def rosters(store: MemoryStore, leg: str) -> list[list[dict[str, Any]]]:
    """The roster notifications written for leg `leg`, in outbox order (their resourceData)."""
    out = []
    for entry in store.outbox_load():
        value = orjson.loads(entry.body)["value"][0]
        if entry.order_key == leg and value["resourceUrl"].endswith("/participants"):
            out.append(value["resourceData"])
    return out


@pytest.fixture
def setup() -> tuple[MemoryStore, Conversations, CallService]:
    store = MemoryStore()
    conversations = Conversations(store)
    return store, conversations, node(store, conversations)


async def test_a_roster_is_written_with_its_join_or_not_at_all(setup: tuple) -> None:
    store, conversations, svc = setup
    await svc.execute(MEETING, bot("host"), create=CREATE)
    assert [[e["id"] for e in r] for r in rosters(store, "host")] == [["p-host"]]  # its first: the whole roster
    conversations.full = True
    with pytest.raises(StoreUnavailable):
        await svc.execute(MEETING, bot("late"), create=CREATE)
    assert len(rosters(store, "host")) == 1 and rosters(store, "late") == []
    conversations.full = False
    await svc.execute(MEETING, bot("late"), create=CREATE)
    assert [[e["id"] for e in r] for r in rosters(store, "host")][1:] == [["p-late"]]  # the change only (delta)


async def test_a_rerun_after_a_stale_write_sends_each_roster_change_once_in_sequence(setup: tuple) -> None:
    store, conversations, svc = setup
    other = node(store, conversations)  # a second node on the same store
    await svc.execute(MEETING, bot("host"), create=CREATE)
    await other.conversation(MEETING)  # both nodes hold version 1
    conversations.gate = gate = asyncio.Event()
    first = asyncio.create_task(svc.execute(MEETING, bot("b1"), create=CREATE))
    second = asyncio.create_task(other.execute(MEETING, bot("b2"), create=CREATE))
    await asyncio.sleep(0.01)
    gate.set()
    await asyncio.gather(first, second)
    assert svc.core.ledger.stale + other.core.ledger.stale == 1
    seen = [e["rosterSequenceNumber"] for r in rosters(store, "host")[1:] for e in r]
    assert seen == sorted(set(seen)) and len(seen) == 2  # no change twice, none lost, in order


async def test_hold_music_ends_its_operation_with_a_deleted_notification(setup: tuple) -> None:
    store, _, svc = setup
    await svc.execute(MEETING, bot("host"), create=CREATE)
    await svc.execute(MEETING, bot("guest"), create=CREATE)
    operation = {"id": "op-1", "status": "completed"}
    await svc.execute(MEETING, c.HoldMusic("host", "p-guest", True, operation))
    done = [orjson.loads(e.body)["value"][0] for e in store.outbox_load() if b"/operations/op-1" in e.body]
    assert len(done) == 1 and done[0]["changeType"] == "deleted" and done[0]["resourceData"]["status"] == "completed"
    assert done[0]["resourceUrl"] == "/communications/calls/host/operations/op-1"
