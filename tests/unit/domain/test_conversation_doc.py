"""The stored form: JSON-able, a faithful round trip at every step of a call, and a version that counts the
commands applied (the ledger's fencing token)."""

from __future__ import annotations

import orjson

from opencomms.domain import commands as c
from opencomms.domain.conversation import Conversation
from opencomms.domain.legs import LegKind
from opencomms.domain.rules import ConversationKind
from tests.unit.domain.conversation_kit import TIMEOUTS, Run, ring, spec


def roundtrip(conv: Conversation) -> Conversation:
    return Conversation.from_doc(orjson.loads(orjson.dumps(conv.to_doc())), timeouts=TIMEOUTS)


def test_round_trip_at_every_step_and_the_reloaded_copy_behaves_the_same() -> None:
    steps: list[c.Command] = [
        c.Create(spec("phone", LegKind.SIP), (ring("bob"),)),
        c.Answer("bob", {"media_config": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}}),
        c.Mute("bob"),
        c.StartTransfer("bob", {}, invitation=ring("carol")),
        c.Reject("carol", "busy"),
        c.KeepAlive("bob"),
        c.FireTimers(),
        c.HangUp("bob"),
    ]
    run = Run()
    for i, command in enumerate(steps):
        copy = roundtrip(run.conv)
        assert copy.to_doc() == run.conv.to_doc()
        now = run.now + i
        assert copy.apply(command, now) == run.do(command, at=now)
        assert copy.to_doc() == run.conv.to_doc()
        assert run.conv.version == i + 1


def test_a_meeting_round_trips_with_its_roster_sequence() -> None:
    run = Run(ConversationKind.MEETING)
    run.do(c.Join(spec("bot")))
    run.do(c.Join(spec("ann", LegKind.SIP)))
    run.do(c.Mute("bot"))
    copy = roundtrip(run.conv)
    assert copy.roster.sequence == 3 and copy.roster.entries() == run.conv.roster.entries()
    assert copy.kind is ConversationKind.MEETING and copy.version == 3


def test_the_version_counts_applied_commands_only() -> None:
    run = Run()
    run.do(c.Create(spec("alice"), (ring("bob"),)))
    assert run.conv.version == 1
    run.do(c.ConnectLeg("bob"))  # stale: bob is a bot's leg
    assert run.conv.version == 1
    run.do(c.Answer("bob"))
    assert run.conv.version == 2
    doc = run.conv.to_doc()
    assert doc["version"] == 2 and doc["format"] == 1
