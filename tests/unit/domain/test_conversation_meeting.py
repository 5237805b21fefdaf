"""Meetings: legs join and leave, a bot may wait alone, the roster changes once per change with a sequence
number, and a join costs a constant number of events however many are in the meeting (O(N) for the node, where
a roster sent to every leg by the model itself would be O(N^2))."""

from __future__ import annotations

import pytest

from opencomms.domain import commands as c
from opencomms.domain import events as ev
from opencomms.domain import results
from opencomms.domain.calls import CallState
from opencomms.domain.errors import InvalidState
from opencomms.domain.legs import LegKind
from opencomms.domain.rules import ConversationKind, ConversationState
from tests.unit.domain.conversation_kit import Run, code, ring, spec

M = ConversationKind.MEETING


def test_a_bot_joins_alone_and_waits() -> None:
    run = Run(M)
    out = run.do(c.Join(spec("bot")))
    assert [type(e) for e in out] == [ev.MediaConfigured, ev.LegEstablishing, ev.LegEstablished, ev.ParticipantJoined]
    assert run.conv.leg("bot").state is CallState.ESTABLISHED and run.conv.state is ConversationState.ACTIVE
    run.do(c.Join(spec("phone", LegKind.SIP)))
    run.do(c.EndLeg("phone", results.PSTN_HUNG_UP))
    assert run.conv.leg("bot").state is CallState.ESTABLISHED  # left alone, it stays
    assert run.do(c.FireTimers(), at=run.now + 2699) == []
    run.do(c.HangUp("bot"))
    assert code(run.ended("bot")) == (200, 5001)
    assert isinstance(run.events[-1], ev.ConversationEnded)


def test_roster_sequence_numbers_count_every_change_once() -> None:
    run = Run(M)
    run.do(c.Join(spec("bot")))
    run.do(c.Join(spec("ann", LegKind.SIP)))
    run.do(c.Mute("bot"))
    run.do(c.Mute("bot"))  # no change, no roster change
    run.do(c.EndLeg("ann", results.PSTN_HUNG_UP))
    changes = [
        (type(e).__name__, e.participant.id, e.sequence)
        for e in run.events
        if isinstance(e, ev.ParticipantJoined | ev.ParticipantUpdated | ev.ParticipantLeft)
    ]
    assert changes == [
        ("ParticipantJoined", "p-bot", 1),
        ("ParticipantJoined", "p-ann", 2),
        ("ParticipantUpdated", "p-bot", 3),
        ("ParticipantLeft", "p-ann", 4),
    ]
    bot = run.conv.roster.get("p-bot")
    assert bot is not None and bot.muted and bot.sequence == 3
    wire = bot.to_wire(with_sequence=True)
    assert wire["isMuted"] is True and wire["rosterSequenceNumber"] == 3
    left = next(e for e in run.events if isinstance(e, ev.ParticipantLeft))
    assert left.participant.to_wire(removed="hungUp")["removedState"]["reason"] == "hungUp"


def test_a_join_costs_the_same_events_with_two_or_two_hundred_in_the_meeting() -> None:
    def join_events(already: int) -> list[type]:
        run = Run(M)
        for i in range(already):
            run.do(c.Join(spec(f"p{i}", LegKind.SIP)))
        return [type(e) for e in run.do(c.Join(spec("late", LegKind.SIP)))]

    assert join_events(2) == join_events(200) == [ev.LegEstablishing, ev.LegEstablished, ev.ParticipantJoined]


def test_server_mute_of_another_participant_in_a_meeting() -> None:
    run = Run(M)
    run.do(c.Join(spec("bot")))
    run.do(c.Join(spec("ann", LegKind.SIP)))
    out = run.do(c.Mute("bot", participant_id="p-ann"))
    assert [(type(e).__name__, getattr(e, "leg_id", None)) for e in out] == [
        ("LegMuted", "ann"),
        ("ParticipantUpdated", None),
    ]
    assert run.conv.leg("ann").muted and not run.conv.leg("bot").muted


def test_invite_rings_into_the_meeting_and_a_failed_target_is_reported() -> None:
    run = Run(M)
    run.do(c.Join(spec("bot")))
    out = run.do(c.Invite("bot", (ring("ann", LegKind.SIP), c.Invitation(failure=results.CALLEE_OVER_QUOTA))))
    assert [type(e) for e in out] == [ev.LegRinging, ev.InvitationFailed]
    run.do(c.ConnectLeg("ann"))
    assert run.conv.leg("ann").state is CallState.ESTABLISHED
    assert [p.id for p in run.conv.participants_for("bot")] == ["p-bot", "p-ann"]


def test_an_invitation_keeps_ringing_after_the_inviter_left_and_times_out() -> None:
    run = Run(M)
    run.do(c.Join(spec("bot")))
    run.do(c.Invite("bot", (ring("ann", LegKind.SIP),)))
    run.do(c.HangUp("bot"))
    assert run.conv.leg("ann").state is CallState.INCOMING
    run.do(c.FireTimers(), at=run.now + 60)
    assert code(run.ended("ann")) == (408, 1106)
    assert run.conv.state is ConversationState.ENDED


def test_ending_the_meeting_ends_every_leg() -> None:
    run = Run(M)
    for name in ("bot", "ann", "bob"):
        run.do(c.Join(spec(name, LegKind.BOT if name == "bot" else LegKind.SIP)))
    run.do(c.EndConversation(results.ENDED_BY_DELETE))
    assert {e.leg_id for e in run.events if isinstance(e, ev.LegEnded)} == {"bot", "ann", "bob"}
    assert len(run.conv.roster) == 0 and run.conv.state is ConversationState.ENDED


def test_a_gateway_participant_mutes_itself_and_a_bot_cannot_use_that_command() -> None:
    run = Run(M)
    run.do(c.Join(spec("bot")))
    run.do(c.Join(spec("web", LegKind.SIP)))
    out = run.do(c.MuteSelf("web", True))  # a browser's mute button
    assert [type(e) for e in out] == [ev.LegMuted, ev.ParticipantUpdated]
    entry = run.conv.roster.get("p-web")
    assert entry is not None and entry.muted and not entry.server_muted
    assert run.do(c.MuteSelf("web", True)) == []  # no change
    run.do(c.MuteSelf("web", False))
    entry = run.conv.roster.get("p-web")
    assert entry is not None and not entry.muted
    with pytest.raises(InvalidState):
        run.do(c.MuteSelf("bot", True))  # a bot mutes itself over REST (c.Mute)
