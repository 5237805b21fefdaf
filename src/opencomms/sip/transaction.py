"""RFC 3261 §17 transactions (with the RFC 6026 Accepted states) as sans-I/O machines, and the layer over them.

Owns: the four transaction machines (states as an enum, transitions as one `TransitionTable` each), their timers
A-M driven by an explicit `now`, the UAS core's 2xx retransmission until ACK (§13.3.1.4), the UAC's ACK re-sending
for retransmitted 2xx (§13.2.2.4), transaction matching (§17.1.3, §17.2.3, including CANCEL and the RFC 2543
fallback), branch generation, and where responses go (§18.2.2, RFC 3581).
Must not: do I/O or read a clock, parse bytes, build dialogs, or decide how a transaction user answers.
Outputs are frozen action dataclasses (`Send`, `NewRequest`, `Deliver`, `Timeout`, ...) for an adapter to carry out.
"""

from __future__ import annotations

import heapq
import itertools
import secrets
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from opencomms.domain.fsm import TransitionTable
from opencomms.sip.headers import HeaderError
from opencomms.sip.message import (
    SipMessage,
    SipRequest,
    SipResponse,
    build_ack_for_non2xx,
    make_response,
)

MAGIC_COOKIE = "z9hG4bK"


def new_branch() -> str:
    """An RFC 3261 branch: the magic cookie and 96 random bits."""
    return MAGIC_COOKIE + secrets.token_hex(12)


