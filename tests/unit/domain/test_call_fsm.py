"""The call state machine, enumerated: every (CallState, CallEvent) pair is either an edge of the table, going
exactly where the Graph reference (§5, §5.1) says, or an illegal edge that raises InvalidState (a 400).

The expected table is written out here independently of `domain/calls.py`, so that a change to the product
table has to be made (and justified) twice.
"""

from __future__ import annotations

import itertools

import pytest

from opencomms.domain.calls import CALL_FSM, TERMINAL_STATES, CallEvent, CallState, next_state
from opencomms.domain.errors import InvalidState, OpenCommsError
from opencomms.domain.fsm import IllegalTransition, TransitionTable

S = CallState
E = CallEvent

# States in which the leg is (or is about to be) in the media: a bot may hang up or keep alive, and the far
# side may end the call. `hold` is an enum member only in v1.0 (no action drives it), but it is a live state.
LIVE = (S.ESTABLISHING, S.ESTABLISHED, S.HOLD, S.TRANSFERRING, S.TRANSFER_ACCEPTED)

EXPECTED: dict[tuple[CallState, CallEvent], CallState] = {
    # incoming: answer, reject, redirect (Doc), or the 15 s window lapses / the caller gives up
    (S.INCOMING, E.ANSWER): S.ESTABLISHING,
    (S.INCOMING, E.REJECT): S.TERMINATED,
    (S.INCOMING, E.REDIRECT): S.REDIRECTING,
    (S.INCOMING, E.END): S.TERMINATED,
    (S.REDIRECTING, E.END): S.TERMINATED,
    # establishing -> established once media and signaling are up
    (S.ESTABLISHING, E.CONNECTED): S.ESTABLISHED,
    # transfer: established -> transferring -> transferAccepted -> terminated; a failure returns to established
    (S.ESTABLISHED, E.TRANSFER): S.TRANSFERRING,
    (S.TRANSFERRING, E.TRANSFER_ACCEPTED): S.TRANSFER_ACCEPTED,
    (S.TRANSFERRING, E.TRANSFER_FAILED): S.ESTABLISHED,
    (S.TRANSFER_ACCEPTED, E.TRANSFER_FAILED): S.ESTABLISHED,
    # DELETE: terminating, then terminated
    (S.TERMINATING, E.END): S.TERMINATED,
    **{(state, E.HANG_UP): S.TERMINATING for state in LIVE},
    **{(state, E.KEEP_ALIVE): state for state in LIVE},
    **{(state, E.END): S.TERMINATED for state in LIVE},
}

ALL_PAIRS = list(itertools.product(CallState, CallEvent))
ALLOWED = [(s, e) for s, e in ALL_PAIRS if (s, e) in EXPECTED]
ILLEGAL = [(s, e) for s, e in ALL_PAIRS if (s, e) not in EXPECTED]


def _id(pair: tuple[CallState, CallEvent]) -> str:
    return f"{pair[0].value}-{pair[1].value}"


def test_product_table_is_exactly_the_documented_one() -> None:
    assert dict(CALL_FSM.edges) == EXPECTED


def test_enumeration_covers_the_whole_product() -> None:
    assert len(ALLOWED) + len(ILLEGAL) == len(CallState) * len(CallEvent)
    assert len(ALLOWED) == len(EXPECTED)
    # every key of the table uses real members (no stray strings compare equal by accident)
    for state, event in CALL_FSM.edges:
        assert type(state) is CallState and type(event) is CallEvent


@pytest.mark.parametrize("pair", ALLOWED, ids=_id)
def test_allowed_edge_goes_where_the_table_says(pair: tuple[CallState, CallEvent]) -> None:
    state, event = pair
    assert CALL_FSM.allows(state, event)
    assert next_state(state, event) is EXPECTED[pair]
    assert CALL_FSM.apply(state, event) is EXPECTED[pair]


