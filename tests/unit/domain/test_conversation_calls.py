"""Peer-to-peer and group calls as command sequences, mirroring the calls slice's integration tests
(tests/integration/test_bot_to_bot.py, gateway/test_sip_*.py) without HTTP: the same states, the same resultInfo
codes, the same endings of a leg left alone."""

from __future__ import annotations

import pytest

from opencomms.domain import commands as c
from opencomms.domain import events as ev
from opencomms.domain import results
from opencomms.domain.calls import CallState
from opencomms.domain.errors import InvalidState
from opencomms.domain.legs import LegKind
from opencomms.domain.rules import ConversationKind, ConversationState
from tests.unit.domain.conversation_kit import Run, code, ring, spec, unreachable

G = ConversationKind.GROUP


def placed(*callees: str, kind: ConversationKind = ConversationKind.PEER_TO_PEER) -> Run:
    run = Run(kind)
    run.do(c.Create(spec("alice"), tuple(ring(n) for n in callees)))
    return run


def answered() -> Run:
    run = placed("bob")
    run.do(c.Answer("bob"))
    return run


def test_call_answer_and_hang_up() -> None:
    run = answered()
    assert run.conv.leg("alice").state is CallState.ESTABLISHED
    assert run.conv.state is ConversationState.ACTIVE
    assert len(run.conv.participants_for("alice")) == 2
    run.do(c.HangUp("alice"))
    assert run.states("bob") == ["incoming", "establishing", "established", "terminated"]
    assert run.states("alice") == ["establishing", "established", "terminating", "terminated"]
    assert code(run.ended("alice")) == (200, 5001)
    assert code(run.ended("bob")) == (200, 4097)
    assert isinstance(run.events[-1], ev.ConversationEnded) and run.conv.state is ConversationState.ENDED
    assert run.conv.legs == {}


def test_participants_as_each_leg_sees_them() -> None:
    run = placed("bob")
    assert [p.id for p in run.conv.participants_for("bob")] == ["p-alice", "p-bob"]  # the caller is live
    run2 = placed("bob", "carol", kind=G)
    assert [p.id for p in run2.conv.participants_for("alice")] == ["p-alice"]  # ringing legs are not in it
    run2.do(c.Answer("bob"))
    assert [p.id for p in run2.conv.participants_for("carol")] == ["p-alice", "p-bob", "p-carol"]
    assert [p.sequence for p in run2.conv.participants_for("alice")] == [1, 2]


def test_far_side_hangs_up() -> None:
    run = answered()
    run.do(c.HangUp("bob"))
    assert code(run.ended("alice")) == (200, 4097)


def test_reject_busy_reaches_the_caller() -> None:
    run = placed("bob")
    run.do(c.Reject("bob", "busy"))
    assert run.ended("bob") == results.REJECTED_BY_BOT
    assert code(run.ended("alice")) == (486, 0)


def test_redirect_to_third_bot_is_forwarded() -> None:
    run = placed("bob")
    run.do(c.Redirect("bob", (ring("carol"),), timeout=20))
    assert run.ended("bob") == results.REDIRECTED
    carol = run.conv.leg("carol")
    assert carol.source["identity"] == {"application": {"id": "app-caller", "displayName": "caller"}}
    assert carol.answer_deadline == run.now + 20
    routed = [e for e in run.events if isinstance(e, ev.LegRouted)]
    assert [r.leg_id for r in routed] == ["alice"]
    assert routed[0].call_routes[0]["routingType"] == "forwarded"
    assert routed[0].call_routes[0]["final"] == carol.identity
    run.do(c.Answer("carol"))
    assert run.conv.leg("alice").state is CallState.ESTABLISHED


def test_redirect_to_several_rings_them_together_and_the_first_answer_wins() -> None:
    run = placed("bob")
    run.do(c.Redirect("bob", (ring("carol"), ring("dave"))))
    assert run.conv.leg("carol").answer_deadline == run.now + 60  # simultaneous ring default
    assert not [e for e in run.events if isinstance(e, ev.LegRouted)]
    run.do(c.Answer("dave"))
    assert run.ended("carol") == results.ANSWERED_ELSEWHERE
    assert run.conv.leg("alice").state is CallState.ESTABLISHED


