"""The async conversation store: one versioned document per conversation, written together with its outbox entries.

Keyed by conversation id. `commit` checks the stored version against the one the writer loaded (a fencing token:
a writer holding an old version is refused with `StaleVersion` and nothing of its write lands), replaces or deletes
the document, and appends the notifications its events produced, all in one atomic write. Index queries (which
conversation a leg belongs to, which conversations have a timer due, every live conversation page by page) replace
the load-all at start. The memory implementation lives here; SQLite in `store.conversations_sqlite`; Redis in
`store.conversations_redis` (one Lua script per commit, with a lease per conversation). It holds no domain
knowledge: documents are JSON-able dicts.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Awaitable, Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from opencomms.domain.errors import Conflict
from opencomms.store.base import Doc, OutboxEntry, Store
from opencomms.store.sqlite import _dumps, _loads

if TYPE_CHECKING:
    from opencomms.store.redis_common import RedisTarget

__all__ = [
    "ConversationStore",
    "Loaded",
    "MemoryConversationStore",
    "StaleVersion",
    "conversations_beside",
    "open_conversations",
    "stored_conversations",
]


class StaleVersion(Conflict):
    """The stored version of a conversation is not the one the writer expected: another writer (another node, or a
    unit that ran in between) committed newer state. Nothing of the refused write was stored. The ledger reloads and
    retries the command; when its retries run out the request fails 409."""

    def __init__(self, conv_id: str, expected: int, actual: int) -> None:
        super().__init__(f"conversation {conv_id} changed meanwhile (version {actual}, expected {expected})")
        self.conv_id = conv_id
        self.expected = expected
        self.actual = actual
        """The stored version when the write was refused (0: no such conversation)."""


@dataclass(frozen=True, slots=True)
class Loaded:
    """A conversation document as stored, with its version (1 for a new conversation, +1 per commit)."""

    doc: Doc
    version: int


class ConversationStore(abc.ABC):
    """Versioned conversation documents plus the outbox, for one event loop. Every method is a coroutine (or returns
    an awaitable) and never blocks the loop on I/O."""

    @abc.abstractmethod
    async def load(self, conv_id: str) -> Loaded | None:
        """The stored document and version, or None when no such conversation exists."""

    @abc.abstractmethod
    def commit(
        self,
        conv_id: str,
        expected_version: int,
        doc: Doc | None,
        outbox: Sequence[OutboxEntry] = (),
        *,
        legs: Collection[str] | None = None,
        deadline: float | None = None,
    ) -> Awaitable[int]:
        """Write one conversation atomically: if its stored version is `expected_version` (0: it must not exist),
        store `doc` (None: delete it and its leg index) and append `outbox`, all or nothing, and return the new
        version (0 after a delete). Otherwise raise `StaleVersion` and write nothing. `legs`: the call leg ids that
        belong to it now (None: unchanged); `deadline`: its earliest timer (None: none). StoreUnavailable when the
        write cannot be made (nothing written). The write is queued when this returns and happens even if the
        awaiting task is cancelled (await the result to learn the outcome)."""

    @abc.abstractmethod
    async def find_leg(self, leg_id: str) -> str | None:
        """The conversation a call leg belongs to."""

    @abc.abstractmethod
    async def due(self, now: float, limit: int = 256) -> list[tuple[str, float]]:
        """(conversation id, deadline) of the conversations whose earliest timer is due at `now`, earliest first."""

    @abc.abstractmethod
    async def next_deadline(self) -> float | None:
        """The earliest timer of any conversation (None: no timer)."""

    @abc.abstractmethod
    async def live(self, after: str = "", limit: int = 1000) -> list[str]:
        """Ids of stored (live: ended conversations are deleted) conversations greater than `after`, in id order,
        at most `limit`: page through them for recovery without loading them all at once."""

    @abc.abstractmethod
    async def outbox_load(self) -> list[OutboxEntry]:
        """Every pending outbox entry, in `seq` order (what a dispatcher loads at start)."""

    @abc.abstractmethod
    async def outbox_remove(self, entry_ids: Iterable[str]) -> None:
        """Remove finished outbox entries (a store may group them with the next commits)."""

    @abc.abstractmethod
    async def outbox_update(self, entries: Iterable[OutboxEntry]) -> None:
        """Persist changed entries (attempts, next attempt, url) of a retry or a redirect."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Finish queued writes and release resources; idempotent."""


def check_commit(expected_version: int, doc: Doc | None) -> None:
    """Refuse what no store can do: a negative version."""
    if expected_version < 0:
        raise ValueError("expected_version must be >= 0")


