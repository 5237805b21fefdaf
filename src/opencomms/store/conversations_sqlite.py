"""The SQLite conversation store: its own connection on a dedicated writer thread (the event loop never waits for I/O),
or, on the loop, the node's SqliteStore connection shared (`connection`; the node's default: see store.sqlite).

Same file as the node's SqliteStore (0600, WAL, synchronous=NORMAL: a killed process loses nothing committed), three
tables of its own (`conversations` with a version and the earliest deadline, `conversation_legs`, and
`conversation_parts`: the parts of a conversation written with `commit_delta`, keyed (conversation, part key), in
the order each was first written) and the shared `outbox` table the dispatcher drains. A delta updates the header
row (the version check: a stale delta writes nothing) and then only its parts and leg rows, in the same savepoint.
Requests queue for the thread; the commits made during one loop iteration go as one batch, and batches that queued
while the thread was busy are merged: one SQLite transaction (one fsync of the WAL when it is due) for many
conversations, each write still version-checked under a savepoint of its own, so a stale writer is refused alone.
With a group-commit window (`group_window`, the node's `ledger.group_commit`) a batch that comes less than the window
after the previous one waits for the rest of it, so that the writes of several loop iterations share one transaction
(a read does not wait); each waiter still hears only after its commit. A fault (disk full, read-only, the lock held
elsewhere past `busy_timeout`) fails the whole batch with StoreUnavailable and writes nothing. Results cross back
with one `call_soon_threadsafe` per batch. It knows nothing of what the documents hold.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from opencomms.store.base import Doc, OutboxEntry, StoreUnavailable
from opencomms.store.conversations import ConversationStore, Delta, Loaded, StaleVersion, assemble, check_commit
from opencomms.store.sqlite import OUTBOX_SELECT, SqliteStore, _dumps, _is_fault, _loads, outbox_entry, unavailable

__all__ = ["SqliteConversationStore", "read_conversations"]

log = logging.getLogger("opencomms.store")

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id       TEXT PRIMARY KEY,
    version  INTEGER NOT NULL,
    deadline REAL,
    doc      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_deadline ON conversations(deadline) WHERE deadline IS NOT NULL;
CREATE TABLE IF NOT EXISTS conversation_legs (
    leg  TEXT PRIMARY KEY,
    conv TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS conversation_legs_conv ON conversation_legs(conv);
CREATE TABLE IF NOT EXISTS conversation_parts (
    conv TEXT NOT NULL,
    key  TEXT NOT NULL,
    ord  INTEGER NOT NULL,
    doc  TEXT NOT NULL,
    PRIMARY KEY (conv, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS conversation_parts_ord ON conversation_parts(conv, ord);
"""
_INSERT = "INSERT INTO conversations(id, version, deadline, doc) VALUES(?,1,?,?) ON CONFLICT(id) DO NOTHING"
_UPDATE = "UPDATE conversations SET version=version+1, deadline=?, doc=? WHERE id=? AND version=?"
_DELETE = "DELETE FROM conversations WHERE id=? AND version=?"
_VERSION = "SELECT version FROM conversations WHERE id=?"
_PARTS = "SELECT key, doc FROM conversation_parts WHERE conv=? ORDER BY ord"
_DROP_PARTS = "DELETE FROM conversation_parts WHERE conv=?"
_OUTBOX = (
    "INSERT INTO outbox(id, order_key, app_id, tenant_id, url, body, created_at, next_attempt_at, attempts) VALUES"
)
_CHUNK = 100


@dataclass(slots=True)
class _Parts:
    """A delta's parts (serialised), removed part keys and leg index changes."""

    parts: list[tuple[str, str]]
    removed: list[str]
    complete: bool
    legs_added: tuple[str, ...]
    legs_removed: tuple[str, ...]


@dataclass(slots=True)
class _Write:
    conv_id: str
    expected: int
    doc: str | None
    """The whole document, or the header of a delta (None: delete)."""
    deadline: float | None
    legs: tuple[str, ...] | None
    outbox: list[tuple[Any, ...]]
    fut: asyncio.Future[int]
    parts: _Parts | None = None
    """A delta's parts (None: `doc` is the whole document and replaces any parts)."""


@dataclass(slots=True)
class _Outbox:
    """The dispatcher's bookkeeping: finished entries to remove, retried or redirected ones to update."""

    remove: list[str]
    update: list[tuple[str, float, int, str]]
    fut: asyncio.Future[None]


