"""Random command sequences: a command either applies (the version moves on by one) or raises a typed error and
changes nothing, and the stored form always round-trips. Seeded, so a failure replays."""

from __future__ import annotations

import random

import orjson
import pytest

from opencomms.domain import commands as c
from opencomms.domain import results
from opencomms.domain.conversation import Conversation
from opencomms.domain.errors import OpenCommsError
from opencomms.domain.legs import LegKind
from opencomms.domain.rules import ConversationKind, ConversationState
from tests.unit.domain.conversation_kit import TIMEOUTS, ring, spec

NAMES = ["a", "b", "c", "d", "e"]


def random_command(rng: random.Random, fresh: str, legs: list[str]) -> c.Command:
    name = rng.choice(legs) if legs and rng.random() < 0.9 else rng.choice(NAMES)
    other = rng.choice(legs) if legs and rng.random() < 0.9 else rng.choice(NAMES)
    kind = rng.choice([LegKind.BOT, LegKind.SIP])
    return rng.choice(
        [
            c.Join(spec(fresh, kind)),
            c.Invite(name, (ring(fresh, kind),)),
            c.Answer(name),
            c.Reject(name, "busy"),
            c.Redirect(name, (ring(fresh, kind),)),
            c.StartTransfer(name, {}, transferee_participant_id=f"p-{other}", invitation=ring(fresh, kind)),
            c.StartTransfer(name, {}, invitation=ring(fresh, kind)),
            c.Answer(name),
            c.ConnectLeg(name),
            c.StartTransfer(name, {}, by_refer=True),
            c.HangUp(name),
            c.KeepAlive(name),
            c.Mute(name, rng.random() < 0.5),
            c.ConnectLeg(name),
            c.EndLeg(name, results.PSTN_HUNG_UP),
            c.FailMedia(name, results.MEDIA_STREAM_FAILED),
            c.AcceptTransfer(name),
            c.CompleteTransfer(name),
            c.FailTransfer(name, results.TRANSFER_FAILED),
            c.FireTimers(),
        ]
    )


@pytest.mark.parametrize("kind", list(ConversationKind))
@pytest.mark.parametrize("seed", range(40))
def test_commands_apply_whole_or_not_at_all(kind: ConversationKind, seed: int) -> None:
    rng = random.Random(seed)
    conv = Conversation("conv", "tenant", kind, timeouts=TIMEOUTS)
    now = 0.0
    if kind is ConversationKind.MEETING:
        conv.apply(c.Join(spec("a")), now)
    else:
        conv.apply(c.Create(spec("a"), (ring("b"), ring("c", LegKind.SIP))), now)
    for step in range(60):
        if conv.state is ConversationState.ENDED:
            break
        now += rng.choice([0.0, 0.0, 1.0, 5.0, 20.0, 61.0, 3000.0])
        fresh = rng.choice(NAMES) if rng.random() < 0.2 else f"n{step}"
        command = random_command(rng, fresh, list(conv.legs))
        before = conv.to_doc()
        try:
            conv.apply(command, now)
        except OpenCommsError:
            assert conv.to_doc() == before, command
            continue
        doc = conv.to_doc()
        assert doc["version"] in (before["version"], before["version"] + 1)
        assert Conversation.from_doc(orjson.loads(orjson.dumps(doc)), timeouts=TIMEOUTS).to_doc() == doc
        assert len(conv.roster) == sum(1 for leg in conv.legs.values() if leg.connected and leg.live)
