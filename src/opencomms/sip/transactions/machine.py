"""The timed machine under every transaction: T1/T2/T4 (`TimerConfig`), named timers driven by an explicit `now`
(`Timed`), and the part the four RFC 3261 transactions share (`Transaction`: request, destination, transport errors).

Must not: read a clock or do I/O; timers are deadlines the transaction layer schedules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from opencomms.domain.fsm import TransitionTable
from opencomms.sip.destination import Destination
from opencomms.sip.message import SipRequest
from opencomms.sip.transactions.actions import Action, Terminated, TransportFailed
from opencomms.sip.transactions.keys import TxKey
from opencomms.sip.transactions.states import TxEvent, TxState

__all__ = ["Timed", "TimerConfig", "Transaction"]

S = TxState
E = TxEvent


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


class Timed:
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


class Transaction(Timed):
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