def test_transfer_to_third_bot_completes_and_the_caller_talks_to_the_target() -> None:
    run = answered()
    run.do(c.StartTransfer("bob", {"identity": {"application": {"id": "app-carol"}}}, invitation=ring("carol")))
    started = next(e for e in run.events if isinstance(e, ev.TransferStarted))
    assert (started.transferee_id, started.mode, started.target_leg_id) == ("alice", ev.TransferMode.BRIDGE, "carol")
    carol = run.conv.leg("carol")
    assert carol.incoming_context is not None and carol.incoming_context["transferor"] == run.conv.leg("bob").identity
    assert carol.source["participantId"] == "p-alice"
    run.do(c.Answer("carol"))
    assert run.states("bob")[-3:] == ["transferring", "transferAccepted", "terminated"]
    assert code(run.ended("bob")) == (0, 7015)
    assert run.conv.leg("carol").state is CallState.ESTABLISHED
    run.do(c.HangUp("carol"))
    assert code(run.ended("alice")) == (200, 4097)


def test_transfer_rejected_keeps_the_call() -> None:
    run = answered()
    run.do(c.StartTransfer("bob", {}, invitation=ring("carol")))
    run.do(c.Reject("carol"))
    back = [e for e in run.events if isinstance(e, ev.LegStateChanged) and e.result_info is not None]
    assert [(b.leg_id, b.state, code(b.result_info)) for b in back if b.result_info] == [
        ("bob", CallState.ESTABLISHED, (500, 7000))
    ]
    assert run.conv.leg("alice").state is CallState.ESTABLISHED and run.conv.transfer is None


def test_transfer_to_an_unreachable_target_fails_7700() -> None:
    run = answered()
    run.do(c.StartTransfer("bob", {}, invitation=ring("carol", LegKind.SIP)))
    run.do(c.EndLeg("carol", results.CALLEE_UNREACHABLE))
    assert [code(e.reason) for e in run.events if isinstance(e, ev.TransferFailed)] == [(500, 7700)]
    run2 = answered()
    run2.do(c.StartTransfer("bob", {}, invitation=unreachable(results.NO_CALLEE_ENDPOINTS)))
    assert [code(e.reason) for e in run2.events if isinstance(e, ev.TransferFailed)] == [(480, 10037)]
    assert run2.conv.leg("bob").state is CallState.ESTABLISHED


def test_transferee_hanging_up_stops_the_target_ringing() -> None:
    run = answered()
    run.do(c.StartTransfer("bob", {}, invitation=ring("carol")))
    run.do(c.HangUp("alice"))
    assert code(run.ended("carol")) == (200, 4097)
    assert code(run.ended("bob")) == (200, 4097)
    assert run.conv.state is ConversationState.ENDED


def test_group_call_roster_changes_once_per_change() -> None:
    run = placed("bob", "carol", kind=G)
    run.do(c.Answer("bob"))
    out = run.do(c.Answer("carol"))
    joined = [e for e in out if isinstance(e, ev.ParticipantJoined)]
    assert [j.participant.id for j in joined] == ["p-carol"]
    assert len(run.conv.roster) == 3 and run.conv.roster.sequence == 3
    out = run.do(c.HangUp("bob"))
    left = [e for e in out if isinstance(e, ev.ParticipantLeft)]
    assert [(e.participant.id, e.sequence) for e in left] == [("p-bob", 4)]
    assert len(run.conv.roster) == 2
    run.do(c.HangUp("carol"))
    assert code(run.ended("alice")) == (200, 5002)  # everyone else left


def test_unanswered_call_times_out() -> None:
    run = placed("bob")
    assert run.conv.next_deadline() == run.now + 15
    assert run.do(c.FireTimers(), at=run.now + 14.9) == []
    run.do(c.FireTimers(), at=run.now + 0.2)
    assert code(run.ended("bob")) == (408, 1106)
    assert code(run.ended("alice")) == (408, 10057)


def test_keepalive_lapse_ends_the_leg_and_its_peer() -> None:
    run = answered()
    start = run.now
    run.do(c.KeepAlive("alice"), at=start + 2000)
    assert run.conv.next_deadline() == start + 2700  # bob's, answered at start
    run.do(c.FireTimers(), at=start + 2700)
    assert code(run.ended("bob")) == (408, 8537)
    assert code(run.ended("alice")) == (200, 4097)


