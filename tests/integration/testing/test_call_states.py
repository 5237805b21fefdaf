"""The virtual call's state table: every (state, event) pair is either an edge or ignored, and over means over."""

from __future__ import annotations

import itertools

from opencomms.testing.caller import CALL_FSM, CallEvent, CallState

FINAL = {CallState.ENDED, CallState.FAILED}


def test_final_states_have_no_way_out_and_every_live_state_can_end() -> None:
    for state, event in itertools.product(CallState, CallEvent):
        if state in FINAL:
            assert not CALL_FSM.allows(state, event), (state, event)
    ends = {
        CallState.DIALLING: CallEvent.REJECTED,
        CallState.RINGING: CallEvent.CANCEL,
        CallState.CANCELLING: CallEvent.REJECTED,
        CallState.ANSWERED: CallEvent.REMOTE_BYE,
    }
    for state, event in ends.items():
        after = CALL_FSM.apply(state, event)
        while after not in FINAL:  # a cancel still needs the INVITE's final response
            after = CALL_FSM.apply(after, CallEvent.REJECTED)
        assert after in FINAL


def test_answer_racing_a_cancel_still_ends_the_call() -> None:
    assert CALL_FSM.apply(CallState.CANCELLING, CallEvent.ANSWERED) is CallState.ENDED
    assert not CALL_FSM.allows(CallState.ENDED, CallEvent.REMOTE_BYE)  # a BYE crossing ours changes nothing
