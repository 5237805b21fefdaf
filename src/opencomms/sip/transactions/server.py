"""Server transactions (RFC 3261 §17.2): the INVITE server transaction (100 Trying after a delay, G/H until the
ACK, RFC 6026 Accepted), the non-INVITE server transaction (J), and the UAS core's 2xx retransmission until the
ACK (§13.3.1.4, `OkRetransmitter`).

Must not: decide what to answer (the transaction user does) or match requests (`keys.py`).
"""

from __future__ import annotations

from opencomms.sip.builders import make_response
from opencomms.sip.destination import Destination
from opencomms.sip.message import SipRequest, SipResponse
from opencomms.sip.transactions.actions import AckTimeout, Action, Send, Terminated, Timeout
from opencomms.sip.transactions.keys import TxKey
from opencomms.sip.transactions.machine import Timed, TimerConfig, Transaction
from opencomms.sip.transactions.states import (
    IST_TABLE,
    NIST_TABLE,
    OK_RETRANSMIT_TABLE,
    TxEvent,
    TxState,
    response_event,
)

__all__ = ["InviteServerTransaction", "NonInviteServerTransaction", "OkRetransmitter", "ServerTransaction"]

S = TxState
E = TxEvent


class ServerTransaction(Transaction):
    def __init__(self, key: TxKey, request: SipRequest, dest: Destination, timers: TimerConfig, state: TxState) -> None:
        super().__init__(key, state, request, dest, timers)
        self.last_response: SipResponse | None = None
        self._last_data: bytes | None = None

    def start(self, now: float) -> list[Action]:
        return []

    @property
    def final_sent(self) -> bool:
        return self.last_response is not None and self.last_response.status >= 200

    def can_respond(self, status: int) -> bool:
        return self.table.allows(self.state, response_event(status, from_tu=True))

    def respond(self, response: SipResponse, now: float) -> list[Action]:
        raise NotImplementedError

    def on_request(self, request: SipRequest, now: float) -> list[Action]:
        raise NotImplementedError

    def _send(self, response: SipResponse) -> Send:
        self.last_response = response
        self._last_data = response.serialize()
        return Send(self._last_data, self.dest)

    def _resend(self) -> list[Action]:
        return [Send(self._last_data, self.dest)] if self._last_data is not None else []


class InviteServerTransaction(ServerTransaction):
    """RFC 3261 §17.2.1 with RFC 6026: 100 Trying after `trying_delay` unless the TU answered; final responses
    retransmitted on G until the ACK (absorbed here); a 2xx moves to Accepted (the UAS core retransmits it)."""

    table = IST_TABLE

    def __init__(
        self,
        key: TxKey,
        request: SipRequest,
        dest: Destination,
        timers: TimerConfig,
        trying_delay: float | None = 0.2,
    ) -> None:
        super().__init__(key, request, dest, timers, S.PROCEEDING)
        self._trying_delay = trying_delay
        self._interval = timers.t1

    def start(self, now: float) -> list[Action]:
        if self._trying_delay is not None:
            self._arm(E.TIMER_TRYING, now + self._trying_delay)
        return []

    def respond(self, response: SipResponse, now: float) -> list[Action]:
        event = response_event(response.status, from_tu=True)
        previous = self._apply(event)
        self._disarm(E.TIMER_TRYING)
        out: list[Action] = [self._send(response)]
        if event is E.TU_2XX and previous is not S.ACCEPTED:
            self._arm(E.TIMER_L, now + self.timers.b)
        elif event is E.TU_3XX_6XX:
            if not self.reliable:
                self._arm(E.TIMER_G, now + self._interval)
            self._arm(E.TIMER_H, now + self.timers.b)
        return out

    def on_request(self, request: SipRequest, now: float) -> list[Action]:
        event = E.ACK if request.method == "ACK" else E.REQUEST
        if not self.table.allows(self.state, event):
            return []
        previous = self._apply(event)
        if event is E.ACK:
            if previous is S.COMPLETED:
                self._disarm(E.TIMER_G, E.TIMER_H)
                if self.reliable:
                    self._apply(E.TIMER_I)
                else:
                    self._arm(E.TIMER_I, now + self.timers.t4)
            return self._ended()
        if previous is S.PROCEEDING:
            if self._last_data is None:
                self._disarm(E.TIMER_TRYING)
                return [self._send(make_response(self.request, 100))]
            return self._resend()
        if previous is S.COMPLETED:
            return self._resend()
        return []

    def _fire(self, event: TxEvent, now: float) -> list[Action]:
        self._apply(event)
        if event is E.TIMER_TRYING:
            return [self._send(make_response(self.request, 100))]
        if event is E.TIMER_G:
            self._interval = min(2 * self._interval, self.timers.t2)
            self._arm(E.TIMER_G, now + self._interval)
            return self._resend()
        if event is E.TIMER_H:
            return [Timeout(self.key), Terminated(self.key)]
        return self._ended()


class NonInviteServerTransaction(ServerTransaction):
    """RFC 3261 §17.2.2: retransmissions absorbed in Trying, answered with the last response afterwards; J."""

    table = NIST_TABLE

    def __init__(self, key: TxKey, request: SipRequest, dest: Destination, timers: TimerConfig) -> None:
        super().__init__(key, request, dest, timers, S.TRYING)

    def respond(self, response: SipResponse, now: float) -> list[Action]:
        event = response_event(response.status, from_tu=True)
        self._apply(event)
        out: list[Action] = [self._send(response)]
        if event is not E.TU_1XX:
            if self.reliable:
                self._apply(E.TIMER_J)
            else:
                self._arm(E.TIMER_J, now + self.timers.b)
        return out + self._ended()

    def on_request(self, request: SipRequest, now: float) -> list[Action]:
        if not self.table.allows(self.state, E.REQUEST):
            return []
        previous = self._apply(E.REQUEST)
        return [] if previous is S.TRYING else self._resend()

    def _fire(self, event: TxEvent, now: float) -> list[Action]:
        self._apply(event)
        return self._ended()


class OkRetransmitter(Timed):
    """The UAS core's 2xx retransmission (RFC 3261 §13.3.1.4): T1 doubling to T2 until the ACK, for 64*T1."""

    table = OK_RETRANSMIT_TABLE

    def __init__(self, key: TxKey, response: SipResponse, dest: Destination, timers: TimerConfig, now: float):
        super().__init__(key, S.ACCEPTED)
        self.data = response.serialize()
        self.dest = dest
        self.timers = timers
        self.ack_key = (response.call_id, response.cseq.number, response.to.tag or "")
        self._interval = timers.t1
        self._arm(E.TIMER_G, now + self._interval)
        self._arm(E.TIMER_H, now + timers.b)

    def on_ack(self) -> None:
        if self.table.allows(self.state, E.ACK):
            self._apply(E.ACK)

    def _fire(self, event: TxEvent, now: float) -> list[Action]:
        self._apply(event)
        if event is E.TIMER_G:
            self._interval = min(2 * self._interval, self.timers.t2)
            self._arm(E.TIMER_G, now + self._interval)
            return [Send(self.data, self.dest)]
        return [AckTimeout(self.key)]
