"""The Conversation aggregate behind the async ledger, through the node's `Core`: loaded on demand, indexed by leg
and timer, fenced; two cores on one store are two nodes."""

from __future__ import annotations

import pytest

from opencomms.calling.core import Core
from opencomms.directory import Directory
from opencomms.domain import commands as c
from opencomms.domain import events as ev
from opencomms.domain.errors import NotFound
from opencomms.domain.legs import LegKind, LegSpec
from opencomms.domain.rules import ConversationKind
from opencomms.store import MemoryStore, OutboxEntry
from opencomms.store.conversations import MemoryConversationStore, StaleVersion

NOW = 1000.0
NEW = ("t", ConversationKind.PEER_TO_PEER)


class Sink:
    def __init__(self) -> None:
        self.released: list[OutboxEntry] = []

    def release(self, entries: list[OutboxEntry]) -> None:
        self.released.extend(entries)


def node(store: MemoryConversationStore, *, retries: int = 3) -> Core:
    return Core(store, Directory(MemoryStore()), Sink(), clock=lambda: NOW, retries=retries)


def spec(leg_id: str, app: str) -> LegSpec:
    identity = {"application": {"id": app}}
    attrs = {"callback_uri": f"https://{app}.example/cb"}
    return LegSpec(
        leg_id, LegKind.BOT, f"p-{leg_id}", "1", identity, source={"identity": identity}, app_id=app, attrs=attrs
    )


async def placed(store: MemoryConversationStore) -> list[ev.Event]:
    create = c.Create(spec("a", "alice"), (c.Invitation(spec("b", "bob")),))
    return await node(store).run("conv", create, NOW, new=NEW)


async def test_a_created_conversation_is_found_by_leg_and_timer_on_another_node() -> None:
    store = MemoryConversationStore()
    events = await placed(store)
    assert any(isinstance(e, ev.LegRinging) and e.leg_id == "b" for e in events)
    other = node(store)  # another node: nothing in memory, loaded on demand
    assert await other.conversation_of("b") == "conv"
    assert await store.due(NOW + 15) == [("conv", NOW + 15)]  # bob's answer window
    events = await other.run("conv", c.Answer("b"), NOW + 1)
    assert [e.leg_id for e in events if isinstance(e, ev.LegEstablished)] == ["a", "b"]
    conv = await other.get("conv")
    assert conv is not None and conv.version == 2
    assert other.views.by_leg.get("a") == "conv"  # the committed unit brought the node's views in step


async def test_a_stale_writer_is_refused_and_reruns_on_the_new_state() -> None:
    store = MemoryConversationStore()
    await placed(store)
    first, second = node(store), node(store, retries=0)
    await second.get("conv")  # the second node caches version 1
    await first.run("conv", c.Answer("b"), NOW + 1)  # version 2
    with pytest.raises(StaleVersion):
        await second.run("conv", c.HangUp("a"), NOW + 2)  # its copy still has bob ringing
    events = await second.run("conv", c.HangUp("a"), NOW + 2)  # reloaded: bob is established
    assert any(isinstance(e, ev.ConversationEnded) for e in events)
    assert await store.live() == [] and await store.find_leg("b") is None


async def test_a_second_creator_of_the_same_conversation_is_refused() -> None:
    store = MemoryConversationStore()
    late = node(store, retries=0)
    create = c.Create(spec("x", "alice"), (c.Invitation(spec("y", "bob")),))
    with pytest.raises(StaleVersion):
        async with late.ledger.unit("conv") as unit:  # loaded: no such conversation (version 0)
            await placed(store)  # meanwhile another node creates it
            late.unit(create, NOW, new=NEW)(unit)
    assert await store.find_leg("b") == "conv" and await store.find_leg("y") is None


async def test_a_report_about_a_conversation_that_is_gone_is_dropped_unless_missing_is_asked() -> None:
    store = MemoryConversationStore()
    core = node(store)
    assert await core.run("gone", c.Answer("b"), NOW) == []
    with pytest.raises(NotFound):
        await core.run("gone", c.Answer("b"), NOW, missing=True)