class MemoryConversationStore(ConversationStore):
    """In process, for tests and throwaway nodes. Commits are applied synchronously when `commit` is called (one
    loop step: atomic). Outbox entries go to `outbox` (a Store, e.g. the node's MemoryStore, so that its
    dispatcher sees them) or to a private list."""

    def __init__(self, outbox: Store | None = None) -> None:
        self._docs: dict[str, tuple[str, int]] = {}
        self._legs: dict[str, str] = {}
        self._by_conv: dict[str, frozenset[str]] = {}
        self._deadlines: dict[str, float] = {}
        self._outbox_store = outbox
        self._outbox: list[OutboxEntry] = []
        self._seq = 0
        self.commits = 0
        """Successful commits."""

    async def load(self, conv_id: str) -> Loaded | None:
        got = self._docs.get(conv_id)
        return None if got is None else Loaded(_loads(got[0]), got[1])

    def commit(
        self,
        conv_id: str,
        expected_version: int,
        doc: Doc | None,
        outbox: Sequence[OutboxEntry] = (),
        *,
        legs: Collection[str] | None = None,
        deadline: float | None = None,
    ) -> Awaitable[int]:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        try:
            fut.set_result(self._commit(conv_id, expected_version, doc, outbox, legs, deadline))
        except Exception as exc:
            fut.set_exception(exc)
        return fut

    def _commit(
        self,
        conv_id: str,
        expected: int,
        doc: Doc | None,
        outbox: Sequence[OutboxEntry],
        legs: Collection[str] | None,
        deadline: float | None,
    ) -> int:
        check_commit(expected, doc)
        current = self._docs.get(conv_id)
        actual = 0 if current is None else current[1]
        if actual != expected:
            raise StaleVersion(conv_id, expected, actual)
        text = None if doc is None else _dumps(doc)  # fails before anything changes
        entries = list(outbox)
        if self._outbox_store is not None:
            self._outbox_store.outbox_append_many(entries)
        else:
            for entry in entries:
                self._seq += 1
                self._outbox.append(replace(entry, seq=self._seq))
        if text is None:
            self._docs.pop(conv_id, None)
            self._deadlines.pop(conv_id, None)
            self._set_legs(conv_id, ())
            version = 0
        else:
            version = expected + 1
            self._docs[conv_id] = (text, version)
            if deadline is None:
                self._deadlines.pop(conv_id, None)
            else:
                self._deadlines[conv_id] = deadline
            if legs is not None:
                self._set_legs(conv_id, legs)
        self.commits += 1
        return version

    def _set_legs(self, conv_id: str, legs: Collection[str]) -> None:
        for leg in self._by_conv.pop(conv_id, frozenset()):
            if self._legs.get(leg) == conv_id:
                del self._legs[leg]
        if legs:
            self._by_conv[conv_id] = frozenset(legs)
            for leg in legs:
                self._legs[leg] = conv_id

    async def find_leg(self, leg_id: str) -> str | None:
        return self._legs.get(leg_id)

    async def due(self, now: float, limit: int = 256) -> list[tuple[str, float]]:
        due = sorted((d, c) for c, d in self._deadlines.items() if d <= now)[:limit]
        return [(c, d) for d, c in due]

    async def next_deadline(self) -> float | None:
        return min(self._deadlines.values(), default=None)

    async def live(self, after: str = "", limit: int = 1000) -> list[str]:
        return sorted(c for c in self._docs if c > after)[:limit]

    async def outbox_load(self) -> list[OutboxEntry]:
        if self._outbox_store is not None:
            return self._outbox_store.outbox_load()
        return list(self._outbox)

    async def outbox_remove(self, entry_ids: Iterable[str]) -> None:
        if self._outbox_store is not None:
            self._outbox_store.outbox_remove_many(entry_ids)
            return
        gone = set(entry_ids)
        self._outbox = [e for e in self._outbox if e.id not in gone]

    async def outbox_update(self, entries: Iterable[OutboxEntry]) -> None:
        if self._outbox_store is not None:
            for entry in entries:
                self._outbox_store.outbox_update(entry)
            return
        changed = {e.id: e for e in entries}
        self._outbox = [e if e.id not in changed else replace(changed[e.id], seq=e.seq) for e in self._outbox]


async def open_conversations(
    url: str,
    *,
    outbox: Store | None = None,
    busy_timeout: float = 1.0,
    max_batch: int = 512,
    cluster: RedisTarget | None = None,
) -> ConversationStore:
    """Open the conversation store for the node's store URL (`memory://`: in process, its outbox in `outbox`, the
    node's MemoryStore, so that its dispatcher delivers it; `sqlite:///path.db`: the same file as the node's store).
    Raises StoreUnavailable when the file cannot be opened for writing. `redis://host:port/db`: see
    store.conversations_redis (this node's name and timings in `cluster`, default host-pid)."""
    if url.startswith("memory:"):
        return MemoryConversationStore(outbox)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from opencomms.store.conversations_redis import RedisConversationStore
        from opencomms.store.redis_common import RedisTarget, default_node_id

        return RedisConversationStore(cluster if cluster is not None else RedisTarget(url, default_node_id()))
    if url.startswith("sqlite:///"):
        from opencomms.store.conversations_sqlite import SqliteConversationStore

        return await SqliteConversationStore.open(
            url.removeprefix("sqlite:///"), busy_timeout=busy_timeout, max_batch=max_batch
        )
    raise ValueError(f"unsupported store url: {url!r} (use memory:// or sqlite:///path.db)")


def conversations_beside(
    store: Store, *, busy_timeout: float = 1.0, max_batch: int = 512, writer_thread: bool = False
) -> ConversationStore:
    """The conversation store that goes with the node's synchronous `store` (blocking: call it at start-up): the
    same SQLite file, the same Redis, or, for any other store, one in memory whose outbox is `store`'s (one outbox
    either way)."""
    from opencomms.store.redis_sync import RedisStore
    from opencomms.store.sqlite import SqliteStore

    if isinstance(store, RedisStore):
        from opencomms.store.conversations_redis import RedisConversationStore

        return RedisConversationStore(store.target)

    if isinstance(store, SqliteStore) and store.path != ":memory:":
        from opencomms.store.conversations_sqlite import SqliteConversationStore

        return SqliteConversationStore(
            store.path, busy_timeout=busy_timeout, max_batch=max_batch, writer_thread=writer_thread
        )
    return MemoryConversationStore(store)


async def stored_conversations(store: ConversationStore, page: int = 1000) -> list[Doc]:
    """Every stored conversation document, paged through `live()` (tools and tests; the node never needs all)."""
    docs: list[Doc] = []
    after = ""
    while ids := await store.live(after, page):
        for conv_id in ids:
            loaded = await store.load(conv_id)
            if loaded is not None:
                docs.append(loaded.doc)
        after = ids[-1]
    return docs
