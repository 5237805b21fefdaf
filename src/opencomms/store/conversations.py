"""The async conversation store: one versioned document per conversation, written together with its outbox entries.

Keyed by conversation id. `commit` checks the stored version against the one the writer loaded (a fencing token:
a writer holding an old version is refused with `StaleVersion` and nothing of its write lands), replaces or deletes
the document, and appends the notifications its events produced, all in one atomic write. Index queries (which
conversation a leg belongs to, which conversations have a timer due, every live conversation page by page) replace
the load-all at start. The memory implementation lives here; SQLite in `store.conversations_sqlite`; Redis in
`store.conversations_redis` (one Lua script per commit, with a lease per conversation). It holds no domain
knowledge: documents are JSON-able dicts.

Partial writes (`commit_delta`): a large conversation (a meeting of 1000 legs) is stored as a header plus one part
per leg or participant, so that a command writes what it changed (O(changed legs), not O(N)). A part's key is
`<list path>/<id>` (e.g. `legs/<leg id>`, `roster.participants/<participant id>`); `load` assembles the whole
document by appending each part, in the order the part was first written, to the list at its path in the header
(`assemble`): a reader sees the same document as after a whole write. The header's version fences every part: a
stale delta is refused before any part is written, and header and parts go in one atomic write. A store that cannot
write parts inherits the default `commit_delta`, which writes the whole document (`Delta.whole`) with `commit`.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from opencomms.domain.errors import Conflict
from opencomms.store.base import Doc, OutboxEntry, Store
from opencomms.store.sqlite import _dumps, _loads

if TYPE_CHECKING:
    from opencomms.store.redis_common import RedisTarget

__all__ = [
    "ConversationStore",
    "Delta",
    "Loaded",
    "MemoryConversationStore",
    "StaleVersion",
    "assemble",
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


@dataclass(frozen=True, slots=True)
class Delta:
    """What one commit changes of a conversation stored in parts (see the module notes): its header, the parts it
    added or changed (in the aggregate's order: a new part goes after every part written before it), the part keys it
    removed (applied first: a key both removed and written again moves to the end), and the leg index's changes."""

    header: Doc
    """The whole document but its parts: every list a part belongs to is present (empty) in it."""
    whole: Callable[[], tuple[Doc, Collection[str]]]
    """The whole document and every leg id, for a store that cannot write parts (computed only when called)."""
    parts: Sequence[tuple[str, Doc]] = ()
    removed: Collection[str] = ()
    complete: bool = False
    """`parts` and `legs_added` are all of them: the store drops every other part and leg row of the conversation
    (the aggregate's first write after it was created or loaded: whatever form the store held is replaced)."""
    legs_added: Collection[str] = ()
    legs_removed: Collection[str] = ()
    deadline: float | None = None
    """The conversation's earliest timer (None: none)."""

    @property
    def legs_changed(self) -> bool:
        return self.complete or bool(self.legs_added) or bool(self.legs_removed)


def assemble(header: Doc, parts: Iterable[tuple[str, Doc]]) -> Doc:
    """The whole document: each part appended, in order, to the list its key's path (`a.b/id`) names in `header`
    (created when missing). `header` is changed in place and returned."""
    for key, part in parts:
        path = key.partition("/")[0].split(".")
        node: Doc = header
        for name in path[:-1]:
            node = node.setdefault(name, {})
        node.setdefault(path[-1], []).append(part)
    return header


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

    def commit_delta(
        self, conv_id: str, expected_version: int, delta: Delta, outbox: Sequence[OutboxEntry] = ()
    ) -> Awaitable[int]:
        """Write one conversation's change in parts (see the module notes), fenced, atomic and queued as `commit`
        is; `expected_version` 0 makes a new conversation (`delta.complete` must then be set). This default, for a
        store that cannot write parts, writes the whole document with `commit`; a store that overrides it must
        assemble what `load` returns from the header and the parts."""
        doc, legs = delta.whole()
        return self.commit(
            conv_id,
            expected_version,
            doc,
            outbox,
            legs=legs if delta.legs_changed else None,
            deadline=delta.deadline,
        )

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
        self._parts: dict[str, dict[str, str]] = {}
        """The parts of conversations written in parts, in the order each was first written."""
        self._legs: dict[str, str] = {}
        self._by_conv: dict[str, set[str]] = {}
        self._deadlines: dict[str, float] = {}
        self._outbox_store = outbox
        self._outbox: list[OutboxEntry] = []
        self._seq = 0
        self.commits = 0
        """Successful commits."""

    async def load(self, conv_id: str) -> Loaded | None:
        got = self._docs.get(conv_id)
        if got is None:
            return None
        doc = _loads(got[0])
        parts = self._parts.get(conv_id)
        if parts:
            assemble(doc, ((key, _loads(text)) for key, text in parts.items()))
        return Loaded(doc, got[1])

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
        return self._now(lambda: self._commit(conv_id, expected_version, doc, outbox, legs, deadline))

    def commit_delta(
        self, conv_id: str, expected_version: int, delta: Delta, outbox: Sequence[OutboxEntry] = ()
    ) -> Awaitable[int]:
        if type(self).commit is not MemoryConversationStore.commit or "commit" in vars(self):
            # `commit` is wrapped (a subclass, a test's fault or gate): every write goes through it, whole
            return super().commit_delta(conv_id, expected_version, delta, outbox)
        return self._now(lambda: self._commit_delta(conv_id, expected_version, delta, outbox))

    @staticmethod
    def _now(write: Callable[[], int]) -> Awaitable[int]:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        try:
            fut.set_result(write())
        except Exception as exc:
            fut.set_exception(exc)
        return fut

    def _check(self, conv_id: str, expected: int) -> None:
        current = self._docs.get(conv_id)
        actual = 0 if current is None else current[1]
        if actual != expected:
            raise StaleVersion(conv_id, expected, actual)

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
        self._check(conv_id, expected)
        text = None if doc is None else _dumps(doc)  # fails before anything changes
        self._append(outbox)
        self._parts.pop(conv_id, None)  # a whole document replaces the parts
        if text is None:
            self._docs.pop(conv_id, None)
            self._deadlines.pop(conv_id, None)
            self._set_legs(conv_id, ())
            version = 0
        else:
            version = expected + 1
            self._docs[conv_id] = (text, version)
            self._set_deadline(conv_id, deadline)
            if legs is not None:
                self._set_legs(conv_id, legs)
        self.commits += 1
        return version

    def _commit_delta(self, conv_id: str, expected: int, delta: Delta, outbox: Sequence[OutboxEntry]) -> int:
        check_commit(expected, delta.header)
        self._check(conv_id, expected)
        header = _dumps(delta.header)  # every document is serialised before anything changes
        texts = [(key, _dumps(part)) for key, part in delta.parts]
        self._append(outbox)
        version = expected + 1
        self._docs[conv_id] = (header, version)
        parts = self._parts.get(conv_id)
        if parts is None or delta.complete:
            parts = self._parts[conv_id] = {}
        for key in delta.removed:
            parts.pop(key, None)
        for key, text in texts:
            parts[key] = text
        self._set_deadline(conv_id, delta.deadline)
        if delta.complete:
            self._set_legs(conv_id, delta.legs_added)
        else:
            mine = self._by_conv.setdefault(conv_id, set())
            for leg in delta.legs_removed:
                mine.discard(leg)
                if self._legs.get(leg) == conv_id:
                    del self._legs[leg]
            for leg in delta.legs_added:
                mine.add(leg)
                self._legs[leg] = conv_id
        self.commits += 1
        return version

    def _append(self, outbox: Sequence[OutboxEntry]) -> None:
        entries = list(outbox)
        if self._outbox_store is not None:
            self._outbox_store.outbox_append_many(entries)
        else:
            for entry in entries:
                self._seq += 1
                self._outbox.append(replace(entry, seq=self._seq))

    def _set_deadline(self, conv_id: str, deadline: float | None) -> None:
        if deadline is None:
            self._deadlines.pop(conv_id, None)
        else:
            self._deadlines[conv_id] = deadline

    def _set_legs(self, conv_id: str, legs: Collection[str]) -> None:
        for leg in self._by_conv.pop(conv_id, set()):
            if self._legs.get(leg) == conv_id:
                del self._legs[leg]
        if legs:
            self._by_conv[conv_id] = set(legs)
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
    store: Store,
    *,
    busy_timeout: float = 1.0,
    max_batch: int = 512,
    writer_thread: bool = False,
    group_window: float = 0.0,
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

        conversations = SqliteConversationStore(
            store.path,
            busy_timeout=busy_timeout,
            max_batch=max_batch,
            writer_thread=writer_thread,
            connection=None if writer_thread else store.connection,  # on the loop: the store's own connection
            group_window=group_window,
        )
        if not writer_thread:  # its queued writes ride in the store's next write transaction
            store.rider = conversations
        return conversations
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