@dataclass(slots=True)
class _Read:
    fn: Callable[[sqlite3.Connection], Any]
    fut: asyncio.Future[Any]


_Op = _Write | _Outbox | _Read


class _Isolate(Exception):
    """A write failed half way through in a batch without savepoints."""


@dataclass(slots=True)
class _Stats:
    transactions: int = 0
    """SQLite transactions committed (each carries one batch)."""
    commits: int = 0
    """Conversation writes committed."""
    stale: int = 0
    """Writes refused with StaleVersion."""
    largest_batch: int = 0
    """Most writes one transaction carried."""
    thread_cpu: float = 0.0
    """CPU seconds the writer thread spent on batches (off the loop)."""


class SqliteConversationStore(ConversationStore):
    """Conversations in the SQLite file at `path`, written by a thread of their own (see the module notes)."""

    def __init__(
        self,
        path: str,
        *,
        busy_timeout: float = 1.0,
        synchronous: str = "NORMAL",
        max_batch: int = 512,
        open_timeout: float = 5.0,
        writer_thread: bool = True,
        connection: sqlite3.Connection | None = None,
        group_window: float = 0.0,
    ) -> None:
        """Open (or create, 0600) the database and start the writer thread. Blocking: call it at start-up or
        through `open()`. `busy_timeout`: seconds a batch waits for a lock another process holds before it fails
        with StoreUnavailable (the loop does not wait meanwhile); `max_batch`: requests merged into one
        transaction at most; `writer_thread` False: each loop iteration's batch is written on the loop itself, at the
        end of the iteration (no thread hand-off; the loop waits for the write and for a lock held elsewhere).
        `connection`: the node's SqliteStore connection to the same file, shared (only without the writer thread;
        its owner closes it and its busy timeout applies, not `busy_timeout`): one page cache and no lock traffic
        between two connections of one process. `group_window`: seconds a batch waits, after the previous one, for
        more writes to join it (0: each loop iteration's batch goes at the end of that iteration)."""
        self.path = path
        self.group_window = group_window
        self._last_flush = float("-inf")
        self.max_batch = max_batch
        self._shared = connection is not None
        if connection is not None and writer_thread:
            raise ValueError("a shared connection is written on the loop: writer_thread must be False")
        try:
            if connection is not None:
                connection.executescript(_SCHEMA)
                db = connection
            else:
                db = SqliteStore._open(path, synchronous, open_timeout)
                try:
                    db.executescript(_SCHEMA)
                    db.execute(f"PRAGMA busy_timeout={max(0, int(busy_timeout * 1000))}")
                    # The node's SqliteStore checkpoints the WAL on a thread of its own (store.checkpoint); a commit
                    # of ours checkpoints only past ~80 MB of WAL, as the SqliteStore's own connection does.
                    db.execute("PRAGMA wal_autocheckpoint=20000")
                except BaseException:
                    db.close()
                    raise
        except (sqlite3.Error, OSError) as exc:
            raise unavailable(exc, path) from exc
        self._db = db
        self._queue: queue.SimpleQueue[list[_Op] | None] = queue.SimpleQueue()
        self._pending: list[_Op] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_handle: asyncio.Handle | None = None
        self._waiting = False
        """The flush is due at the end of the group-commit window (not at the end of this loop iteration)."""
        self._closed = False
        self.stats = _Stats()
        self._thread: threading.Thread | None = None
        if writer_thread:
            self._thread = threading.Thread(target=self._run, name="opencomms-conversations", daemon=True)
            self._thread.start()

    @classmethod
    async def open(cls, path: str, **kwargs: Any) -> SqliteConversationStore:
        """Open without blocking the loop (the file is created and probed on a worker thread)."""
        return await asyncio.to_thread(cls, path, **kwargs)

    # -- loop side -------------------------------------------------------------------------------------------
    def _submit(self, op: _Op) -> None:
        if self._closed:
            raise StoreUnavailable(f"store {self.path} is closed", reason="unavailable")
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._pending.append(op)
        if self._flush_handle is None:  # everything submitted during this loop iteration goes as one batch
            due = self._last_flush + self.group_window
            self._waiting = not isinstance(op, _Read) and due > loop.time()
            if self._waiting:  # group commit: the last batch went less than `group_window` ago; later writes join
                self._flush_handle = loop.call_at(due, self._flush)
            else:
                self._flush_handle = loop.call_soon(self._flush)
        elif self._waiting and isinstance(op, _Read):  # a read does not wait (nor do the writes queued before it)
            self._flush_handle.cancel()
            self._waiting = False
            self._flush_handle = loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        self._waiting = False
        if self._loop is not None:
            self._last_flush = self._loop.time()
        if self._shared and self._db.in_transaction and not self._closed:
            # the SqliteStore that shares the connection holds a transaction open across an await: after it
            assert self._loop is not None
            self._flush_handle = self._loop.call_soon(self._flush)
            return
        if self._pending:
            batch, self._pending = self._pending, []
            if self._thread is not None:
                self._queue.put(batch)
                return
            while batch:  # on the loop: at most max_batch requests per transaction
                now, batch = batch[: self.max_batch], batch[self.max_batch :]
                _deliver(self._execute(self._db, now))

    def _read(self, fn: Callable[[sqlite3.Connection], _T]) -> asyncio.Future[_T]:
        fut: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self._submit(_Read(fn, fut))
        return fut

    async def load(self, conv_id: str) -> Loaded | None:
        def read(db: sqlite3.Connection) -> tuple[Any, list[Any]] | None:
            row = db.execute("SELECT doc, version FROM conversations WHERE id=?", (conv_id,)).fetchone()
            return None if row is None else (row, db.execute(_PARTS, (conv_id,)).fetchall())

        got = await self._read(read)
        if got is None:
            return None
        row, parts = got
        return Loaded(_assembled(row[0], parts), row[1])

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
        check_commit(expected_version, doc)
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        rows = [
            (e.id, e.order_key, e.app_id, e.tenant_id, e.url, e.body, e.created_at, e.next_attempt_at, e.attempts)
            for e in outbox
        ]
        # Serialised here, on the loop: the document is a snapshot of the aggregate as the unit left it.
        text = None if doc is None else _dumps(doc)
        self._submit(
            _Write(conv_id, expected_version, text, deadline, None if legs is None else tuple(legs), rows, fut)
        )
        return fut

    def commit_delta(
        self, conv_id: str, expected_version: int, delta: Delta, outbox: Sequence[OutboxEntry] = ()
    ) -> Awaitable[int]:
        check_commit(expected_version, delta.header)
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        rows = [
            (e.id, e.order_key, e.app_id, e.tenant_id, e.url, e.body, e.created_at, e.next_attempt_at, e.attempts)
            for e in outbox
        ]
        parts = _Parts(
            [(key, _dumps(part)) for key, part in delta.parts],  # on the loop: a snapshot of what the unit left
            list(delta.removed),
            delta.complete,
            tuple(delta.legs_added),
            tuple(delta.legs_removed),
        )
        header = _dumps(delta.header)
        self._submit(_Write(conv_id, expected_version, header, delta.deadline, None, rows, fut, parts))
        return fut

    async def find_leg(self, leg_id: str) -> str | None:
        row = await self._read(
            lambda db: db.execute("SELECT conv FROM conversation_legs WHERE leg=?", (leg_id,)).fetchone()
        )
        return None if row is None else str(row[0])

    async def due(self, now: float, limit: int = 256) -> list[tuple[str, float]]:
        sql = "SELECT id, deadline FROM conversations WHERE deadline<=? ORDER BY deadline LIMIT ?"
        rows = await self._read(lambda db: db.execute(sql, (now, limit)).fetchall())
        return [(str(r[0]), float(r[1])) for r in rows]

    async def next_deadline(self) -> float | None:
        row = await self._read(lambda db: db.execute("SELECT min(deadline) FROM conversations").fetchone())
        return None if row[0] is None else float(row[0])

    async def live(self, after: str = "", limit: int = 1000) -> list[str]:
        sql = "SELECT id FROM conversations WHERE id>? ORDER BY id LIMIT ?"
        rows = await self._read(lambda db: db.execute(sql, (after, limit)).fetchall())
        return [str(r[0]) for r in rows]

    async def outbox_load(self) -> list[OutboxEntry]:
        rows = await self._read(lambda db: db.execute(OUTBOX_SELECT).fetchall())
        return [outbox_entry(r) for r in rows]

    async def outbox_remove(self, entry_ids: Iterable[str]) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._submit(_Outbox(list(entry_ids), [], fut))
        await fut

    async def outbox_update(self, entries: Iterable[OutboxEntry]) -> None:
        rows = [(e.url, e.next_attempt_at, e.attempts, e.id) for e in entries]
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._submit(_Outbox([], rows, fut))
        await fut

    async def run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run `fn(connection)` on the writer thread (tests, maintenance)."""
        return await self._read(fn)

    async def aclose(self) -> None:
        if self._closed:
            return
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush()
        self._closed = True
        if self._thread is None:
            if not self._shared:  # a shared connection is its owner's to close
                self._db.close()
            return
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)

    # -- writer thread ---------------------------------------------------------------------------------------
    def _run(self) -> None:
        db = self._db
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch, stop = list(first), False
                while len(batch) < self.max_batch:  # merge what queued while the last batch was being written
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    batch.extend(more)
                cpu = time.thread_time()
                results = self._execute(db, batch)
                self.stats.thread_cpu += time.thread_time() - cpu
                loop = self._loop
                if loop is not None and not loop.is_closed():
                    try:
                        loop.call_soon_threadsafe(_deliver, results)
                    except RuntimeError:  # the loop closed meanwhile: nobody waits for these results
                        pass
                if stop:
                    return
        except BaseException:  # a bug: refuse new requests (503) rather than leave them waiting forever
            self._closed = True
            log.exception("the conversation writer thread failed")
        finally:
            db.close()

    def _execute(self, db: sqlite3.Connection, batch: list[_Op]) -> list[tuple[asyncio.Future[Any], Any]]:
        results: list[tuple[asyncio.Future[Any], Any]] = []
        writes = [op for op in batch if not isinstance(op, _Read)]
        if writes:
            try:
                try:
                    results = self._transaction(db, writes, isolated=False)
                except _Isolate:  # one write failed half way: again, each write under a savepoint of its own
                    db.execute("ROLLBACK")
                    results = self._transaction(db, writes, isolated=True)
            except BaseException as exc:
                if db.in_transaction:
                    try:
                        db.execute("ROLLBACK")
                    except sqlite3.Error as rb:
                        log.warning("rollback failed: %s", rb)
                results = [(op.fut, self._error(exc)) for op in writes]
        for op in batch:
            if isinstance(op, _Read):
                try:
                    results.append((op.fut, op.fn(db)))
                except BaseException as exc:
                    results.append((op.fut, self._error(exc)))
        return results

    def _error(self, exc: BaseException) -> BaseException:
        """A fresh error per waiter: the StoreUnavailable for a fault, the error itself otherwise."""
        if isinstance(exc, sqlite3.Error) and _is_fault(exc):
            return unavailable(exc, self.path)
        return exc

    def _transaction(
        self, db: sqlite3.Connection, writes: list[_Write | _Outbox], *, isolated: bool
    ) -> list[tuple[asyncio.Future[Any], Any]]:
        """One transaction for the batch. A stale write changes nothing before it is refused, so the fast path
        needs no savepoints; an error half way through a write (a bug, e.g. a duplicate outbox id) raises _Isolate
        there, and the batch runs again `isolated`, where that write alone fails."""
        db.execute("BEGIN IMMEDIATE")
        results = self._body(db, writes, isolated=isolated)
        db.execute("COMMIT")
        self._count(writes, results)
        return results

    # -- riding in the SqliteStore's transaction (store.sqlite.Rider; a shared connection) ---------------------------
    def take(self) -> list[_Write | _Outbox] | None:
        """The writes submitted during this loop iteration, taken to ride in the transaction the SqliteStore that
        shares the connection is opening (None: nothing, or not now: reads among them, or too many)."""
        pending = self._pending
        if not pending or self._closed or len(pending) > self.max_batch:
            return None
        writes: list[_Write | _Outbox] = []
        for op in pending:
            if isinstance(op, _Read):
                return None
            writes.append(op)
        self._pending = []
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
            self._waiting = False
        if self._loop is not None:
            self._last_flush = self._loop.time()
        return writes

    def write(self, db: sqlite3.Connection, batch: object) -> object:
        writes: list[_Write | _Outbox] = batch  # type: ignore[assignment]
        results = self._body(db, writes, isolated=False)
        return writes, results

    def deliver(self, results: object) -> None:
        writes, done = cast(tuple[list[_Write | _Outbox], list[tuple[asyncio.Future[Any], Any]]], results)
        self._count(writes, done)
        _deliver(done)

    def fail(self, batch: object, exc: BaseException) -> None:
        writes: list[_Write | _Outbox] = batch  # type: ignore[assignment]
        _deliver([(op.fut, self._error(exc)) for op in writes])

    def alone(self, batch: object) -> None:
        writes: list[_Write | _Outbox] = batch  # type: ignore[assignment]
        _deliver(self._execute(self._db, list(writes)))

    def _body(
        self, db: sqlite3.Connection, writes: list[_Write | _Outbox], *, isolated: bool
    ) -> list[tuple[asyncio.Future[Any], Any]]:
        """The batch's statements inside an open transaction (see `_transaction`)."""
        results: list[tuple[asyncio.Future[Any], Any]] = []
        outbox: list[tuple[Any, ...]] = []
        for op in writes:
            if isinstance(op, _Outbox):
                for start in range(0, len(op.remove), _CHUNK):
                    chunk = op.remove[start : start + _CHUNK]
                    db.execute(f"DELETE FROM outbox WHERE id IN ({','.join('?' * len(chunk))})", chunk)
                if op.update:
                    db.executemany("UPDATE outbox SET url=?, next_attempt_at=?, attempts=? WHERE id=?", op.update)
                results.append((op.fut, None))
                continue
            if isolated:
                db.execute("SAVEPOINT w")
            try:
                outcome: Any = self._write(db, op, None if isolated else outbox)
            except sqlite3.Error as exc:
                if _is_fault(exc):
                    raise  # the whole batch fails
                if not isolated:
                    raise _Isolate from exc
                outcome = exc  # a bug in this write: it alone fails
            if isinstance(outcome, sqlite3.Error):
                db.execute("ROLLBACK TO w")
            if isolated:
                db.execute("RELEASE w")
            results.append((op.fut, outcome))
        if outbox:
            try:
                _append(db, outbox)
            except sqlite3.Error as exc:
                if _is_fault(exc):
                    raise
                raise _Isolate from exc
        return results

    def _count(self, writes: list[_Write | _Outbox], results: list[tuple[asyncio.Future[Any], Any]]) -> None:
        stats = self.stats
        stats.transactions += 1
        stats.commits += sum(1 for _, r in results if isinstance(r, int))  # a version: the write landed
        stats.stale += sum(1 for _, r in results if isinstance(r, StaleVersion))
        stats.largest_batch = max(stats.largest_batch, len(writes))

    def _write(self, db: sqlite3.Connection, op: _Write, outbox: list[tuple[Any, ...]] | None) -> int | StaleVersion:
        """Version-check and write one conversation; its outbox rows go to `outbox` (appended by the caller after
        the batch's last write, in one statement per chunk) or, when that is None, into the table at once."""
        conv, expected = op.conv_id, op.expected
        if op.doc is None:
            if expected == 0:
                found = db.execute(_VERSION, (conv,)).fetchone()
                if found is not None:
                    return StaleVersion(conv, expected, found[0])
            elif db.execute(_DELETE, (conv, expected)).rowcount == 0:
                return self._stale(db, op)
            db.execute("DELETE FROM conversation_legs WHERE conv=?", (conv,))
            db.execute(_DROP_PARTS, (conv,))
            version = 0
        else:
            if expected == 0:
                cur = db.execute(_INSERT, (conv, op.deadline, op.doc))
            else:
                cur = db.execute(_UPDATE, (op.deadline, op.doc, conv, expected))
            if cur.rowcount == 0:
                return self._stale(db, op)
            version = expected + 1
            if op.parts is not None:
                _write_parts(db, conv, op.parts, fresh=expected == 0)
            elif expected:
                db.execute(_DROP_PARTS, (conv,))  # a whole document replaces the parts
            if op.legs is not None:
                if expected:
                    db.execute("DELETE FROM conversation_legs WHERE conv=?", (conv,))
                for start in range(0, len(op.legs), _CHUNK):
                    chunk = op.legs[start : start + _CHUNK]
                    places = ",".join(["(?,?)"] * len(chunk))
                    db.execute(
                        f"INSERT INTO conversation_legs(leg, conv) VALUES{places}"
                        " ON CONFLICT(leg) DO UPDATE SET conv=excluded.conv",
                        [v for leg in chunk for v in (leg, conv)],
                    )
        if outbox is None:
            _append(db, op.outbox)
        else:
            outbox.extend(op.outbox)
        return version

    @staticmethod
    def _stale(db: sqlite3.Connection, op: _Write) -> StaleVersion:
        found = db.execute(_VERSION, (op.conv_id,)).fetchone()
        return StaleVersion(op.conv_id, op.expected, 0 if found is None else found[0])


