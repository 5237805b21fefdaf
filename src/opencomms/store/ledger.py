"""The ledger: one command per unit of work against the async conversation store, with fencing and a cache.

`await ledger.apply(conv_id, command)` takes the conversation's lock (commands for one conversation run one at a
time on this node), loads it on demand (a cache keeps live conversations with their versions), runs the command
(a plain function of a `Unit`: it reads `unit.state`, puts or deletes it, adds notifications and events), commits
the new document and the notifications in one write with the version it loaded, and only then releases the
notifications to the dispatcher and the events to the subscribers. A `StaleVersion` (another writer got there
first) reloads and runs the command again, `retries` times at most; any other failure (StoreUnavailable, an error
in the command) drops the cached conversation, so the next command reloads what the store holds. Generic over the
aggregate (`Aggregate`: `to_doc`, `from_doc`, `version`); no I/O of its own, no Graph or SIP knowledge. Given a
`delta` function (the aggregate's change since its last commit as a `store.conversations.Delta`), a conversation is
written with `store.commit_delta`, in parts: a command on a large conversation writes and indexes O(changed), not
O(size) (a store without partial writes writes the whole document instead).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Generic, Protocol, Self, TypeVar

from opencomms.domain.ids import new_id
from opencomms.store.base import Doc, OutboxEntry
from opencomms.store.conversations import ConversationStore, Delta, StaleVersion

__all__ = ["Aggregate", "Index", "Ledger", "Unit", "new_entry"]


class Aggregate(Protocol):
    """What the ledger needs of a conversation aggregate."""

    version: int
    """The stored version it was loaded at (set by the ledger after each commit)."""

    def to_doc(self) -> Doc: ...

    @classmethod
    def from_doc(cls, doc: Doc) -> Self: ...


A = TypeVar("A", bound=Aggregate)
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Index:
    """What the store indexes of a conversation: its legs (leg id -> conversation) and its earliest timer."""

    legs: frozenset[str] = frozenset()
    deadline: float | None = None


def new_entry(
    *, order_key: str, app_id: str, tenant_id: str, url: str, body: bytes, now: float | None = None
) -> OutboxEntry:
    """A new outbox entry, due now (what `Dispatcher.submit` makes, for `Unit.notify`)."""
    at = time.time() if now is None else now
    return OutboxEntry(
        id=new_id(),
        order_key=order_key,
        app_id=app_id,
        tenant_id=tenant_id,
        url=url,
        body=body,
        created_at=at,
        next_attempt_at=at,
    )


class Unit(Generic[A]):
    """One command's view of one conversation: its state as loaded and what the command changes."""

    __slots__ = ("_write", "attempt", "conv_id", "events", "outbox", "state", "version")

    def __init__(self, conv_id: str, state: A | None, version: int, attempt: int) -> None:
        self.conv_id = conv_id
        self.state = state
        """The conversation (None: it does not exist, or the command deleted it)."""
        self.version = version
        """The version loaded (0: none); the commit expects it."""
        self.attempt = attempt
        """0 on the first run of the command, then 1, 2… after StaleVersion reloads."""
        self.outbox: list[OutboxEntry] = []
        self.events: list[object] = []
        self._write = False

    def put(self, state: A) -> None:
        """Store `state` (a new conversation, or the loaded one changed in place) with this unit."""
        self.state = state
        self._write = True

    def delete(self) -> None:
        """Delete the conversation (its legs leave the index) with this unit."""
        self.state = None
        self._write = True

    def notify(self, *entries: OutboxEntry) -> None:
        """Write these notifications with this unit; they reach the dispatcher once it has committed."""
        self.outbox.extend(entries)

    def emit(self, *events: object) -> None:
        """Publish these events to the subscribers once the unit has committed (dropped if it fails)."""
        self.events.extend(events)

    @property
    def writes(self) -> bool:
        return self._write or bool(self.outbox)


@dataclass(slots=True)
class _Cached(Generic[A]):
    state: A
    version: int
    legs: set[str]
    """The legs indexed for it (in `Ledger._legs`)."""


