"""Client transactions (RFC 3261 §17.1): the INVITE client transaction with RFC 6026's Accepted state (ACK for a
non-2xx sent here; A doubles until B) and the non-INVITE client transaction (E doubles up to T2 until F; K).

Must not: send the ACK for a 2xx (the transaction user does, through the layer) or match responses (`keys.py`).
"""

from __future__ import annotations

from opencomms.sip.builders import build_ack_for_non2xx
from opencomms.sip.destination import Destination
from opencomms.sip.message import SipRequest, SipResponse
from opencomms.sip.transactions.actions import Action, Deliver, Send, Terminated, Timeout
from opencomms.sip.transactions.keys import TxKey
from opencomms.sip.transactions.machine import TimerConfig, Transaction
from opencomms.sip.transactions.states import ICT_TABLE, NICT_TABLE, TxEvent, TxState, response_event

__all__ = ["ClientTransaction", "InviteClientTransaction", "NonInviteClientTransaction"]

S = TxState
E = TxEvent


class ClientTransaction(Transaction):
    def __init__(self, request: SipRequest, dest: Destination, timers: TimerConfig, state: TxState) -> None:
        via = request.top_via
        if not via.branch:
            raise ValueError("a client transaction needs a branch in the top Via")
        super().__init__(TxKey(via.branch, "", request.method), state, request, dest, timers)
        self.data = request.serialize()

    def start(self, now: float) -> list[Action]:
        raise NotImplementedError

    def on_response(self, response: SipResponse, now: float) -> list[Action]:
        raise NotImplementedError


class InviteClientTransaction(ClientTransaction):
    """RFC 3261 §17.1.1 with RFC 6026: Calling -> Proceeding -> Completed (ACK sent here) / Accepted (2xx)."""

    table = ICT_TABLE

    def __init__(self, request: SipRequest, dest: Destination, timers: TimerConfig) -> None:
        super().__init__(request, dest, timers, S.CALLING)
        self._interval = timers.t1
        self._ack: bytes | None = None

    def start(self, now: float) -> list[Action]:
        if not self.reliable:
            self._arm(E.TIMER_A, now + self._interval)
        self._arm(E.TIMER_B, now + self.timers.b)
        return [Send(self.data, self.dest)]

    def arm_timeout(self, at: float) -> None:
        """Give up at `at` even in Proceeding (used after a CANCEL: RFC 3261 §9.1 allows 64*T1)."""
        if self.state in (S.CALLING, S.PROCEEDING):
            self._arm(E.TIMER_B, at)

    def on_response(self, response: SipResponse, now: float) -> list[Action]:
        event = response_event(response.status, from_tu=False)
        if not self.table.allows(self.state, event):
            return []
        previous = self._apply(event)
        if event is E.R1XX:
            self._disarm(E.TIMER_A, E.TIMER_B)
            return [Deliver(self.key, response)]
        if event is E.R2XX:
            if previous is not S.ACCEPTED:
                self._disarm(E.TIMER_A, E.TIMER_B)
                self._arm(E.TIMER_M, now + self.timers.b)
            return [Deliver(self.key, response)]
        if previous is S.COMPLETED:
            return [Send(self._ack, self.dest)] if self._ack is not None else []
        self._disarm(E.TIMER_A, E.TIMER_B)
        self._ack = build_ack_for_non2xx(self.request, response).serialize()
        out: list[Action] = [Send(self._ack, self.dest), Deliver(self.key, response)]
        if self.reliable:
            self._apply(E.TIMER_D)
        else:
            self._arm(E.TIMER_D, now + self.timers.d)
        return out + self._ended()

    def _fire(self, event: TxEvent, now: float) -> list[Action]:
        self._apply(event)
        if event is E.TIMER_A:
            self._interval *= 2
            self._arm(E.TIMER_A, now + self._interval)
            return [Send(self.data, self.dest)]
        if event is E.TIMER_B:
            return [Timeout(self.key), Terminated(self.key)]
        return self._ended()


class NonInviteClientTransaction(ClientTransaction):
    """RFC 3261 §17.1.2: Trying -> Proceeding -> Completed -> Terminated; E doubles up to T2."""

    table = NICT_TABLE

    def __init__(self, request: SipRequest, dest: Destination, timers: TimerConfig) -> None:
        if request.method in ("INVITE", "ACK"):
            raise ValueError(f"{request.method} is not a non-INVITE transaction")
        super().__init__(request, dest, timers, S.TRYING)
        self._interval = timers.t1

    def start(self, now: float) -> list[Action]:
        if not self.reliable:
            self._arm(E.TIMER_E, now + self._interval)
        self._arm(E.TIMER_F, now + self.timers.b)
        return [Send(self.data, self.dest)]

    def on_response(self, response: SipResponse, now: float) -> list[Action]:
        event = response_event(response.status, from_tu=False)
        if not self.table.allows(self.state, event):
            return []
        previous = self._apply(event)
        if previous is S.COMPLETED:
            return []
        if event is E.R1XX:
            return [Deliver(self.key, response)]
        self._disarm(E.TIMER_E, E.TIMER_F)
        if self.reliable:
            self._apply(E.TIMER_K)
        else:
            self._arm(E.TIMER_K, now + self.timers.t4)
        return [Deliver(self.key, response), *self._ended()]

    def _fire(self, event: TxEvent, now: float) -> list[Action]:
        self._apply(event)
        if event is E.TIMER_E:
            self._interval = self.timers.t2 if self.state is S.PROCEEDING else min(2 * self._interval, self.timers.t2)
            self._arm(E.TIMER_E, now + self._interval)
            return [Send(self.data, self.dest)]
        if event is E.TIMER_F:
            return [Timeout(self.key), Terminated(self.key)]
        return self._ended()