def _write_parts(db: sqlite3.Connection, conv: str, delta: _Parts, *, fresh: bool) -> None:
    """Write a delta's parts and leg rows (after its header passed the version check; `fresh`: the header row was
    just inserted, so the conversation has no parts or leg rows yet). One statement per kind of change and chunk:
    every statement costs the loop a GIL hand-off."""
    if delta.complete:
        if not fresh:
            db.execute(_DROP_PARTS, (conv,))
            db.execute("DELETE FROM conversation_legs WHERE conv=?", (conv,))
    else:
        for chunk in _chunked(delta.removed):
            db.execute(f"DELETE FROM conversation_parts WHERE conv=? AND key IN ({_marks(len(chunk))})", (conv, *chunk))
        for chunk in _chunked(delta.legs_removed):
            db.execute(f"DELETE FROM conversation_legs WHERE conv=? AND leg IN ({_marks(len(chunk))})", (conv, *chunk))
    if delta.parts:
        if delta.complete or fresh:
            first = 1
        else:
            last = db.execute("SELECT max(ord) FROM conversation_parts WHERE conv=?", (conv,)).fetchone()[0]
            first = 1 if last is None else int(last) + 1  # a new part goes last; a changed one keeps its place
        rows = [(conv, key, first + i, text) for i, (key, text) in enumerate(delta.parts)]
        for batch in _chunked(rows):
            places = ",".join(["(?,?,?,?)"] * len(batch))
            db.execute(
                f"INSERT INTO conversation_parts(conv, key, ord, doc) VALUES{places}"
                " ON CONFLICT(conv, key) DO UPDATE SET doc=excluded.doc",
                [v for row in batch for v in row],
            )
    for chunk in _chunked(delta.legs_added):
        places = ",".join(["(?,?)"] * len(chunk))
        db.execute(
            f"INSERT INTO conversation_legs(leg, conv) VALUES{places}"
            " ON CONFLICT(leg) DO UPDATE SET conv=excluded.conv",
            [v for leg in chunk for v in (leg, conv)],
        )


