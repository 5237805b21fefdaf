"""The one repository interface every store implements: JSON documents by kind and key, plus the outbox.

Documents are plain JSON-able dicts; typed repositories (directory, calls) convert to and from them.
The outbox is an ordered, durable queue of notification deliveries.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Any

Doc = dict[str, Any]


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


class Store(abc.ABC):
    """Key/document storage with transactions and a durable outbox. Not thread-safe: one event loop owns it."""

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

    # -- outbox ------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def outbox_append(self, entry: OutboxEntry) -> OutboxEntry:
        """Persist a new entry; returns it with its `seq` assigned."""

    @abc.abstractmethod
    def outbox_update(self, entry: OutboxEntry) -> None:
        """Persist a changed entry (attempts, next attempt, url)."""

    @abc.abstractmethod
    def outbox_remove(self, entry_id: str) -> None: ...

    @abc.abstractmethod
    def outbox_load(self) -> list[OutboxEntry]:
        """Every pending entry, in `seq` order."""

    # -- lifecycle ---------------------------------------------------------------------------------------
    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """Group writes atomically. Nestable: the outermost block commits, an exception rolls back."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources; idempotent."""