@pytest.mark.parametrize("pair", ILLEGAL, ids=_id)
def test_illegal_edge_raises_invalid_state(pair: tuple[CallState, CallEvent]) -> None:
    state, event = pair
    assert not CALL_FSM.allows(state, event)
    with pytest.raises(InvalidState) as info:
        next_state(state, event)
    err = info.value
    # a Graph 400 invalidRequest whose message names both the action and the state, in wire spelling
    assert isinstance(err, OpenCommsError)
    assert (err.status, err.code) == (400, "invalidRequest")
    assert f"'{event.value}'" in err.message and f"'{state.value}'" in err.message
    assert err.__cause__ is None and err.__suppress_context__  # no internal chain leaks into the error
    with pytest.raises(IllegalTransition) as raw:
        CALL_FSM.apply(state, event)
    assert (raw.value.machine, raw.value.state, raw.value.event) == ("call", state, event)


@pytest.mark.parametrize("event", list(CallEvent), ids=lambda e: e.value)
def test_terminated_accepts_nothing(event: CallEvent) -> None:
    assert frozenset({S.TERMINATED}) == TERMINAL_STATES
    with pytest.raises(InvalidState):
        next_state(S.TERMINATED, event)


def test_terminated_has_no_outgoing_edges_and_is_reachable_from_every_other_state() -> None:
    assert not [pair for pair in CALL_FSM.edges if pair[0] is S.TERMINATED]
    for start in CallState:
        if start is S.TERMINATED:
            continue
        seen = {start}
        frontier = [start]
        while frontier:
            here = frontier.pop()
            for (src, _), dst in CALL_FSM.edges.items():
                if src is here and dst not in seen:
                    seen.add(dst)
                    frontier.append(dst)
        assert S.TERMINATED in seen, f"{start.value} can never end"


def test_keep_alive_never_changes_state() -> None:
    for (state, event), dst in CALL_FSM.edges.items():
        if event is E.KEEP_ALIVE:
            assert dst is state


def test_only_incoming_calls_are_answered_rejected_or_redirected() -> None:
    for event in (E.ANSWER, E.REJECT, E.REDIRECT):
        assert [s for s in CallState if CALL_FSM.allows(s, event)] == [S.INCOMING]


def test_an_unanswered_incoming_call_is_not_hung_up() -> None:
    # Graph: an incoming call that was not answered is ended with reject, not DELETE, and needs no keepAlive
    assert not CALL_FSM.allows(S.INCOMING, E.HANG_UP)
    assert not CALL_FSM.allows(S.INCOMING, E.KEEP_ALIVE)


def test_terminating_and_redirecting_only_finish() -> None:
    for state in (S.TERMINATING, S.REDIRECTING):
        assert [e for e in CallEvent if CALL_FSM.allows(state, e)] == [E.END]


def test_hold_is_a_live_state_no_edge_enters() -> None:
    assert not [pair for pair, dst in CALL_FSM.edges.items() if dst is S.HOLD and pair[0] is not S.HOLD]
    assert next_state(S.HOLD, E.HANG_UP) is S.TERMINATING


def test_wire_spellings_are_graphs() -> None:
    assert [s.value for s in CallState] == [
        "incoming",
        "establishing",
        "established",
        "hold",
        "transferring",
        "transferAccepted",
        "redirecting",
        "terminating",
        "terminated",
    ]
    assert E.HANG_UP.value == "delete" and E.KEEP_ALIVE.value == "keepAlive"


def test_transition_table_helper_is_generic_and_strict() -> None:
    from enum import Enum

    class Light(Enum):
        RED = "red"
        GREEN = "green"

    class Push(Enum):
        GO = "go"
        STOP = "stop"

    table: TransitionTable[Light, Push] = TransitionTable("light", {(Light.RED, Push.GO): Light.GREEN})
    assert table.apply(Light.RED, Push.GO) is Light.GREEN
    with pytest.raises(IllegalTransition, match="light: 'stop' is not allowed in state 'red'"):
        table.apply(Light.RED, Push.STOP)