def _chunked(items: Sequence[_T]) -> list[Sequence[_T]]:
    return [items[start : start + _CHUNK] for start in range(0, len(items), _CHUNK)]


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _assembled(doc: str, parts: list[Any]) -> Doc:
    """A stored header (or whole document) and its parts' rows, in order, as the whole document."""
    whole: Doc = _loads(doc)
    return assemble(whole, ((str(key), _loads(text)) for key, text in parts)) if parts else whole


def _append(db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Insert outbox rows in order, one statement per chunk."""
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start : start + _CHUNK]
        places = ",".join(["(?,?,?,?,?,?,?,?,?)"] * len(chunk))
        db.execute(f"{_OUTBOX}{places}", [v for row in chunk for v in row])


def _deliver(results: list[tuple[asyncio.Future[Any], Any]]) -> None:
    """On the loop: hand each waiter its result (waiters that were cancelled are skipped)."""
    for fut, result in results:
        if fut.done():
            continue
        if isinstance(result, BaseException):
            fut.set_exception(result)
        else:
            fut.set_result(result)


def read_conversations(path: str) -> list[Doc]:
    """Every conversation document in the SQLite file at `path`, read on a read-only connection of its own (the CLI,
    beside a running node; blocking). None stored yet: an empty list."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error as exc:
        raise unavailable(exc, path) from exc
    try:
        rows = db.execute("SELECT id, doc FROM conversations ORDER BY id").fetchall()
        try:
            parts = db.execute("SELECT conv, key, doc FROM conversation_parts ORDER BY conv, ord").fetchall()
        except sqlite3.OperationalError as exc:  # a file written before parts existed
            if "no such table" not in str(exc):
                raise
            parts = []
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise unavailable(exc, path) from exc
    finally:
        db.close()
    by_conv: dict[str, list[Any]] = {}
    for conv, key, text in parts:
        by_conv.setdefault(conv, []).append((key, text))
    return [_assembled(doc, by_conv.get(conv_id, [])) for conv_id, doc in rows]
