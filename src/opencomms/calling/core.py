"""The conversation core behind `CallService`: every command is one unit of work of the async ledger.

`Core.run(conv_id, command)` is `await ledger.apply(conv_id, unit)` on the node's conversation store (memory or the
SQLite file): the unit applies the command to the conversation (loaded on demand into the ledger's cache), projects
the notifications of its events (`calling.projector`) and puts the new document, or deletes it once it ended; the
store writes document and notifications in one write fenced by the version the unit loaded. A stale writer is
refused (`StaleVersion`): the ledger reloads and reruns the unit, which is pure for that reason (no side effect
before the commit). After the commit, in the conversation's lock: the node's leg views (`LegViews`) and timers are
brought in step, the subscribers hear the events (media, gateways, in that order), then the notifications are
released to the dispatcher. Nothing is loaded at start: the store's deadline index says when timers are due
(`Timers`), and a conversation read from the store (after a restart) rejoins the engine and ends the external legs
a previous process held (`on_load`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import NamedTuple, Protocol

from opencomms.calling.ledger import conversation_ledger
from opencomms.calling.projector import NotificationProjector
from opencomms.calling.subscribers import Batch, Subscriber
from opencomms.calling.views import LegViews, UnitViews
from opencomms.directory import Directory
from opencomms.domain import commands as c
from opencomms.domain import events as ev
from opencomms.domain.conversation import Conversation
from opencomms.domain.errors import NotFound
from opencomms.domain.rules import ConversationKind, ConversationTimeouts
from opencomms.store.base import OutboxEntry, StoreUnavailable
from opencomms.store.conversations import ConversationStore
from opencomms.store.ledger import Ledger, Unit

log = logging.getLogger("opencomms.calls")

__all__ = ["Core", "Timers"]

_ALWAYS_WRITTEN = (c.KeepAlive, c.MoveCallback, c.FireTimers, c.ConfigureMeeting)
"""Commands that change a deadline or a URL without an event: their unit writes even when no event came."""


class _Committed(NamedTuple):
    """What a unit hands to `_published`: its events, the conversation as the command left it (None: ended) and the
    legs the command changed."""

    batch: Batch
    state: Conversation | None
    legs: frozenset[str]


class Sink(Protocol):
    """The dispatcher: committed notifications are released to it (they are in the store already)."""

    def release(self, entries: list[OutboxEntry]) -> None: ...


class Timers:
    """When to fire conversations' timers: the store's deadline index is the truth (nothing to load at start); the
    earliest deadline this node knows of arms the node's one loop timer. After a storage fault timers hold off
    `fault_retry` seconds."""

    def __init__(
        self, store: ConversationStore, *, on_deadline: Callable[[float], None] | None, fault_retry: float = 1.0
    ) -> None:
        self.store = store
        self.on_deadline = on_deadline
        self.fault_retry = fault_retry
        self.hold_until = 0.0
        """Timers do not fire before this time (a storage fault stopped them)."""
        self.deadlines: dict[str, float] = {}
        """The earliest deadline of each conversation this node changed or loaded (a gauge; not the truth)."""
        self.earliest: float | None = None

    def noted(self, conv_id: str, deadline: float | None) -> None:
        """A conversation committed or loaded with this earliest deadline."""
        if deadline is None:
            self.deadlines.pop(conv_id, None)
            return
        if self.deadlines.get(conv_id) == deadline:
            return
        self.deadlines[conv_id] = deadline
        if self.earliest is None or deadline < self.earliest:
            self.earliest = deadline
            if self.on_deadline is not None:
                self.on_deadline(deadline)

    def next_deadline(self) -> float | None:
        return None if self.earliest is None else max(self.earliest, self.hold_until)

    async def start(self) -> None:
        """Learn the earliest stored deadline (after a restart: the timers of conversations nobody loaded yet)."""
        first = await self.store.next_deadline()
        if first is not None and (self.earliest is None or first < self.earliest):
            self.earliest = first

    async def fire(self, now: float, fire_one: Callable[[str, float], Awaitable[object]]) -> None:
        """Run `fire_one(conv_id, now)` for every conversation whose timer is due at `now`, page by page."""
        if now < self.hold_until:
            return
        self.earliest = None
        try:
            seen: set[str] = set()
            while True:
                due = await self.store.due(now)
                fresh = [conv_id for conv_id, _ in due if conv_id not in seen]
                for conv_id in fresh:
                    seen.add(conv_id)
                    try:
                        await fire_one(conv_id, now)
                    except StoreUnavailable:
                        raise
                    except Exception:  # a bug in one conversation must not stop the others' timers
                        log.exception("timer failed", extra={"conversation_id": conv_id})
                if len(due) < 256 or not fresh:
                    break
            first = await self.store.next_deadline()
        except StoreUnavailable as exc:
            self.hold_until = now + self.fault_retry
            self.earliest = now
            log.warning("call timers held off %.1f s: %s", self.fault_retry, exc.message)
            if self.on_deadline is not None:
                self.on_deadline(self.hold_until)
            return
        if first is not None and (self.earliest is None or first < self.earliest):
            self.earliest = first


class Core:
    """The ledger, the leg views, the timers and the subscribers of one node (see the module notes)."""

    def __init__(
        self,
        store: ConversationStore,
        directory: Directory,
        sink: Sink,
        *,
        clock: Callable[[], float],
        on_deadline: Callable[[float], None] | None = None,
        retries: int = 3,
        cache_size: int = 100_000,
    ) -> None:
        self.store = store
        self.clock = clock
        self.views = LegViews()
        self.projector = NotificationProjector(directory, sink)
        self.subscribers: list[Subscriber] = []
        self.load_listeners: list[Callable[[Conversation], None]] = []
        """Hear each conversation read from the store into the cache (media rejoins, orphaned external legs)."""
        self.timers = Timers(store, on_deadline=on_deadline)
        self.timeouts_of: Callable[[], ConversationTimeouts] = ConversationTimeouts
        """The timeouts a conversation runs with (the node's [calls] section)."""
        self.ledger: Ledger[Conversation] = conversation_ledger(
            store,
            release=sink.release,
            publish=self._published,
            on_load=self._loaded,
            retries=retries,
            cache_size=cache_size,
        )
        self.faults = 0
        """Units that failed on a storage fault."""

    # -- commands ----------------------------------------------------------------------------------------------
    async def run(
        self,
        conv_id: str,
        command: c.Command,
        now: float | None = None,
        *,
        new: tuple[str, ConversationKind] | None = None,
        missing: bool = False,
        due_only: bool = False,
    ) -> list[ev.Event]:
        """Apply `command` to conversation `conv_id` in one unit of work. `new` = (tenant id, kind): create it when
        it does not exist; else a conversation that is gone drops the command (`missing`: raises NotFound).
        `due_only`: only if a timer of the conversation is due at `now` (FireTimers)."""
        at = self.clock() if now is None else now
        try:
            return await self.ledger.apply(conv_id, self.unit(command, at, new=new, missing=missing, due_only=due_only))
        except StoreUnavailable:
            self.faults += 1
            raise

    def unit(
        self,
        command: c.Command,
        now: float,
        *,
        new: tuple[str, ConversationKind] | None = None,
        missing: bool = False,
        due_only: bool = False,
    ) -> Callable[[Unit[Conversation]], list[ev.Event]]:
        """The re-runnable ledger command `run` applies (a `StaleVersion` reruns it on the reloaded conversation):
        `command` at `now`, the conversation put or deleted, its notifications projected, its events emitted."""
        timeouts = self.timeouts_of()
        projector = self.projector
        clock = self.clock

        def unit(u: Unit[Conversation]) -> list[ev.Event]:
            conv = u.state
            if conv is None:
                if new is None:
                    if missing:
                        raise NotFound(f"No conversation {u.conv_id!r}.")
                    return []  # a report about a conversation that ended meanwhile
                conv = Conversation(u.conv_id, new[0], new[1])
                if not conv.check(command):
                    return []
            elif due_only:
                deadline = conv.next_deadline()
                if deadline is None or deadline > now:
                    return []
            conv.timeouts = timeouts
            roster_before = tuple(conv.roster.entries()) if conv.kind is not ConversationKind.PEER_TO_PEER else ()
            events = conv.apply(command, now)
            if not events and not isinstance(command, _ALWAYS_WRITTEN):
                return events
            if conv.legs:
                u.put(conv)
            else:
                u.delete()
            batch = Batch(conv.id, conv.tenant_id, conv.kind, tuple(events), roster_before)
            if events:
                u.notify(*projector.project(batch, UnitViews(conv, self.views, conv.touched), clock(), conv))
            u.emit(_Committed(batch, conv if conv.legs else None, conv.touched))
            return events

        return unit

    # -- reads -------------------------------------------------------------------------------------------------
    async def conversation_of(self, leg_id: str) -> str | None:
        """The id of the conversation leg `leg_id` belongs to (the store's leg index when this node has no view)."""
        conv_id = self.views.by_leg.get(leg_id)
        return conv_id if conv_id is not None else await self.ledger.find_leg(leg_id)

    async def find(self, leg_id: str) -> Conversation | None:
        """The conversation of leg `leg_id`, loaded if needed (read only)."""
        conv_id = await self.conversation_of(leg_id)
        if conv_id is None:
            return None
        conv = self.ledger.cached(conv_id)
        return conv if conv is not None else await self.ledger.get(conv_id)

    async def get(self, conv_id: str) -> Conversation | None:
        conv = self.ledger.cached(conv_id)
        return conv if conv is not None else await self.ledger.get(conv_id)

    def conversations(self) -> list[Conversation]:
        """The conversations in memory (the live ones of this node)."""
        return self.ledger.states()

    # -- after the commit, in the conversation's lock --------------------------------------------------------
    def _published(self, conv_id: str, items: list[object]) -> None:
        for item in items:
            assert isinstance(item, _Committed)
            batch, conv = item.batch, item.state
            self.views.sync(conv_id, conv, batch.events, item.legs)
            self.timers.noted(conv_id, None if conv is None else conv.next_deadline())
            subscribers = self.subscribers
            for event in batch.events:
                for sub in subscribers:
                    try:
                        sub.committed(batch, event)
                    except Exception:  # the change committed: one subscriber failing must not hide it or stop the rest
                        log.exception("subscriber failed after commit")

    def _loaded(self, conv_id: str, conv: Conversation) -> None:
        conv.timeouts = self.timeouts_of()
        self.views.sync(conv_id, conv)
        self.timers.noted(conv_id, conv.next_deadline())
        for listener in self.load_listeners:
            try:
                listener(conv)
            except Exception:
                log.exception("a listener of loaded conversations failed", extra={"conversation_id": conv_id})
