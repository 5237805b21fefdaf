"""The one repository interface every store implements: JSON documents by kind and key, plus the outbox.

Documents are plain JSON-able dicts; typed repositories (directory, calls) convert to and from them.
The outbox is an ordered, durable queue of notification deliveries.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from opencomms.domain.errors import ServiceUnavailable

Doc = dict[str, Any]


class StoreUnavailable(ServiceUnavailable):
    """The store cannot read or write right now: disk full, read-only, I/O error, or the write lock held elsewhere
    longer than the store waits. The change that raised it was rolled back; the request fails with 503 and
    Retry-After (Graph's serviceNotAvailable), and the node keeps running."""

    def __init__(self, message: str, *, reason: str = "unavailable", retry_after: int = 1) -> None:
        super().__init__(message, retry_after=retry_after)
        self.reason = reason
        """A short machine word: full, readonly, locked, io, unavailable."""


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One notification delivery waiting to be made.

    Entries that share `order_key` (a call id) are delivered strictly in `seq` order.
    Times are wall-clock epoch seconds, because they survive restarts.
    """

    id: str
    """Delivery id (GUID), sent to the bot so it can drop duplicates."""
    order_key: str
    app_id: str
    tenant_id: str
    url: str
    body: bytes
    created_at: float
    next_attempt_at: float
    attempts: int = 0
    seq: int = 0
    """Assigned by the store on append; increases with every append."""

    def with_attempt(self, next_attempt_at: float) -> OutboxEntry:
        return replace(self, attempts=self.attempts + 1, next_attempt_at=next_attempt_at)

    def with_seq(self, seq: int) -> OutboxEntry:
        """This entry numbered `seq` (built directly: `replace` costs several times more, on every append)."""
        return OutboxEntry(
            self.id,
            self.order_key,
            self.app_id,
            self.tenant_id,
            self.url,
            self.body,
            self.created_at,
            self.next_attempt_at,
            self.attempts,
            seq,
        )


class Store(abc.ABC):
    """Key/document storage with transactions and a durable outbox. Not thread-safe: one event loop owns it.

    Transactions are one template (`transaction`) over three primitives a store implements: `_begin`,
    `_commit` and `_rollback`, plus `_fault` to turn a backend error into StoreUnavailable."""

    _depth: int = 0
    """Open `transaction()` blocks (0: none); only the outermost begins and commits."""

    # -- documents ---------------------------------------------------------------------------------------
    @abc.abstractmethod
    def get(self, kind: str, key: str) -> Doc | None: ...

    @abc.abstractmethod
    def put(self, kind: str, key: str, doc: Doc) -> None: ...

    @abc.abstractmethod
    def delete(self, kind: str, key: str) -> bool:
        """Remove a document; True if it existed."""

    @abc.abstractmethod
    def scan(self, kind: str) -> Iterator[tuple[str, Doc]]:
        """Every (key, doc) of a kind, in key order."""

    def put_many(self, kind: str, items: Iterable[tuple[str, Doc]]) -> None:
        """Put several documents of one kind (a store may do it in one statement)."""
        self.put_docs((kind, key, doc) for key, doc in items)

    def put_docs(self, items: Iterable[tuple[str, str, Doc]]) -> None:
        """Put several (kind, key, doc) documents of any kinds (a store may do it in one statement)."""
        for kind, key, doc in items:
            self.put(kind, key, doc)

    def update(self, kind: str, key: str, change: Callable[[Doc | None], Doc]) -> Doc:
        """Write `change(the document or None)` and return it. `change` builds a new document from what it is given
        and may be called more than once (a store may guess first and check when it writes: Redis)."""
        doc = change(self.get(kind, key))
        self.put(kind, key, doc)
        return doc

    def delete_later(self, kind: str, keys: Iterable[str]) -> None:
        """Delete documents nobody reads any more (an ended call's operations); a store may hold the deletion a
        moment to send it with its next write. Default: at once."""
        self.delete_many(kind, keys)

    def delete_many(self, kind: str, keys: Iterable[str]) -> None:
        """Delete several documents of one kind (missing ones are ignored)."""
        for key in keys:
            self.delete(kind, key)

    def change_marker(self) -> object:
        """A value that changes when another process may have changed the data (e.g. the CLI writing to the
        same SQLite file), so that a cache of documents can tell when to reload. Writes made through this
        store object do not change it: their owner invalidates its own caches. Default: never changes."""
        return None

    # -- outbox ------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def outbox_append(self, entry: OutboxEntry) -> OutboxEntry:
        """Persist a new entry; returns it with its `seq` assigned."""

    def outbox_append_many(self, entries: list[OutboxEntry]) -> list[OutboxEntry]:
        """Persist new entries in this order (a store may do it in one statement); returns them with `seq` (inside a
        transaction a store may number them at its commit instead, in commit order: Redis returns them with seq 0)."""
        return [self.outbox_append(entry) for entry in entries]

    @abc.abstractmethod
    def outbox_update(self, entry: OutboxEntry) -> None:
        """Persist a changed entry (attempts, next attempt, url)."""

    @abc.abstractmethod
    def outbox_remove(self, entry_id: str) -> None: ...

    def outbox_remove_many(self, entry_ids: Iterable[str]) -> None:
        """Remove several entries (a store may do it in one statement)."""
        for entry_id in entry_ids:
            self.outbox_remove(entry_id)

    @abc.abstractmethod
    def outbox_load(self) -> list[OutboxEntry]:
        """Every pending entry, in `seq` order."""

    # -- lifecycle ---------------------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes atomically. Nestable: the outermost block commits, an exception rolls back (and a backend
        fault, at begin, inside or at commit, comes out as StoreUnavailable after the rollback)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        try:
            self._begin()
        except Exception as exc:
            fault = self._fault(exc)
            if fault is None:
                raise
            raise fault from exc
        self._depth = 1
        try:
            yield
            self._commit()
        except BaseException as exc:
            self._rollback()
            fault = self._fault(exc)
            if fault is None:
                raise
            raise fault from exc
        finally:
            self._depth = 0

    @abc.abstractmethod
    def _begin(self) -> None:
        """Start the outermost transaction."""

    @abc.abstractmethod
    def _commit(self) -> None:
        """Make the outermost transaction's writes durable."""

    @abc.abstractmethod
    def _rollback(self) -> None:
        """Undo the outermost transaction's writes (must not raise: a failed rollback is logged)."""

    def _fault(self, exc: BaseException) -> StoreUnavailable | None:
        """The StoreUnavailable a backend error amounts to (None: let it through as it is). Default: none."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources; idempotent."""
