"""The unit of work of the conversation core: one command per unit, written in one store transaction.

`LiveConversations` holds the conversations in memory with their indexes (leg -> conversation, the leg views of
`calling.views`, the timer heap). `UnitOfWork.apply` applies a command to a conversation, brings the views in
step and stages the events with the subscribers; at the end of the outermost unit the touched conversations are
written (deleted once ended) with the notifications the subscribers queued, in one transaction. When the write
fails nothing of the unit survives: the touched conversations are reloaded from the (rolled back) store, their
views rebuilt, committed-only effects (signalling, media joins) dropped and subscribers told to undo. No I/O here.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from opencomms.calling.model import JsonObj
from opencomms.calling.quotas import LiveCalls
from opencomms.calling.subscribers import Batch, Subscriber
from opencomms.calling.views import refresh, view_of
from opencomms.domain import commands as c
from opencomms.domain import events as ev
from opencomms.domain.conversation import Conversation
from opencomms.domain.rules import ConversationKind, ConversationTimeouts
from opencomms.store.base import Store, StoreUnavailable

log = logging.getLogger("opencomms.calls")

KIND = "conversation"
"""The store kind of conversation documents (their legs live inside them)."""


class TransactionSink(Protocol):
    def transaction(self) -> AbstractContextManager[None]:
        """A store transaction whose notifications are released only if it commits."""
        ...


class LiveConversations:
    """Conversations in memory, the leg index, the leg views (a `LiveCalls`) and a heap of timer deadlines."""

    def __init__(self) -> None:
        self.convs: dict[str, Conversation] = {}
        self.by_leg: dict[str, str] = {}
        self.calls = LiveCalls()
        self.timers: list[tuple[float, str]] = []
        self._armed: dict[str, float] = {}
        """The deadline last pushed for each conversation (a command that keeps it pushes nothing)."""

    def find(self, leg_id: str) -> Conversation | None:
        conv_id = self.by_leg.get(leg_id)
        return None if conv_id is None else self.convs.get(conv_id)

    def sync(self, conv: Conversation, events: list[ev.Event] | None = None) -> None:
        """Bring the indexes and views of `conv` in step with it (after a command, a load or a reload)."""
        if events is not None:
            for event in events:
                if isinstance(event, ev.LegEnded | ev.LegReleased):
                    self.by_leg.pop(event.leg_id, None)
                    self.calls.pop(event.leg_id, None)
        else:
            for leg_id in [k for k, v in self.by_leg.items() if v == conv.id and k not in conv.legs]:
                self.by_leg.pop(leg_id, None)
                self.calls.pop(leg_id, None)
        if not conv.legs:
            self.convs.pop(conv.id, None)
            self._armed.pop(conv.id, None)
            self.compact_timers()
            return
        self.convs[conv.id] = conv
        calls = self.calls
        for leg in conv.legs.values():
            view = calls.get(leg.id)
            if view is None:
                self.by_leg[leg.id] = conv.id
                calls[leg.id] = view_of(conv.id, conv.tenant_id, leg)
            else:
                refresh(view, leg)

    def drop(self, conv_id: str) -> None:
        self._armed.pop(conv_id, None)
        conv = self.convs.pop(conv_id, None)
        for leg_id in [k for k, v in self.by_leg.items() if v == conv_id] if conv is None else list(conv.legs):
            self.by_leg.pop(leg_id, None)
            self.calls.pop(leg_id, None)

    # -- timers ----------------------------------------------------------------------------------------------
    def push_timer(self, conv: Conversation) -> float | None:
        """Arm the conversation's earliest deadline; returns it when it is now the earliest of all."""
        deadline = conv.next_deadline()
        if deadline is None or self._armed.get(conv.id) == deadline:
            return None
        self._armed[conv.id] = deadline
        first = self.timers[0][0] if self.timers else None
        heapq.heappush(self.timers, (deadline, conv.id))
        return deadline if first is None or deadline < first else None

    def pop_due(self, now: float) -> list[str]:
        due: list[str] = []
        while self.timers and self.timers[0][0] <= now:
            _, conv_id = heapq.heappop(self.timers)
            self._armed.pop(conv_id, None)
            if conv_id not in due:
                due.append(conv_id)
        return due

    def compact_timers(self) -> None:
        """Drop the deadlines of ended conversations once they outnumber the live ones' (amortised O(1))."""
        if len(self.timers) > 64 and len(self.timers) > 4 * len(self.convs):
            live = [(d, conv.id) for conv in self.convs.values() if (d := conv.next_deadline()) is not None]
            heapq.heapify(live)
            self.timers = live


