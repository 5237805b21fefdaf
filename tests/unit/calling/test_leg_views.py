"""LegViews: the node's views of live legs, kept in step with commits; a conversation's end drops exactly its
legs (through the per-conversation index, without looking at every other live leg)."""

from __future__ import annotations

from opencomms.calling.views import LegViews
from opencomms.domain import commands as c
from opencomms.domain.conversation import Conversation
from opencomms.domain.legs import LegKind
from opencomms.domain.rules import ConversationKind
from tests.unit.domain.conversation_kit import TIMEOUTS, ring, spec


def started(conv_id: str, caller: str, callee: str) -> tuple[Conversation, list[object]]:
    conv = Conversation(conv_id, "tenant-1", ConversationKind.PEER_TO_PEER, timeouts=TIMEOUTS)
    events = list(conv.apply(c.Create(spec(caller, LegKind.SIP), (ring(callee),)), 1000.0))
    return conv, events


def test_a_conversation_that_ends_drops_its_legs_and_only_them() -> None:
    views = LegViews()
    a, a_events = started("conv-a", "alice", "bob")
    b, b_events = started("conv-b", "carol", "dave")
    views.sync("conv-a", a, a_events)
    views.sync("conv-b", b, b_events)
    assert set(views.calls) == {"alice", "bob", "carol", "dave"}
    assert views.conversation_of("bob") == "conv-a" and views.by_conv["conv-a"] == {"alice", "bob"}

    views.sync("conv-a", None, [])  # conv-a committed as deleted
    assert set(views.calls) == {"carol", "dave"} and set(views.by_leg) == {"carol", "dave"}
    assert "conv-a" not in views.by_conv and views.by_conv["conv-b"] == {"carol", "dave"}

    views.sync("conv-b", b)  # a reload of conv-b keeps its legs
    assert set(views.calls) == {"carol", "dave"}
    views.sync("conv-b", None)
    assert views.calls == {} and views.by_leg == {} and views.by_conv == {}
