"""The Conversation aggregate behind the async ledger: loaded on demand, indexed by leg and timer, fenced."""

from __future__ import annotations

import pytest

from opencomms.calling.ledger import as_unit, conversation_ledger
from opencomms.domain import commands as c
from opencomms.domain import events as ev
from opencomms.domain.legs import LegKind, LegSpec
from opencomms.domain.rules import ConversationKind
from opencomms.store.conversations import MemoryConversationStore, StaleVersion

NOW = 1000.0


def spec(leg_id: str, app: str) -> LegSpec:
    identity = {"application": {"id": app}}
    return LegSpec(leg_id, LegKind.BOT, f"p-{leg_id}", "1", identity, source={"identity": identity}, app_id=app)


async def placed(store: MemoryConversationStore) -> list[ev.Event]:
    ledger = conversation_ledger(store)
    create = c.Create(spec("a", "alice"), (c.Invitation(spec("b", "bob")),))
    return await ledger.apply("conv", as_unit(create, NOW, new=("conv", "t", ConversationKind.PEER_TO_PEER)))


async def test_a_created_conversation_is_found_by_leg_and_timer_on_another_ledger() -> None:
    store = MemoryConversationStore()
    events = await placed(store)
    assert any(isinstance(e, ev.LegRinging) and e.leg_id == "b" for e in events)
    other = conversation_ledger(store)  # another node: nothing in memory, loaded on demand
    assert await other.find_leg("b") == "conv"
    assert await store.due(NOW + 15) == [("conv", NOW + 15)]  # bob's answer window
    events = await other.apply("conv", as_unit(c.Answer("b"), NOW + 1))
    assert [e.leg_id for e in events if isinstance(e, ev.LegEstablished)] == ["a", "b"]
    conv = await other.get("conv")
    assert conv is not None and conv.version == 2


async def test_a_stale_writer_is_refused_and_reruns_on_the_new_state() -> None:
    store = MemoryConversationStore()
    await placed(store)
    first, second = conversation_ledger(store), conversation_ledger(store, retries=0)
    await second.get("conv")  # the second node caches version 1
    await first.apply("conv", as_unit(c.Answer("b"), NOW + 1))  # version 2
    with pytest.raises(StaleVersion):
        await second.apply("conv", as_unit(c.HangUp("a"), NOW + 2))  # its copy still has bob ringing
    events = await second.apply("conv", as_unit(c.HangUp("a"), NOW + 2))  # reloaded: bob is established
    assert any(isinstance(e, ev.ConversationEnded) for e in events)
    assert await store.live() == [] and await store.find_leg("b") is None


async def test_a_second_creator_of_the_same_conversation_is_refused() -> None:
    store = MemoryConversationStore()
    late = conversation_ledger(store, retries=0)
    create = c.Create(spec("x", "alice"), (c.Invitation(spec("y", "bob")),))
    with pytest.raises(StaleVersion):
        async with late.unit("conv") as unit:  # loaded: no such conversation (version 0)
            await placed(store)  # meanwhile another node creates it
            as_unit(create, NOW, new=("conv", "t", ConversationKind.PEER_TO_PEER))(unit)
    assert await store.find_leg("b") == "conv" and await store.find_leg("y") is None