@dataclass(frozen=True, slots=True)
class Destination:
    """Where to send: transport ("udp", "tcp"), host (IP literal) and port."""

    transport: str
    host: str
    port: int

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"

    @property
    def addr(self) -> tuple[str, int]:
        return (self.host, self.port)

    @classmethod
    def udp(cls, host: str, port: int) -> Destination:
        return cls("udp", host, port)

    @classmethod
    def tcp(cls, host: str, port: int) -> Destination:
        return cls("tcp", host, port)


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """T1, T2, T4 (RFC 3261 Table 4). Every derived timer scales with them, so tests can shrink them all."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    def __post_init__(self) -> None:
        if not (0 < self.t1 <= self.t2) or self.t4 <= 0:
            raise ValueError("timers must satisfy 0 < T1 <= T2 and T4 > 0")

    @property
    def b(self) -> float:
        """B, F, H, J, L, M: 64*T1."""
        return 64 * self.t1

    @property
    def d(self) -> float:
        """D: at least 32 s on UDP (64*T1 at the default T1)."""
        return 64 * self.t1


@dataclass(frozen=True, slots=True)
class TxKey:
    """Transaction id: branch + sent-by + method (RFC 3261 §17.2.3); client keys have an empty sent-by."""

    branch: str
    sent_by: str
    method: str


# --- actions (outputs) ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    data: bytes
    dest: Destination


@dataclass(frozen=True, slots=True)
class NewRequest:
    """A request that created a server transaction; the TU must answer it through `TransactionLayer.respond`."""

    key: TxKey
    request: SipRequest
    source: Destination


@dataclass(frozen=True, slots=True)
class Deliver:
    """A response for a client transaction (provisional, final, and further 2xx to an INVITE)."""

    key: TxKey
    response: SipResponse


@dataclass(frozen=True, slots=True)
class Timeout:
    """Timer B/F (client: treat as 408) or H (INVITE server: the ACK for a non-2xx never came)."""

    key: TxKey


@dataclass(frozen=True, slots=True)
class TransportFailed:
    """The transport reported an error for this transaction (client: treat as 503, RFC 3261 §8.1.3.1)."""

    key: TxKey


@dataclass(frozen=True, slots=True)
class Terminated:
    key: TxKey


@dataclass(frozen=True, slots=True)
class AckReceived:
    """An ACK not absorbed by an INVITE server transaction: the ACK for a 2xx (`key` is the INVITE's server
    transaction if its 2xx was still being retransmitted, else None)."""

    request: SipRequest
    source: Destination
    key: TxKey | None


@dataclass(frozen=True, slots=True)
class AckTimeout:
    """A 2xx to an INVITE was retransmitted for 64*T1 without an ACK (RFC 3261 §13.3.1.4: end the session)."""

    key: TxKey


@dataclass(frozen=True, slots=True)
class StrayResponse:
    """A response matching no client transaction (e.g. a late 2xx from another fork)."""

    response: SipResponse
    source: Destination


Action = Send | NewRequest | Deliver | Timeout | TransportFailed | Terminated | AckReceived | AckTimeout | StrayResponse


# --- states, events, tables -------------------------------------------------------------------------------------


class TxState(StrEnum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"
    TERMINATED = "terminated"


class TxEvent(StrEnum):
    R1XX = "1xx received"
    R2XX = "2xx received"
    R3XX_6XX = "300-699 received"
    REQUEST = "request retransmission"
    ACK = "ACK received"
    TU_1XX = "TU sends 1xx"
    TU_2XX = "TU sends 2xx"
    TU_3XX_6XX = "TU sends 300-699"
    TIMER_A = "timer A"
    TIMER_B = "timer B"
    TIMER_D = "timer D"
    TIMER_E = "timer E"
    TIMER_F = "timer F"
    TIMER_G = "timer G"
    TIMER_H = "timer H"
    TIMER_I = "timer I"
    TIMER_J = "timer J"
    TIMER_K = "timer K"
    TIMER_L = "timer L"
    TIMER_M = "timer M"
    TIMER_TRYING = "200 ms without a TU response"
    TRANSPORT_ERROR = "transport error"


S = TxState
E = TxEvent

ICT_TABLE: TransitionTable[TxState, TxEvent] = TransitionTable(
    "INVITE client transaction",
    {
        (S.CALLING, E.TIMER_A): S.CALLING,
        (S.CALLING, E.TIMER_B): S.TERMINATED,
        (S.CALLING, E.R1XX): S.PROCEEDING,
        (S.CALLING, E.R2XX): S.ACCEPTED,
        (S.CALLING, E.R3XX_6XX): S.COMPLETED,
        (S.CALLING, E.TRANSPORT_ERROR): S.TERMINATED,
        (S.PROCEEDING, E.R1XX): S.PROCEEDING,
        (S.PROCEEDING, E.R2XX): S.ACCEPTED,
        (S.PROCEEDING, E.R3XX_6XX): S.COMPLETED,
        (S.PROCEEDING, E.TIMER_B): S.TERMINATED,  # only when the TU re-arms B (after sending CANCEL, §9.1)
        (S.PROCEEDING, E.TRANSPORT_ERROR): S.TERMINATED,
        (S.COMPLETED, E.R3XX_6XX): S.COMPLETED,
        (S.COMPLETED, E.TIMER_D): S.TERMINATED,
        (S.COMPLETED, E.TRANSPORT_ERROR): S.TERMINATED,
        (S.ACCEPTED, E.R2XX): S.ACCEPTED,
        (S.ACCEPTED, E.TIMER_M): S.TERMINATED,
    },
)

NICT_TABLE: TransitionTable[TxState, TxEvent] = TransitionTable(
    "non-INVITE client transaction",
    {
        (S.TRYING, E.TIMER_E): S.TRYING,
        (S.TRYING, E.TIMER_F): S.TERMINATED,
        (S.TRYING, E.R1XX): S.PROCEEDING,
        (S.TRYING, E.R2XX): S.COMPLETED,
        (S.TRYING, E.R3XX_6XX): S.COMPLETED,
        (S.TRYING, E.TRANSPORT_ERROR): S.TERMINATED,
        (S.PROCEEDING, E.TIMER_E): S.PROCEEDING,
        (S.PROCEEDING, E.TIMER_F): S.TERMINATED,
        (S.PROCEEDING, E.R1XX): S.PROCEEDING,
        (S.PROCEEDING, E.R2XX): S.COMPLETED,
        (S.PROCEEDING, E.R3XX_6XX): S.COMPLETED,
        (S.PROCEEDING, E.TRANSPORT_ERROR): S.TERMINATED,
        (S.COMPLETED, E.R2XX): S.COMPLETED,
        (S.COMPLETED, E.R3XX_6XX): S.COMPLETED,
        (S.COMPLETED, E.TIMER_K): S.TERMINATED,
    },
)

IST_TABLE: TransitionTable[TxState, TxEvent] = TransitionTable(
    "INVITE server transaction",
    {
        (S.PROCEEDING, E.REQUEST): S.PROCEEDING,
        (S.PROCEEDING, E.TIMER_TRYING): S.PROCEEDING,
        (S.PROCEEDING, E.TU_1XX): S.PROCEEDING,
        (S.PROCEEDING, E.TU_2XX): S.ACCEPTED,
        (S.PROCEEDING, E.TU_3XX_6XX): S.COMPLETED,
        (S.PROCEEDING, E.TRANSPORT_ERROR): S.TERMINATED,
        (S.COMPLETED, E.REQUEST): S.COMPLETED,
        (S.COMPLETED, E.ACK): S.CONFIRMED,
        (S.COMPLETED, E.TIMER_G): S.COMPLETED,
        (S.COMPLETED, E.TIMER_H): S.TERMINATED,
        (S.COMPLETED, E.TRANSPORT_ERROR): S.TERMINATED,
        (S.CONFIRMED, E.REQUEST): S.CONFIRMED,
        (S.CONFIRMED, E.ACK): S.CONFIRMED,
        (S.CONFIRMED, E.TIMER_I): S.TERMINATED,
        (S.ACCEPTED, E.REQUEST): S.ACCEPTED,
        (S.ACCEPTED, E.TU_2XX): S.ACCEPTED,
        (S.ACCEPTED, E.TIMER_L): S.TERMINATED,
    },
)

NIST_TABLE: TransitionTable[TxState, TxEvent] = TransitionTable(
    "non-INVITE server transaction",
    {
        (S.TRYING, E.REQUEST): S.TRYING,
        (S.TRYING, E.TU_1XX): S.PROCEEDING,
        (S.TRYING, E.TU_2XX): S.COMPLETED,
        (S.TRYING, E.TU_3XX_6XX): S.COMPLETED,
        (S.TRYING, E.TRANSPORT_ERROR): S.TERMINATED,
        (S.PROCEEDING, E.REQUEST): S.PROCEEDING,
        (S.PROCEEDING, E.TU_1XX): S.PROCEEDING,
        (S.PROCEEDING, E.TU_2XX): S.COMPLETED,
        (S.PROCEEDING, E.TU_3XX_6XX): S.COMPLETED,
        (S.PROCEEDING, E.TRANSPORT_ERROR): S.TERMINATED,
        (S.COMPLETED, E.REQUEST): S.COMPLETED,
        (S.COMPLETED, E.TIMER_J): S.TERMINATED,
        (S.COMPLETED, E.TRANSPORT_ERROR): S.TERMINATED,
    },
)

OK_RETRANSMIT_TABLE: TransitionTable[TxState, TxEvent] = TransitionTable(
    "2xx retransmission (UAS core)",
    {
        (S.ACCEPTED, E.TIMER_G): S.ACCEPTED,
        (S.ACCEPTED, E.TIMER_H): S.TERMINATED,
        (S.ACCEPTED, E.ACK): S.TERMINATED,
    },
)


def response_event(status: int, *, from_tu: bool) -> TxEvent:
    if status < 200:
        return E.TU_1XX if from_tu else E.R1XX
    if status < 300:
        return E.TU_2XX if from_tu else E.R2XX
    return E.TU_3XX_6XX if from_tu else E.R3XX_6XX


# --- machines -----------------------------------------------------------------------------------------------------


class _Timed:
    """A machine with named timers and a transition table. `on_timer(now)` fires every due timer in order."""

    table: ClassVar[TransitionTable[TxState, TxEvent]]

    def __init__(self, key: TxKey, state: TxState) -> None:
        self.key = key
        self.state = state
        self._timers: dict[TxEvent, float] = {}
        self.heap_deadline: float | None = None  # bookkeeping of the layer's heap

    @property
    def terminated(self) -> bool:
        return self.state is S.TERMINATED

    def next_deadline(self) -> float | None:
        return min(self._timers.values(), default=None)

    def timer(self, event: TxEvent) -> float | None:
        """When `event`'s timer fires, or None if it is not armed (for tests and diagnostics)."""
        return self._timers.get(event)

    def _arm(self, event: TxEvent, at: float) -> None:
        self._timers[event] = at

    def _disarm(self, *events: TxEvent) -> None:
        for event in events:
            self._timers.pop(event, None)

    def _apply(self, event: TxEvent) -> TxState:
        previous = self.state
        self.state = self.table.apply(self.state, event)
        if self.state is S.TERMINATED:
            self._timers.clear()
        return previous

    def _ended(self) -> list[Action]:
        return [Terminated(self.key)] if self.terminated else []

    def on_timer(self, now: float) -> list[Action]:
        out: list[Action] = []
        while self._timers:
            event, at = min(self._timers.items(), key=lambda item: item[1])
            if at > now:
                break
            del self._timers[event]
            out.extend(self._fire(event, now))
        return out

    def _fire(self, event: TxEvent, now: float) -> list[Action]:
        raise NotImplementedError


