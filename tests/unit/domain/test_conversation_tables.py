"""The conversation's tables, enumerated: the conversation state table as written out here, every command with a
rule and a handler, and every REST leg command against every leg state (legal exactly where the leg table says)."""

from __future__ import annotations

import itertools

import pytest

from opencomms.domain import commands as c
from opencomms.domain import results
from opencomms.domain.calls import CALL_FSM, CallEvent, CallState
from opencomms.domain.conversation import Conversation
from opencomms.domain.errors import BadRequest, InvalidState, NotFound, OpenCommsError
from opencomms.domain.legs import Leg
from opencomms.domain.rules import (
    CONVERSATION_FSM,
    RULES,
    ConversationEvent,
    ConversationKind,
    ConversationState,
    OnFail,
)
from tests.unit.domain.conversation_kit import Run, ring, spec

S, E = ConversationState, ConversationEvent

EXPECTED_CONVERSATION = {
    (S.NEW, E.CREATE): S.SETUP,
    (S.NEW, E.JOIN): S.SETUP,
    (S.SETUP, E.JOIN): S.SETUP,
    (S.ACTIVE, E.JOIN): S.ACTIVE,
    (S.SETUP, E.CONNECT): S.ACTIVE,
    (S.ACTIVE, E.CONNECT): S.ACTIVE,
    (S.SETUP, E.ACT): S.SETUP,
    (S.ACTIVE, E.ACT): S.ACTIVE,
    (S.SETUP, E.EMPTY): S.ENDED,
    (S.ACTIVE, E.EMPTY): S.ENDED,
}


def test_conversation_table_is_exactly_the_documented_one() -> None:
    assert dict(CONVERSATION_FSM.edges) == EXPECTED_CONVERSATION
    assert not any(CONVERSATION_FSM.allows(S.ENDED, e) for e in E)  # ended is final


def test_every_command_has_a_rule_and_a_handler() -> None:
    commands = {t for t in vars(c).values() if isinstance(t, type) and t.__module__ == c.__name__}
    commands.discard(c.Invitation)
    assert set(RULES) == commands
    assert set(Conversation._handlers) == commands
    for kind, rule in RULES.items():
        if rule.leg_field is not None:
            assert rule.leg_field in kind.__dataclass_fields__, kind


def test_reports_from_gateways_and_media_are_dropped_when_stale_rest_actions_raise() -> None:
    ignored = {t.__name__ for t, r in RULES.items() if r.on_fail is OnFail.IGNORE}
    assert ignored == {
        "MoveCallback",
        "ConfigureMeeting",
        "ConnectLeg",
        "EndLeg",
        "FailMedia",
        "AcceptTransfer",
        "CompleteTransfer",
        "FailTransfer",
        "FireTimers",
    }


# -- every REST leg command in every leg state -------------------------------------------------------------------
LEG_COMMANDS: dict[CallEvent, c.Command] = {
    CallEvent.ANSWER: c.Answer("x"),
    CallEvent.REJECT: c.Reject("x"),
    CallEvent.REDIRECT: c.Redirect("x", (ring("carol"),)),
    CallEvent.TRANSFER: c.StartTransfer("x", {}, invitation=ring("carol")),
    CallEvent.HANG_UP: c.HangUp("x"),
    CallEvent.KEEP_ALIVE: c.KeepAlive("x"),
}


def conversation_with_leg_in(state: CallState) -> Conversation:
    """A peer-to-peer conversation where bot leg 'x' is in `state` and its peer 'peer' is established."""
    run = Run()
    run.do(c.Create(spec("peer"), (ring("x"),)))
    run.do(c.Answer("x"))
    leg: Leg = run.conv.leg("x")
    leg.state = state  # the table decides, whatever path led here
    return run.conv


