"""The transaction layer: all transactions of one endpoint, their matching, creation, retransmission merging and
one timer schedule (a heap of deadlines); the UAC's ACK re-sending for retransmitted 2xx (§13.2.2.4) and a
stateless 503 beyond `max_transactions`.

Must not: do I/O or read a clock, parse bytes, build dialogs, or decide how a transaction user answers.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque

from opencomms.sip.builders import make_response
from opencomms.sip.destination import Destination, response_destination
from opencomms.sip.headers import HeaderError
from opencomms.sip.message import SipMessage, SipRequest, SipResponse
from opencomms.sip.transactions.actions import AckReceived, Action, NewRequest, Send, StrayResponse
from opencomms.sip.transactions.client import ClientTransaction, InviteClientTransaction, NonInviteClientTransaction
from opencomms.sip.transactions.keys import TxKey, client_key, server_key
from opencomms.sip.transactions.machine import Timed, TimerConfig
from opencomms.sip.transactions.server import (
    InviteServerTransaction,
    NonInviteServerTransaction,
    OkRetransmitter,
    ServerTransaction,
)
from opencomms.sip.transactions.states import TxState

__all__ = ["TransactionLayer"]

S = TxState


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
        self._heap: list[tuple[float, int, Timed]] = []
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

    def _schedule(self, obj: Timed) -> None:
        deadline = obj.next_deadline()
        if deadline is None or obj.terminated:
            obj.heap_deadline = None
            return
        if deadline != obj.heap_deadline:
            obj.heap_deadline = deadline
            heapq.heappush(self._heap, (deadline, next(self._seq), obj))

    def _after(self, obj: Timed) -> None:
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