class UnitOfWork:
    """Depth, staged batches, subscribers and the fault hold-off of timers (one per CallService)."""

    def __init__(
        self,
        store: Store,
        sink: TransactionSink,
        live: LiveConversations,
        *,
        clock: Callable[[], float],
        on_deadline: Callable[[float], None] | None = None,
        fault_retry: float = 1.0,
    ) -> None:
        self.store = store
        self.sink = sink
        self.live = live
        self.clock = clock
        self.on_deadline = on_deadline
        self.subscribers: list[Subscriber] = []
        self._depth = 0
        self._batches: list[Batch] = []
        self._dirty: set[str] = set()
        self.fault_retry = fault_retry
        """Seconds timers wait after a storage fault before they run again."""
        self.hold_until = 0.0
        """Timers do not fire before this time (a storage fault stopped them)."""
        self.faults = 0
        """Units that failed on a storage fault."""

    @property
    def active(self) -> bool:
        return self._depth > 0

    @contextmanager
    def unit(self) -> Iterator[None]:
        outermost = self._depth == 0
        self._depth += 1
        batches: list[Batch] = []
        try:
            with self.sink.transaction():
                yield
                if outermost:
                    self._flush()
        except BaseException as exc:
            if outermost:
                if isinstance(exc, StoreUnavailable):
                    self.faults += 1
                failed, self._batches = self._batches, []
                self._rollback(failed)
            raise
        else:
            if outermost:
                self._dirty.clear()
                batches, self._batches = self._batches, []
        finally:
            self._depth -= 1
        for batch in batches:
            self._committed(batch)

    def apply(
        self, conv: Conversation, command: c.Command, timeouts: ConversationTimeouts, now: float | None = None
    ) -> list[ev.Event]:
        """Apply `command` to `conv` at `now` (the clock's time by default) inside the current unit; its events,
        staged with every subscriber."""
        assert self._depth > 0, "apply() outside a unit of work"
        conv.timeouts = timeouts
        roster_before = tuple(conv.roster.entries()) if conv.kind is not ConversationKind.PEER_TO_PEER else ()
        events = conv.apply(command, self.clock() if now is None else now)
        if not events and not isinstance(command, c.KeepAlive | c.MoveCallback):
            return events
        self._dirty.add(conv.id)
        self.live.sync(conv, events)
        first = self.live.push_timer(conv)
        if first is not None and self.on_deadline is not None:
            self.on_deadline(first)
        if events:
            batch = Batch(conv.id, conv.tenant_id, conv.kind, tuple(events), roster_before)
            self._batches.append(batch)
            for event in events:
                for sub in self.subscribers:
                    sub.staged(batch, event)
            for sub in self.subscribers:
                sub.staged_done(batch)
        return events

    def _committed(self, batch: Batch) -> None:
        for event in batch.events:
            for sub in self.subscribers:
                try:
                    sub.committed(batch, event)
                except Exception:  # the change committed: one subscriber failing must not hide it or stop the rest
                    log.exception("subscriber failed after commit")

    def _flush(self) -> None:
        puts: list[tuple[str, str, JsonObj]] = []
        gone: list[str] = []
        for conv_id in self._dirty:
            conv = self.live.convs.get(conv_id)
            if conv is not None:
                puts.append((KIND, conv_id, conv.to_doc()))
            else:
                gone.append(conv_id)
        if puts:
            self.store.put_docs(puts)
        if gone:
            self.store.delete_many(KIND, gone)

    def _rollback(self, failed: list[Batch]) -> None:
        dirty, self._dirty = self._dirty, set()
        try:
            for conv_id in dirty:
                doc = self.store.get(KIND, conv_id)
                self.live.drop(conv_id)
                if doc is not None:
                    conv = Conversation.from_doc(doc)
                    self.live.sync(conv)
                    self.live.push_timer(conv)
        except Exception:
            log.exception("reloading conversations after a failed unit failed: dropping them from memory")
            for conv_id in dirty:
                self.live.drop(conv_id)
        for sub in self.subscribers:
            try:
                sub.rolled_back(failed)
            except Exception:
                log.exception("subscriber could not undo a failed unit")

    # -- timers ----------------------------------------------------------------------------------------------
    def fire_due(self, now: float, fire: Callable[[float], None]) -> None:
        """Run `fire(now)` unless a storage fault holds timers off; a fault holds them off `fault_retry` s."""
        if now < self.hold_until:
            return
        try:
            fire(now)
        except StoreUnavailable as exc:
            self.hold_until = now + self.fault_retry
            log.warning("call timers held off %.1f s: %s", self.fault_retry, exc.message)
            if self.on_deadline is not None:
                self.on_deadline(self.hold_until)

    def next_deadline(self) -> float | None:
        timers = self.live.timers
        if not timers:
            return None
        return max(timers[0][0], self.hold_until)
