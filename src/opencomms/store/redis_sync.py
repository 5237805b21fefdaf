"""The synchronous Store on Redis: directory, app keys and secrets, SIP accounts, registrar bindings, operations.

The node uses its Store synchronously on the event loop (the directory, the registrar, the key ring), so this one
talks to Redis with redis-py's blocking client and a short socket timeout (`cluster.timeout`, 0.25 s by default):
on loopback or a LAN a command costs one round trip (tens of microseconds to a millisecond), and a Redis that does
not answer fails the request with StoreUnavailable (503 + Retry-After) instead of stalling the node. Documents are
one hash per kind (`doc:<kind>`, key -> JSON). A `transaction()` keeps its writes in memory (reads inside it see
them) and sends them at the end as one MULTI/EXEC, or, when it appended outbox entries, as one script (`DOCS`) that
writes the documents and appends the entries (numbered there, in commit order; the entries returned inside the
transaction have seq 0) with the same append part as the conversation store's (the stream, read into this node's
pending list in the same step): one round trip per transaction. A single write outside a transaction is one command
(with its MULTI only when it must also bump the marker), and `update` writes a document without reading it first
(`SWAP`: compare and set against what it guessed, merged again only if someone else wrote it). `delete_later` (an
ended call's operations) rides along with the next write (or goes alone after `LATER_S`). Every write of a
kind the directory caches (`CACHED_KINDS`) bumps `docs:gen`, which `change_marker` compares with the count of this
store's own writes, so a node's directory cache sees the writes of the other nodes and of the CLI (and not every call
record or operation another node writes: those would empty it several times a second under load).
No WATCH: a transaction's reads are not fenced against other nodes (the documents
here are written by one request at a time: an admin, a registration, an operation of the owner's call).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import redis
from redis import exceptions as rx

from opencomms.store import redis_common as rc
from opencomms.store.base import Doc, OutboxEntry, Store, StoreUnavailable
from opencomms.store.sqlite import _dumps, _loads

__all__ = ["RedisStore"]

log = logging.getLogger("opencomms.store")

LATER_S = 0.1
"""Seconds a `delete_later` waits for a write to ride along with before it is sent alone."""

MAX_LATER = 10_000
"""Deletions held at most (Redis down for long: the oldest are dropped; a restart's sweep removes what remains)."""

FAULTS = (rx.ConnectionError, rx.TimeoutError, rx.BusyLoadingError, rx.ReadOnlyError, rx.OutOfMemoryError)

CACHED_KINDS = frozenset({"tenant", "app", "instance", "address", "user"})
"""The document kinds the directory (opencomms.directory) reads through a cache: their writes change the marker."""

_DELETED = None
"""An overlay value: the document is deleted by the open transaction."""


class RedisStore(Store):
    """Documents and the outbox in Redis, for a node of a cluster (see the module notes)."""

    def __init__(self, target: rc.RedisTarget, *, client: redis.Redis | None = None) -> None:
        rc.check_url(target.url)
        self.target = target
        self.path = rc.redacted(target.url)
        self._redis = client or redis.Redis.from_url(
            target.url, socket_timeout=target.timeout, socket_connect_timeout=target.timeout
        )
        self._gen = target.key("docs", "gen")
        self._outbox = [target.key("outbox"), target.key("outbox", "seq"), target.key("outbox", "ids")]
        self._ids = target.key("outbox", "ids")
        self._state = target.key("outbox", "state")
        self._append = self._redis.register_script(rc.APPEND)
        self._docs = self._redis.register_script(rc.DOCS)
        self._swap = self._redis.register_script(rc.SWAP)
        self._remove = self._redis.register_script(rc.REMOVE)
        self._overlay: dict[tuple[str, str], str | None] = {}
        self._entries: list[OutboxEntry] = []
        self._own = 0
        """Writes of this store (each one bumped docs:gen once)."""
        self._later: list[tuple[str, str]] = []
        """(kind, key) of documents to delete with the next write (`delete_later`)."""
        self._later_timer: asyncio.TimerHandle | None = None
        self._closed = False
        try:
            self._redis.xgroup_create(self._outbox[0], rc.GROUP, id="0", mkstream=True)
        except rx.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        except FAULTS as exc:
            raise rc.unavailable(exc, self.path) from exc

    def _hash(self, kind: str) -> str:
        return self.target.key("doc", kind)

    def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self._closed:
            raise StoreUnavailable(f"store {self.path} is closed", reason="unavailable")
        try:
            return fn(*args, **kwargs)
        except FAULTS as exc:
            raise rc.unavailable(exc, self.path) from exc

    # -- documents ---------------------------------------------------------------------------------------
    def get(self, kind: str, key: str) -> Doc | None:
        if self._depth and (kind, key) in self._overlay:
            raw = self._overlay[(kind, key)]
        else:
            raw = self._run(self._redis.hget, self._hash(kind), key)
        return None if raw is None else _loads(raw)  # type: ignore[no-any-return]

    def put(self, kind: str, key: str, doc: Doc) -> None:
        self.put_docs([(kind, key, doc)])

    def put_docs(self, items: Iterable[tuple[str, str, Doc]]) -> None:
        rows = [(kind, key, _dumps(doc)) for kind, key, doc in items]
        if self._depth:
            for kind, key, text in rows:
                self._overlay[(kind, key)] = text
            return
        if len(rows) == 1 and rows[0][0] not in CACHED_KINDS and not self._later:
            kind, key, text = rows[0]
            self._run(self._redis.hset, self._hash(kind), key, text)
        elif rows:
            pipe = self._redis.pipeline(transaction=True)
            later = self._ride_along(pipe)
            for kind, key, text in rows:
                pipe.hset(self._hash(kind), key, text)
            self._bump(pipe, {kind for kind, _, _ in rows} | {kind for kind, _ in self._later})
            self._run(pipe.execute)
            del self._later[:later]

    def delete(self, kind: str, key: str) -> bool:
        if self._depth:
            existed = self.get(kind, key) is not None
            self._overlay[(kind, key)] = _DELETED
            return existed
        if kind not in CACHED_KINDS:
            return bool(self._run(self._redis.hdel, self._hash(kind), key))
        pipe = self._redis.pipeline(transaction=True)
        pipe.hdel(self._hash(kind), key)
        self._bump(pipe, {kind})
        return bool(self._run(pipe.execute)[0])

    def delete_many(self, kind: str, keys: Iterable[str]) -> None:
        keys = list(keys)
        if self._depth:
            for key in keys:
                self._overlay[(kind, key)] = _DELETED
        elif keys and kind not in CACHED_KINDS:
            self._run(self._redis.hdel, self._hash(kind), *keys)
        elif keys:
            pipe = self._redis.pipeline(transaction=True)
            pipe.hdel(self._hash(kind), *keys)
            self._bump(pipe, {kind})
            self._run(pipe.execute)

    def delete_later(self, kind: str, keys: Iterable[str]) -> None:
        """Held until the next write (documents, a transaction) sends them with it, or `LATER_S` passes; at once
        without an event loop (the CLI)."""
        if self._depth:  # with the transaction
            for key in keys:
                self._overlay[(kind, key)] = _DELETED
            return
        self._later += [(kind, key) for key in keys]
        del self._later[:-MAX_LATER]
        if self._later_timer is not None or not self._later:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._send_later()
            return
        self._later_timer = loop.call_later(LATER_S, self._send_later)

    def _ride_along(self, pipe: Any) -> int:
        """Queue the held deletions on `pipe` (before the write's own commands); how many (dropped once it ran)."""
        for kind, key in self._later:
            pipe.hdel(self._hash(kind), key)
        return len(self._later)

    def _send_later(self) -> None:
        self._later_timer = None
        if not self._later or self._closed or self._depth:
            return
        pipe = self._redis.pipeline(transaction=False)
        later = self._ride_along(pipe)
        try:
            self._run(pipe.execute)
        except StoreUnavailable as exc:  # kept for the next write or the next delete_later
            log.warning("deletions held: %s", exc.message)
            return
        del self._later[:later]

    def update(self, kind: str, key: str, change: Callable[[Doc | None], Doc]) -> Doc:
        """Outside a transaction: one round trip when nobody else wrote the document since `change` was last applied
        to what it was guessed to be (absent at first), more only when the guess was wrong (see the module notes)."""
        if self._depth:
            return super().update(kind, key, change)
        bump = "1" if kind in CACHED_KINDS else "0"
        expected: bytes | None = None
        while True:
            doc = change(None if expected is None else _loads(expected))
            text = _dumps(doc)
            args = [key, "0" if expected is None else "1", expected or "", text, bump]
            reply = self._run(self._swap, keys=[self._hash(kind), self._gen], args=args)
            if int(reply[0]) == 1:
                if bump == "1":
                    self._own += 1
                return doc
            expected = reply[1] if len(reply) > 1 else None

    def _bump(self, pipe: Any, kinds: set[str]) -> None:
        """Count a write of cached kinds in `docs:gen` (in the write's own MULTI)."""
        if not kinds.isdisjoint(CACHED_KINDS):
            pipe.incr(self._gen)
            self._own += 1

    def scan(self, kind: str) -> Iterator[tuple[str, Doc]]:
        raw: dict[Any, Any] = self._run(self._redis.hgetall, self._hash(kind))
        docs = {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}
        if self._depth:
            for (k_kind, key), text in self._overlay.items():
                if k_kind == kind:
                    if text is None:
                        docs.pop(key, None)
                    else:
                        docs[key] = text
        return ((key, _loads(docs[key])) for key in sorted(docs))

    def change_marker(self) -> object:
        """docs:gen less this store's own writes: changes only when someone else wrote."""
        gen = self._run(self._redis.get, self._gen)
        return (int(gen) if gen else 0) - self._own

    def conversations(self) -> list[Doc]:
        """Every stored conversation document, in id order (the CLI; the node reads them through the ledger)."""
        ids = [k.decode() for k in self._run(self._redis.zrange, self.target.key("convs"), 0, -1)]
        docs: list[Doc] = []
        for start in range(0, len(ids), 500):
            pipe = self._redis.pipeline(transaction=False)
            for conv_id in ids[start : start + 500]:
                pipe.hget(self.target.key("conv", conv_id), "doc")
            docs += [_loads(raw) for raw in self._run(pipe.execute) if raw is not None]
        return docs

    def owner(self, conv_id: str) -> tuple[str, str]:
        """(node id, its URL) of the node holding the conversation's lease; ("", "") when nobody does (its owner
        died or let go: the next node to touch it takes it), URL "" when that node is not registered."""
        raw = self._run(self._redis.get, self.target.key("owner", conv_id))
        if raw is None:
            return "", ""
        node = raw.decode().split("|")[0]
        entry = self._run(self._redis.get, self.target.key("node", node))
        return node, str(_loads(entry).get("url", "")) if entry else ""

    # -- outbox ------------------------------------------------------------------------------------------
    def outbox_append(self, entry: OutboxEntry) -> OutboxEntry:
        return self.outbox_append_many([entry])[0]

    def outbox_append_many(self, entries: list[OutboxEntry]) -> list[OutboxEntry]:
        if not entries:
            return []
        if self._depth:  # appended and numbered at the commit, by its script (seq 0 until then)
            unnumbered = [e.with_seq(0) for e in entries]
            self._entries.extend(unnumbered)
            return unnumbered
        seqs = self._run(self._append, keys=self._outbox, args=self._append_args([e.with_seq(0) for e in entries]))
        return [e.with_seq(int(s)) for e, s in zip(entries, seqs, strict=True)]

    def _append_args(self, entries: list[OutboxEntry]) -> list[Any]:
        return [self.target.node, len(entries), *rc.entry_args(entries)]

    def outbox_update(self, entry: OutboxEntry) -> None:
        self._run(self._redis.hset, self._state, entry.id, rc.encode_state(entry))

    def outbox_remove(self, entry_id: str) -> None:
        self.outbox_remove_many([entry_id])

    def outbox_remove_many(self, entry_ids: Iterable[str]) -> None:
        ids = list(entry_ids)
        for start in range(0, len(ids), 500):
            self._run(self._remove, keys=[self._outbox[0], self._ids, self._state], args=ids[start : start + 500])

    def outbox_load(self) -> list[OutboxEntry]:
        """Every entry still in the stream (any node's), in seq order (tools and tests)."""
        pairs = self._run(self._redis.xrange, self._outbox[0])
        if not pairs:
            return []
        states = self._run(self._redis.hmget, self._state, [fields[b"i"].decode() for _, fields in pairs])
        entries = [rc.decode_entry(fields, state) for (_, fields), state in zip(pairs, states, strict=True)]
        return sorted((e for e in entries if e is not None), key=lambda e: e.seq)

    # -- transaction primitives (the template is Store.transaction)
    def _begin(self) -> None:
        self._overlay = {}
        self._entries = []

    def _commit(self) -> None:
        overlay, self._overlay = self._overlay, {}
        entries, self._entries = self._entries, []
        if not overlay and not entries:
            return
        if entries:
            self._commit_script(overlay, entries)
            return
        if len(overlay) == 1 and not self._later:
            (kind, key), text = next(iter(overlay.items()))
            if kind not in CACHED_KINDS:  # one write of a kind nobody caches: one command, no MULTI/EXEC around it
                if text is None:
                    self._run(self._redis.hdel, self._hash(kind), key)
                else:
                    self._run(self._redis.hset, self._hash(kind), key, text)
                return
        pipe = self._redis.pipeline(transaction=True)
        later = self._ride_along(pipe)
        kinds = {kind for kind, _ in self._later}
        for (kind, key), text in overlay.items():
            if text is None:
                pipe.hdel(self._hash(kind), key)
            else:
                pipe.hset(self._hash(kind), key, text)
        self._bump(pipe, kinds | {kind for kind, _ in overlay})
        self._run(pipe.execute)
        del self._later[:later]

    def _commit_script(self, overlay: dict[tuple[str, str], str | None], entries: list[OutboxEntry]) -> None:
        """The documents and the entries of a transaction in one `DOCS` script (one round trip)."""
        keys = [*self._outbox, self._gen]
        index: dict[str, int] = {}
        docs: list[Any] = []
        later = len(self._later)
        for (kind, key), text in [*((k, None) for k in self._later), *overlay.items()]:
            if kind not in index:
                keys.append(self._hash(kind))
                index[kind] = len(keys)  # Lua's KEYS are 1-based
            docs += [index[kind], "d" if text is None else "h", key, text or ""]
        bump = not CACHED_KINDS.isdisjoint(index)
        args = [self.target.node, len(entries), "1" if bump else "0", len(docs) // 4, *docs, *rc.entry_args(entries)]
        self._run(self._docs, keys=keys, args=args)
        del self._later[:later]
        if bump:
            self._own += 1

    def _rollback(self) -> None:
        self._overlay = {}
        self._entries = []

    def _fault(self, exc: BaseException) -> StoreUnavailable | None:
        return rc.unavailable(exc, self.path) if isinstance(exc, FAULTS) else None

    def close(self) -> None:
        if not self._closed:
            if self._later_timer is not None:
                self._later_timer.cancel()
                self._later_timer = None
            self._send_later()
            self._closed = True
            self._redis.close()