def test_call_to_unknown_targets_fails_with_the_route_failure() -> None:
    run = Run()
    run.do(c.Create(spec("alice"), (unreachable(results.NO_CALLEE_ENDPOINTS),)))
    assert code(run.ended("alice")) == (480, 10037)


def test_group_call_hung_up_before_answer_stops_ringing() -> None:
    run = placed("bob", "carol", kind=G)
    run.do(c.HangUp("alice"))
    assert code(run.ended("bob")) == (200, 4097) and code(run.ended("carol")) == (200, 4097)
    assert run.conv.state is ConversationState.ENDED


def test_phone_calls_bot_bot_answers_phone_hangs_up() -> None:
    run = Run()
    run.do(c.Create(spec("phone", LegKind.SIP), (ring("bob"),)))
    assert run.conv.leg("bob").source["participantId"] == "p-phone"  # the bot sees who calls
    run.do(c.Answer("bob"))
    established = [e for e in run.events if isinstance(e, ev.LegEstablished)]
    assert {(e.leg_id, e.kind) for e in established} == {("phone", LegKind.SIP), ("bob", LegKind.BOT)}
    run.do(c.EndLeg("phone", results.PSTN_HUNG_UP))
    assert code(run.ended("bob")) == (200, 4097)


def test_phone_call_to_a_bot_at_its_quota_ends_the_phone_leg() -> None:
    run = Run()
    run.do(c.Create(spec("phone", LegKind.SIP), (unreachable(results.CALLEE_OVER_QUOTA),)))
    assert code(run.ended("phone")) == (486, 9150)


def test_bot_dials_a_phone_answer_and_failures() -> None:
    run = Run()
    out = run.do(c.Create(spec("alice"), (ring("phone", LegKind.SIP),)))
    rang = next(e for e in out if isinstance(e, ev.LegRinging))
    assert rang.kind is LegKind.SIP and rang.leg["external"] == "dial"
    assert run.conv.leg("phone").answer_deadline == run.now + 60  # the dial ring time
    run.do(c.ConnectLeg("phone"))
    assert run.conv.leg("alice").state is CallState.ESTABLISHED
    for reason, expected in ((results.CALLEE_UNREACHABLE, (480, 10076)), (results.BUSY, (486, 0))):
        failing = Run()
        failing.do(c.Create(spec("alice"), (ring("phone", LegKind.SIP),)))
        failing.do(c.EndLeg("phone", reason))
        assert code(failing.ended("alice")) == expected


def test_no_answer_at_the_trunk() -> None:
    run = Run()
    run.do(c.Create(spec("alice"), (ring("phone", LegKind.SIP),)))
    run.do(c.FireTimers(), at=run.now + 60)
    assert code(run.ended("alice")) == (408, 10057)


def test_a_peers_failed_rtp_stream_reaches_the_bot() -> None:
    run = Run()
    run.do(c.Create(spec("alice"), (ring("phone", LegKind.SIP),)))
    run.do(c.ConnectLeg("phone"))
    run.do(c.FailMedia("phone", results.MEDIA_STREAM_FAILED))
    assert code(run.ended("alice")) == (500, 9133)


def test_lost_app_hosted_media_ends_only_that_leg_and_its_peer_hears_hang_up() -> None:
    run = answered()
    run.do(c.FailMedia("bob", results.APP_MEDIA_LOST))
    assert code(run.ended("bob")) == (410, 9141)
    assert code(run.ended("alice")) == (200, 4097)