class Transaction(_Timed):
    """Common part of the four RFC 3261 transactions: the request, where messages go, and the timer values."""

    def __init__(self, key: TxKey, state: TxState, request: SipRequest, dest: Destination, timers: TimerConfig):
        super().__init__(key, state)
        self.request = request
        self.dest = dest
        self.timers = timers

    @property
    def reliable(self) -> bool:
        return self.dest.reliable

    def on_transport_error(self, now: float) -> list[Action]:
        if not self.table.allows(self.state, E.TRANSPORT_ERROR):
            return []
        self._apply(E.TRANSPORT_ERROR)
        return [TransportFailed(self.key), Terminated(self.key)]


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


class OkRetransmitter(_Timed):
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


# --- matching helpers ---------------------------------------------------------------------------------------------


def server_key(request: SipRequest, method: str | None = None) -> TxKey:
    """RFC 3261 §17.2.3: branch + sent-by + method (ACK matches INVITE); RFC 2543 requests (no magic cookie) by
    Request-URI, From tag, Call-ID, CSeq number and top Via."""
    via = request.top_via
    name = method or ("INVITE" if request.method == "ACK" else request.method)
    branch = via.branch
    if branch and branch.startswith(MAGIC_COOKIE) and len(branch) > len(MAGIC_COOKIE):
        return TxKey(branch, via.sent_by, name)
    legacy = "|".join(
        ("2543", str(request.uri), request.from_.tag or "", request.call_id, str(request.cseq.number), str(via))
    )
    return TxKey(legacy, via.sent_by, name)