class _Lock:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class Ledger(Generic[A]):
    """Commands against conversations of type `kind`, one unit of work each (see the module notes)."""

    def __init__(
        self,
        store: ConversationStore,
        kind: type[A],
        *,
        index: Callable[[A], Index] | None = None,
        release: Callable[[list[OutboxEntry]], None] | None = None,
        publish: Callable[[str, list[object]], None] | None = None,
        on_load: Callable[[str, A], None] | None = None,
        delta: Callable[[A], Delta] | None = None,
        retries: int = 3,
        cache_size: int = 100_000,
    ) -> None:
        """`index`: what the store indexes of a conversation (default: nothing); `release`: hands committed
        notifications to the dispatcher; `publish`: hands committed events of a conversation to its subscribers
        (before its notifications are released: what a subscriber submits for the same calls goes first);
        `on_load`: hears each conversation read from the store into the cache (recovery after a restart); `delta`:
        what changed of a conversation since it was last committed or loaded (None: write whole documents);
        `retries`: reruns of a command refused as stale before StaleVersion reaches the caller; `cache_size`:
        conversations kept in memory (least recently used leave first)."""
        if retries < 0 or cache_size < 1:
            raise ValueError("retries must be >= 0 and cache_size >= 1")
        self.store = store
        self._kind = kind
        self._index = index
        self._release = release
        self._publish = publish
        self._on_load = on_load
        self._delta = delta
        self.retries = retries
        self.cache_size = cache_size
        self._cache: collections.OrderedDict[str, _Cached[A]] = collections.OrderedDict()
        self._legs: dict[str, str] = {}
        self._locks: dict[str, _Lock] = {}
        self.commits = 0
        """Units committed."""
        self.stale = 0
        """Commits refused as stale (each one reloaded and retried, or raised)."""
        self.rollbacks = 0
        """Units that failed and dropped their conversation from the cache."""

    # -- commands --------------------------------------------------------------------------------------------
    async def apply(self, conv_id: str, command: Callable[[Unit[A]], R]) -> R:
        """Run `command` on the conversation in one unit of work and return what it returns. The command must be
        pure (it may run again, on freshly loaded state, after a StaleVersion) and must `put` what it changes."""
        entry = self._enter(conv_id)  # (not `_locked`: this is the hot path, no generator-based context manager)
        try:
            async with entry.lock:
                attempt = 0
                while True:
                    unit = await self._begin(conv_id, attempt)
                    try:
                        result = command(unit)
                    except BaseException:
                        self._rollback(conv_id)
                        raise
                    try:
                        await self._commit(unit)
                    except StaleVersion:
                        if attempt >= self.retries:
                            raise
                        attempt += 1
                        continue
                    return result
        finally:
            self._leave(conv_id, entry)

    @asynccontextmanager
    async def unit(self, conv_id: str) -> AsyncIterator[Unit[A]]:
        """`async with ledger.unit(conv_id) as unit:` the same unit of work with the body as the command. The body
        cannot be rerun: a StaleVersion reaches the caller (the cache is dropped, so a new unit sees the new state).
        Do not await other conversations' units inside the body (one unit at a time per task)."""
        async with self._locked(conv_id):
            unit = await self._begin(conv_id, 0)
            try:
                yield unit
            except BaseException:
                self._rollback(conv_id)
                raise
            await self._commit(unit)

    # -- queries ---------------------------------------------------------------------------------------------
    def cached(self, conv_id: str) -> A | None:
        """The conversation if it is in memory (for reads that must not wait; do not change it)."""
        hit = self._cache.get(conv_id)
        return None if hit is None else hit.state

    async def get(self, conv_id: str) -> A | None:
        """The conversation, loaded if needed (do not change it: commands do, through `apply`)."""
        hit = self._cache.get(conv_id)
        if hit is not None:
            return hit.state
        async with self._locked(conv_id):
            return (await self._begin(conv_id, 0)).state

    async def find_leg(self, leg_id: str) -> str | None:
        """The conversation a call leg belongs to (from memory, else from the store's index)."""
        conv_id = self._legs.get(leg_id)
        return conv_id if conv_id is not None else await self.store.find_leg(leg_id)

    def evict(self, conv_id: str) -> None:
        """Forget the cached conversation (the next command reloads it)."""
        hit = self._cache.pop(conv_id, None)
        if hit is not None:
            self._unindex(conv_id, hit.legs)

    def states(self) -> list[A]:
        """The conversations in memory (a snapshot; do not change them)."""
        return [hit.state for hit in self._cache.values()]

    def __len__(self) -> int:
        return len(self._cache)

    # -- internals -------------------------------------------------------------------------------------------
    def _enter(self, conv_id: str) -> _Lock:
        entry = self._locks.get(conv_id)
        if entry is None:
            entry = self._locks[conv_id] = _Lock()
        entry.users += 1
        return entry

    def _leave(self, conv_id: str, entry: _Lock) -> None:
        entry.users -= 1
        if not entry.users:
            del self._locks[conv_id]

    @asynccontextmanager
    async def _locked(self, conv_id: str) -> AsyncIterator[None]:
        entry = self._enter(conv_id)
        try:
            async with entry.lock:
                yield
        finally:
            self._leave(conv_id, entry)

    async def _begin(self, conv_id: str, attempt: int) -> Unit[A]:
        hit = self._cache.get(conv_id)
        if hit is not None:
            self._cache.move_to_end(conv_id)
            return Unit(conv_id, hit.state, hit.version, attempt)
        loaded = await self.store.load(conv_id)
        if loaded is None:
            return Unit(conv_id, None, 0, attempt)
        state = self._kind.from_doc(loaded.doc)
        state.version = loaded.version
        self._remember(conv_id, state, loaded.version, self._index_of(state))
        if self._on_load is not None:
            self._on_load(conv_id, state)
        return Unit(conv_id, state, loaded.version, attempt)

    async def _commit(self, unit: Unit[A]) -> None:
        conv_id = unit.conv_id
        if not unit.writes:
            self._emit(unit)
            return
        state = unit.state
        entries = list(unit.outbox)
        delta: Delta | None = None
        index = Index()
        try:  # an index or a document that cannot be made, a closed store: nothing was written
            if state is not None and self._delta is not None:
                delta = self._delta(state)
                fut = asyncio.ensure_future(self.store.commit_delta(conv_id, unit.version, delta, entries))
            else:
                index = Index() if state is None else self._index_of(state)
                hit = self._cache.get(conv_id)
                legs: Collection[str] | None = index.legs
                if hit is not None and state is not None and hit.legs == index.legs:
                    legs = None  # unchanged: the store keeps its leg rows
                doc = None if state is None else state.to_doc()
                fut = asyncio.ensure_future(
                    self.store.commit(conv_id, unit.version, doc, entries, legs=legs, deadline=index.deadline)
                )
        except BaseException:
            self._rollback(conv_id)
            raise
        try:
            version = fut.result() if fut.done() else await asyncio.shield(fut)
        except asyncio.CancelledError:
            # The caller gave up, the write goes on: its notifications must still reach the dispatcher.
            self._rollback(conv_id)
            fut.add_done_callback(lambda f: self._late(f, unit, entries))
            raise
        except StaleVersion:
            self.stale += 1
            self._rollback(conv_id)
            raise
        except BaseException:
            self._rollback(conv_id)
            raise
        self.commits += 1
        if state is None:
            self.evict(conv_id)
        elif delta is not None:
            state.version = version
            self._remember_delta(conv_id, state, version, delta)
        else:
            state.version = version
            self._remember(conv_id, state, version, index)
        self._emit(unit)
        if entries and self._release is not None:
            self._release(entries)

    def _late(self, fut: asyncio.Future[int], unit: Unit[A], entries: list[OutboxEntry]) -> None:
        """The write of a unit whose caller was cancelled landed: its events and notifications go out as if the
        caller had waited (the cache does not guess: the next unit reloads the conversation)."""
        if fut.cancelled() or fut.exception() is not None:
            return
        self.commits += 1
        self._emit(unit)
        if entries and self._release is not None:
            self._release(entries)

    def _emit(self, unit: Unit[A]) -> None:
        if unit.events and self._publish is not None:
            self._publish(unit.conv_id, unit.events)

    def _rollback(self, conv_id: str) -> None:
        self.rollbacks += 1
        self.evict(conv_id)

    def _index_of(self, state: A) -> Index:
        return Index() if self._index is None else self._index(state)

    def _remember(self, conv_id: str, state: A, version: int, index: Index) -> None:
        old = self._cache.get(conv_id)
        if old is not None and old.legs != index.legs:
            self._unindex(conv_id, old.legs)
        self._cache[conv_id] = _Cached(state, version, set(index.legs))
        self._cache.move_to_end(conv_id)
        for leg in index.legs:
            self._legs[leg] = conv_id
        self._trim()

    def _remember_delta(self, conv_id: str, state: A, version: int, delta: Delta) -> None:
        """After a delta's commit: the cache and the leg index change by what the delta changed."""
        old = self._cache.get(conv_id)
        if old is None or delta.complete:  # (evicted meanwhile: the legs are counted again)
            every = frozenset(delta.legs_added) if delta.complete else self._index_of(state).legs
            self._remember(conv_id, state, version, Index(every))
            return
        old.state, old.version = state, version
        self._cache.move_to_end(conv_id)
        legs, index = old.legs, self._legs
        for leg in delta.legs_removed:
            legs.discard(leg)
            if index.get(leg) == conv_id:
                del index[leg]
        for leg in delta.legs_added:
            legs.add(leg)
            index[leg] = conv_id

    def _trim(self) -> None:
        while len(self._cache) > self.cache_size:
            oldest = next(iter(self._cache))
            if oldest in self._locks:  # in use: keep it (the cache may exceed its size for a moment)
                break
            self.evict(oldest)

    def _unindex(self, conv_id: str, legs: Collection[str]) -> None:
        for leg in legs:
            if self._legs.get(leg) == conv_id:
                del self._legs[leg]