def test_refer_transfer_accepted_then_completed() -> None:
    run = Run()
    run.do(c.Create(spec("phone", LegKind.SIP), (ring("bob"),)))
    run.do(c.Answer("bob"))
    assert run.conv.transferee_of("bob", None).id == "phone"
    out = run.do(c.StartTransfer("bob", {"identity": {"phone": {"id": "+1"}}}, by_refer=True))
    assert [type(e) for e in out] == [ev.LegStateChanged, ev.TransferStarted]
    assert out[1].mode is ev.TransferMode.REFER and out[1].transferee_kind is LegKind.SIP  # type: ignore[union-attr]
    run.do(c.AcceptTransfer("phone"))
    run.do(c.CompleteTransfer("phone"))
    assert run.states("bob")[-3:] == ["transferring", "transferAccepted", "terminated"]
    assert code(run.ended("bob")) == (0, 7015)
    # as in CallService.external_transferred: the phone, left alone, is settled first (its gateway releases it)
    assert code(run.ended("phone")) == (200, 4097)
    assert run.conv.state is ConversationState.ENDED


def test_failed_refer_returns_the_call_to_established() -> None:
    run = Run()
    run.do(c.Create(spec("phone", LegKind.SIP), (ring("bob"),)))
    run.do(c.Answer("bob"))
    run.do(c.StartTransfer("bob", {}, by_refer=True))
    run.do(c.AcceptTransfer("phone"))
    run.do(c.FailTransfer("phone", results.TRANSFER_FAILED))
    run.do(c.EndLeg("phone", results.PSTN_HUNG_UP))
    assert run.states("bob")[-4:] == ["transferring", "transferAccepted", "established", "terminated"]
    assert code(run.ended("bob")) == (200, 4097)


def test_refused_refer_falls_back_to_bridging() -> None:
    run = Run()
    run.do(c.Create(spec("phone", LegKind.SIP), (ring("bob"),)))
    run.do(c.Answer("bob"))
    run.do(c.StartTransfer("bob", {}, by_refer=True))
    run.do(c.FailTransfer("phone", results.TRANSFER_FAILED, bridge=ring("trunk", LegKind.SIP)))
    assert run.conv.transfer is not None and run.conv.transfer.target == "trunk"
    run.do(c.ConnectLeg("trunk"))
    assert code(run.ended("bob")) == (0, 7015)
    run.do(c.EndLeg("trunk", results.PSTN_HUNG_UP))
    assert code(run.ended("phone")) == (200, 4097)


@pytest.mark.parametrize(
    "command",
    [
        c.ConnectLeg("bob"),  # a bot's leg is not a gateway's
        c.ConnectLeg("nobody"),
        c.EndLeg("alice", results.PSTN_HUNG_UP),
        c.AcceptTransfer("alice"),
        c.CompleteTransfer("alice"),
        c.FailTransfer("alice", results.TRANSFER_FAILED),
        c.MoveCallback("nobody", "https://x"),
    ],
)
def test_stale_gateway_reports_are_dropped_without_a_version(command: c.Command) -> None:
    run = placed("bob")
    before = run.conv.to_doc()
    assert run.do(command) == []
    assert run.conv.to_doc() == before


def test_release_leg_takes_the_phone_out_without_ending_it_and_ends_the_bot_replaced() -> None:
    run = Run()
    run.do(c.Create(spec("phone", LegKind.SIP), (ring("bob"),)))
    run.do(c.Answer("bob"))
    with pytest.raises(InvalidState):
        run.conv.check(c.ReleaseLeg("bob", results.CALL_REPLACED))  # a bot's leg is not a gateway's to move
    events = run.do(c.ReleaseLeg("phone", results.CALL_REPLACED))
    assert [type(e) for e in events][:2] == [ev.LegReleased, ev.ParticipantLeft]
    assert not any(isinstance(e, ev.LegEnded) and e.leg_id == "phone" for e in events)  # no BYE, media kept
    assert code(run.ended("bob")) == (0, 7015)
    assert isinstance(events[-1], ev.ConversationEnded)
    assert run.conv.find_leg("phone") is None


def test_release_leg_is_refused_in_group_calls_and_before_the_answer() -> None:
    run = Run()
    run.do(c.Create(spec("phone", LegKind.SIP), (ring("bob"),)))
    with pytest.raises(InvalidState):
        run.conv.check(c.ReleaseLeg("phone", results.CALL_REPLACED))  # still establishing
    group = Run(G)
    group.do(c.Create(spec("alice"), (ring("phone", LegKind.SIP), ring("carol"))))
    with pytest.raises(InvalidState):
        group.conv.check(c.ReleaseLeg("phone", results.CALL_REPLACED))
