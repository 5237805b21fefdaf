"""The Graph call state machine as data, and the actions a bot may take in each state.

`CALL_FSM` is the single transition table for a call leg; `next_state` applies it (the conversation's rules guard
REST actions with it).
"""

from __future__ import annotations

from enum import StrEnum

from opencomms.domain.errors import InvalidState
from opencomms.domain.fsm import IllegalTransition, TransitionTable


class CallState(StrEnum):
    INCOMING = "incoming"
    ESTABLISHING = "establishing"
    ESTABLISHED = "established"
    HOLD = "hold"
    TRANSFERRING = "transferring"
    TRANSFER_ACCEPTED = "transferAccepted"
    REDIRECTING = "redirecting"
    TERMINATING = "terminating"
    TERMINATED = "terminated"


class CallDirection(StrEnum):
    INCOMING = "incoming"
    OUTGOING = "outgoing"


class CallEvent(StrEnum):
    """What can happen to a call leg: REST actions by its bot, and outcomes from the other side."""

    # actions the leg's own bot takes over REST
    ANSWER = "answer"
    REJECT = "reject"
    REDIRECT = "redirect"
    TRANSFER = "transfer"
    HANG_UP = "delete"
    KEEP_ALIVE = "keepAlive"
    # outcomes
    CONNECTED = "connected"
    """Media and signaling are up: the far side answered (or we answered and the far side confirmed)."""
    TRANSFER_ACCEPTED = "transferAccepted"
    TRANSFER_FAILED = "transferFailed"
    END = "end"
    """The leg is over: far side hung up, timers, errors, completion of a hang-up, redirect or transfer."""


_S = CallState
_E = CallEvent

_LIVE = (_S.ESTABLISHING, _S.ESTABLISHED, _S.HOLD, _S.TRANSFERRING, _S.TRANSFER_ACCEPTED)

_EDGES: dict[tuple[CallState, CallEvent], CallState] = {
    (_S.INCOMING, _E.ANSWER): _S.ESTABLISHING,
    (_S.INCOMING, _E.REJECT): _S.TERMINATED,
    (_S.INCOMING, _E.REDIRECT): _S.REDIRECTING,
    (_S.INCOMING, _E.END): _S.TERMINATED,
    (_S.REDIRECTING, _E.END): _S.TERMINATED,
    (_S.ESTABLISHING, _E.CONNECTED): _S.ESTABLISHED,
    (_S.ESTABLISHED, _E.TRANSFER): _S.TRANSFERRING,
    (_S.TRANSFERRING, _E.TRANSFER_ACCEPTED): _S.TRANSFER_ACCEPTED,
    (_S.TRANSFERRING, _E.TRANSFER_FAILED): _S.ESTABLISHED,
    (_S.TRANSFER_ACCEPTED, _E.TRANSFER_FAILED): _S.ESTABLISHED,
    (_S.TERMINATING, _E.END): _S.TERMINATED,
}
for _state in _LIVE:
    _EDGES[(_state, _E.HANG_UP)] = _S.TERMINATING
    _EDGES[(_state, _E.KEEP_ALIVE)] = _state
    _EDGES[(_state, _E.END)] = _S.TERMINATED

CALL_FSM: TransitionTable[CallState, CallEvent] = TransitionTable("call", _EDGES)

TERMINAL_STATES = frozenset({CallState.TERMINATED})


def next_state(state: CallState, event: CallEvent) -> CallState:
    """Apply `event`; an illegal edge raises InvalidState (a Graph 400 invalidRequest)."""
    try:
        return CALL_FSM.apply(state, event)
    except IllegalTransition:
        raise InvalidState(f"The action '{event.value}' is not allowed while the call is '{state.value}'.") from None