def client_key(response: SipResponse) -> TxKey:
    """RFC 3261 §17.1.3: the top Via branch and the CSeq method."""
    return TxKey(response.top_via.branch or "", "", response.cseq.method)


def response_destination(request: SipRequest, source: Destination) -> Destination:
    """Where responses to `request` go (RFC 3261 §18.2.2, RFC 3581): back over the same connection on a reliable
    transport; on UDP to the source address (the `received` address) and the rport or sent-by port."""
    if source.reliable:
        return source
    via = request.top_via
    port = via.rport or (source.port if via.wants_rport else via.port or 5060)
    return Destination(source.transport, source.host, port)


# --- the layer ------------------------------------------------------------------------------------------------------

Timed = _Timed


class TransactionLayer:
    """All transactions of one endpoint: matching, creation, retransmission merging and one timer schedule.

    Drive it with `receive` (parsed messages), `send_request`, `respond`, `send_ack` and `on_timer(now)`;
    carry out the returned actions; call `on_timer` at `next_deadline()`.
    """

    def __init__(
        self,
        timers: TimerConfig | None = None,
        *,
        trying_delay: float | None = 0.2,
        max_transactions: int = 20_000,
    ) -> None:
        self.timers = timers or TimerConfig()
        self.trying_delay = trying_delay
        self.max_transactions = max_transactions
        self._client: dict[TxKey, ClientTransaction] = {}
        self._server: dict[TxKey, ServerTransaction] = {}
        self._ok: dict[TxKey, OkRetransmitter] = {}
        self._ok_by_ack: dict[tuple[str, int, str], TxKey] = {}
        self._acks: dict[tuple[str, int, str], tuple[bytes, Destination]] = {}
        self._ack_expiry: deque[tuple[float, tuple[str, int, str]]] = deque()
        self._heap: list[tuple[float, int, _Timed]] = []
        self._seq = itertools.count()
        self.overloaded = 0

    def __len__(self) -> int:
        return len(self._client) + len(self._server)

    @property
    def pending_2xx(self) -> int:
        return len(self._ok)

    def client_transaction(self, key: TxKey) -> ClientTransaction | None:
        return self._client.get(key)

    def server_transaction(self, key: TxKey) -> ServerTransaction | None:
        return self._server.get(key)

    def invite_for_cancel(self, cancel: SipRequest) -> InviteServerTransaction | None:
        """The INVITE server transaction a CANCEL refers to (same key, method INVITE; RFC 3261 §9.2)."""
        txn = self._server.get(server_key(cancel, "INVITE"))
        return txn if isinstance(txn, InviteServerTransaction) else None

    # -- scheduling

    def _schedule(self, obj: _Timed) -> None:
        deadline = obj.next_deadline()
        if deadline is None or obj.terminated:
            obj.heap_deadline = None
            return
        if deadline != obj.heap_deadline:
            obj.heap_deadline = deadline
            heapq.heappush(self._heap, (deadline, next(self._seq), obj))

    def _after(self, obj: _Timed) -> None:
        if obj.terminated:
            obj.heap_deadline = None
            if isinstance(obj, ClientTransaction):
                self._client.pop(obj.key, None)
            elif isinstance(obj, ServerTransaction):
                self._server.pop(obj.key, None)
            elif isinstance(obj, OkRetransmitter):
                self._ok.pop(obj.key, None)
                if self._ok_by_ack.get(obj.ack_key) == obj.key:
                    del self._ok_by_ack[obj.ack_key]
        else:
            self._schedule(obj)

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and heap[0][2].heap_deadline != heap[0][0]:
            heapq.heappop(heap)
        if self._ack_expiry and (not heap or self._ack_expiry[0][0] < heap[0][0]):
            return self._ack_expiry[0][0]
        return heap[0][0] if heap else None

    def on_timer(self, now: float) -> list[Action]:
        out: list[Action] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, obj = heapq.heappop(heap)
            if obj.heap_deadline != deadline:
                continue
            obj.heap_deadline = None
            out.extend(obj.on_timer(now))
            self._after(obj)
        self._prune_acks(now)
        return out

    # -- client side

    def send_request(
        self, request: SipRequest, dest: Destination, now: float
    ) -> tuple[ClientTransaction, list[Action]]:
        """Start a client transaction (the request must carry its top Via with a branch)."""
        txn: ClientTransaction
        if request.method == "INVITE":
            txn = InviteClientTransaction(request, dest, self.timers)
        else:
            txn = NonInviteClientTransaction(request, dest, self.timers)
        if txn.key in self._client:
            raise ValueError(f"a client transaction with branch {txn.key.branch} already exists")
        self._client[txn.key] = txn
        actions = txn.start(now)
        self._after(txn)
        return txn, actions

    def arm_timeout(self, key: TxKey, at: float) -> None:
        txn = self._client.get(key)
        if isinstance(txn, InviteClientTransaction):
            txn.arm_timeout(at)
            self._schedule(txn)

    def send_ack(self, ack: SipRequest, dest: Destination, now: float) -> list[Action]:
        """Send the ACK for a 2xx (stateless, RFC 3261 §13.2.2.4) and re-send it for 64*T1 whenever that 2xx is
        retransmitted."""
        data = ack.serialize()
        key = (ack.call_id, ack.cseq.number, ack.to.tag or "")
        self._prune_acks(now)
        if key not in self._acks:
            self._ack_expiry.append((now + self.timers.b, key))
        self._acks[key] = (data, dest)
        return [Send(data, dest)]

    def acked(self, response: SipResponse) -> bool:
        """Whether an ACK was already sent for this 2xx (same Call-ID, CSeq and To tag)."""
        return self._ack_key(response) in self._acks

    @staticmethod
    def _ack_key(response: SipResponse) -> tuple[str, int, str]:
        return (response.call_id, response.cseq.number, response.to.tag or "")

    def _prune_acks(self, now: float) -> None:
        while self._ack_expiry and self._ack_expiry[0][0] <= now:
            _, key = self._ack_expiry.popleft()
            self._acks.pop(key, None)

    def transport_error(self, dest: Destination, now: float) -> list[Action]:
        """The transport could not reach `dest`: fail every transaction sending there."""
        out: list[Action] = []
        for txn in [*self._client.values(), *self._server.values()]:
            if txn.dest == dest:
                out.extend(txn.on_transport_error(now))
                self._after(txn)
        return out

    # -- server side

    def respond(self, key: TxKey, response: SipResponse, now: float) -> list[Action]:
        """Send a TU response on a server transaction. Raises KeyError for an unknown/ended transaction and
        IllegalTransition when the state does not allow that response (e.g. a second final response)."""
        txn = self._server[key]
        actions = txn.respond(response, now)
        if isinstance(txn, InviteServerTransaction) and response.is_success and key not in self._ok:
            ok = OkRetransmitter(key, response, txn.dest, self.timers, now)
            self._ok[key] = ok
            self._ok_by_ack[ok.ack_key] = key
            self._schedule(ok)
        self._after(txn)
        return actions

    # -- input

    def receive(self, message: SipMessage, source: Destination, now: float) -> list[Action]:
        """A parsed message from the transport. Requests should already carry received/rport (RFC 3581)."""
        try:
            if isinstance(message, SipResponse):
                return self._receive_response(message, source, now)
            return self._receive_request(message, source, now)
        except HeaderError:
            return []

    def _receive_response(self, response: SipResponse, source: Destination, now: float) -> list[Action]:
        key = client_key(response)
        txn = self._client.get(key)
        invite_2xx = response.is_success and key.method == "INVITE"
        if invite_2xx:
            cached = self._acks.get(self._ack_key(response))
            if cached is not None:
                return [Send(*cached)]  # a retransmitted 2xx we already acknowledged
        if txn is None:
            return [StrayResponse(response, source)]
        actions = txn.on_response(response, now)
        self._after(txn)
        return actions

    def _receive_request(self, request: SipRequest, source: Destination, now: float) -> list[Action]:
        key = server_key(request)
        txn = self._server.get(key)
        if request.method == "ACK":
            if isinstance(txn, InviteServerTransaction) and txn.state is not S.ACCEPTED:
                actions = txn.on_request(request, now)
                self._after(txn)
                return actions
            return [self._ack_for_2xx(request, source)]
        if txn is not None:
            actions = txn.on_request(request, now)
            self._after(txn)
            return actions
        dest = response_destination(request, source)
        if len(self) >= self.max_transactions:
            self.overloaded += 1
            busy = make_response(request, 503, headers=[("Retry-After", "5")])
            return [Send(busy.serialize(), dest)]
        server: ServerTransaction
        if request.method == "INVITE":
            server = InviteServerTransaction(key, request, dest, self.timers, self.trying_delay)
        else:
            server = NonInviteServerTransaction(key, request, dest, self.timers)
        self._server[key] = server
        created: list[Action] = [NewRequest(key, request, source), *server.start(now)]
        self._after(server)
        return created

    def _ack_for_2xx(self, ack: SipRequest, source: Destination) -> AckReceived:
        ack_key = (ack.call_id, ack.cseq.number, ack.to.tag or "")
        key = self._ok_by_ack.get(ack_key)
        if key is not None:
            ok = self._ok.get(key)
            if ok is not None:
                ok.on_ack()
                self._after(ok)
        return AckReceived(ack, source, key)