@pytest.mark.parametrize(
    ("state", "event"),
    list(itertools.product([s for s in CallState if s is not CallState.TERMINATED], LEG_COMMANDS)),
    ids=lambda v: str(v.value),
)
def test_rest_commands_follow_the_leg_table(state: CallState, event: CallEvent) -> None:
    conv = conversation_with_leg_in(state)
    command = LEG_COMMANDS[event]
    if CALL_FSM.allows(state, event) and not (event is CallEvent.HANG_UP and state is CallState.INCOMING):
        before = conv.version
        conv.apply(command, 2000.0)
        assert conv.version == before + 1
    else:
        before_doc = conv.to_doc()
        with pytest.raises(InvalidState) as err:
            conv.apply(command, 2000.0)
        assert (err.value.status, err.value.code) == (400, "invalidRequest")
        assert conv.to_doc() == before_doc  # nothing changed


def test_hang_up_of_a_ringing_leg_says_reject() -> None:
    run = Run()
    run.do(c.Create(spec("alice"), (ring("bob"),)))
    with pytest.raises(InvalidState, match="'reject', not DELETE"):
        run.do(c.HangUp("bob"))


@pytest.mark.parametrize(
    ("command", "error", "status", "graph_code"),
    [
        (c.Answer("nobody"), NotFound, 404, "itemNotFound"),
        (c.HangUp("phone"), NotFound, 404, "itemNotFound"),  # a gateway's leg is no bot's call
        (c.StartTransfer("bob", {}, transferee_participant_id="p-nobody", invitation=ring("c")), BadRequest, 400, None),
        (c.StartTransfer("bob", {}), BadRequest, 400, "invalidRequest"),
        (c.Invite("bob", (ring("carol"),)), InvalidState, 400, "invalidRequest"),  # not in a peer-to-peer call
        (c.Join(spec("dave")), InvalidState, 400, "invalidRequest"),
        (c.Mute("bob", participant_id="p-phone"), InvalidState, 400, "invalidRequest"),
        (c.Mute("bob", participant_id="p-nobody"), NotFound, 404, "itemNotFound"),
        (c.Redirect("bob", ()), InvalidState, 400, "invalidRequest"),  # the leg table first: bob is established
        (c.EndConversation(results.ENDED_BY_DELETE), InvalidState, 400, "invalidRequest"),
    ],
)
def test_invalid_commands_raise_typed_errors_with_graph_codes(
    command: c.Command, error: type[OpenCommsError], status: int, graph_code: str | None
) -> None:
    from opencomms.domain.legs import LegKind

    run = Run()
    run.do(c.Create(spec("phone", LegKind.SIP), (ring("bob"),)))
    run.do(c.Answer("bob"))
    before = run.conv.to_doc()
    with pytest.raises(error) as err:
        run.do(command)
    assert err.value.status == status
    if graph_code is not None:
        assert err.value.code == graph_code
    assert run.conv.to_doc() == before


def test_a_second_transfer_while_one_is_in_progress_is_refused() -> None:
    run = Run(ConversationKind.GROUP)
    run.do(c.Create(spec("alice"), (ring("bob"), ring("carol"))))
    run.do(c.Answer("bob"))
    run.do(c.Answer("carol"))
    with pytest.raises(BadRequest, match="participantId is required"):
        run.do(c.StartTransfer("bob", {}, invitation=ring("dave")))
    run.do(c.StartTransfer("bob", {}, transferee_participant_id="p-alice", invitation=ring("dave")))
    with pytest.raises(InvalidState):
        run.do(c.StartTransfer("carol", {}, transferee_participant_id="p-alice", invitation=ring("erin")))


def test_commands_on_an_ended_conversation_are_not_found() -> None:
    run = Run()
    run.do(c.Create(spec("alice"), (ring("bob"),)))
    run.do(c.HangUp("alice"))
    assert run.conv.state is ConversationState.ENDED
    with pytest.raises(NotFound):
        run.do(c.Answer("bob"))
    assert run.do(c.FireTimers()) == []
