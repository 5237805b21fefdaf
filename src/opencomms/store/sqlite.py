"""SQLite store: the embedded persistent default. One connection, WAL journal, owned by one event loop (plus a
thread of its own that runs the WAL checkpoints, see store.checkpoint).

Writes outside an explicit transaction commit at once; `transaction()` groups them (its BEGIN is lazy: a block that
reads or writes nothing costs no statement). With WAL and synchronous=NORMAL a killed process loses nothing
committed (an OS crash may lose the last commits; the WAL is fsynced at checkpoints).

The node's conversation store (store.conversations_sqlite, on the loop) shares this connection: one page cache, no
lock and cache-invalidation traffic between two connections of one process. The conversation writes it queued during
the current loop iteration ride in this store's next write transaction (`Rider`), ahead of the store's own writes and
under a savepoint of their own, so that one commit carries both; a block of this store that rolls back leaves them to
commit, a fault (at a statement or at the commit) fails both with StoreUnavailable.

Faults are contained: every SQLite I/O failure (disk full, read-only, I/O error, the write lock held by another
process beyond `busy_timeout`) leaves the transaction rolled back and raises `StoreUnavailable`, which the API
answers 503 + Retry-After. The busy timeout is short for a node (its event loop waits while SQLite does) and the
files are created 0600 (see store.files).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import orjson

from opencomms.store import files
from opencomms.store.base import Doc, OutboxEntry, Store, StoreUnavailable
from opencomms.store.checkpoint import Checkpointer

log = logging.getLogger("opencomms.store")

_T = TypeVar("_T")
_P = ParamSpec("_P")
_S = TypeVar("_S", bound="SqliteStore")

_REASONS = {5: "locked", 6: "locked", 8: "readonly", 3: "readonly", 10: "io", 13: "full", 14: "unavailable"}
"""SQLite primary result codes (BUSY, LOCKED, READONLY, PERM, IOERR, FULL, CANTOPEN) -> StoreUnavailable.reason."""
_WORDS = {
    "locked": "is locked by another process",
    "readonly": "is read-only",
    "io": "had an I/O error",
    "full": "is full (no space left)",
    "unavailable": "cannot be opened",
}


def unavailable(exc: BaseException, path: str) -> StoreUnavailable:
    """The StoreUnavailable for a sqlite3 or OS error on the store at `path`."""
    if isinstance(exc, sqlite3.Error):
        reason = _REASONS.get((getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF, "io")
    elif isinstance(exc, PermissionError) or getattr(exc, "errno", None) == 30:  # EROFS
        reason = "readonly"
    elif getattr(exc, "errno", None) == 28:  # ENOSPC
        reason = "full"
    else:
        reason = "io"
    return StoreUnavailable(f"store {path} {_WORDS[reason]}: {exc}", reason=reason)


def _is_fault(exc: sqlite3.Error) -> bool:
    """An environmental failure (not a bug such as a constraint violation or a closed connection)."""
    return isinstance(exc, sqlite3.DatabaseError) and not isinstance(
        exc, sqlite3.IntegrityError | sqlite3.ProgrammingError | sqlite3.InterfaceError
    )


def _guarded(fn: Callable[Concatenate[_S, _P], _T]) -> Callable[Concatenate[_S, _P], _T]:
    """Turn SQLite faults raised by a store method into StoreUnavailable."""

    @functools.wraps(fn)
    def wrapper(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return fn(self, *args, **kwargs)
        except sqlite3.Error as exc:
            if not _is_fault(exc):
                raise
            raise unavailable(exc, self.path) from exc

    return wrapper


_UPSERT = " ON CONFLICT(kind, key) DO UPDATE SET doc=excluded.doc"
_PUT = "INSERT INTO docs(kind, key, doc) VALUES(?,?,?)" + _UPSERT
_DELETE = "DELETE FROM docs WHERE kind=? AND key=?"
_OUTBOX_INSERT = (
    "INSERT INTO outbox(id, order_key, app_id, tenant_id, url, body, created_at, next_attempt_at, attempts)"
)
_PLACES3 = "(?,?,?),"
_PLACES9 = "(?,?,?,?,?,?,?,?,?),"
_CHUNK = 100
"""Rows per multi-row statement (well under SQLite's limit of bound variables)."""


def _chunks(rows: list[_T]) -> Iterator[list[_T]]:
    for start in range(0, len(rows), _CHUNK):
        yield rows[start : start + _CHUNK]


def _places(n: int) -> str:
    return ",".join("?" * n)


def _dumps(doc: Doc) -> str:
    """Compact JSON text (orjson; the standard library for what orjson refuses, e.g. lone surrogates)."""
    try:
        return orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(doc, separators=(",", ":"))


def _loads(raw: str | bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:  # e.g. NaN written by the standard library
        return json.loads(raw)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    kind TEXT NOT NULL,
    key  TEXT NOT NULL,
    doc  TEXT NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    order_key       TEXT NOT NULL,
    app_id          TEXT NOT NULL,
    tenant_id       TEXT NOT NULL,
    url             TEXT NOT NULL,
    body            BLOB NOT NULL,
    created_at      REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0
);
"""


OUTBOX_SELECT = (
    "SELECT seq, id, order_key, app_id, tenant_id, url, body, created_at, next_attempt_at, attempts"
    " FROM outbox ORDER BY seq"
)
"""Every outbox row in delivery order (read by this store and by the conversation store on the same file)."""


def outbox_entry(r: Any) -> OutboxEntry:
    """An `OUTBOX_SELECT` row as an entry."""
    return OutboxEntry(
        seq=r[0],
        id=r[1],
        order_key=r[2],
        app_id=r[3],
        tenant_id=r[4],
        url=r[5],
        body=bytes(r[6]),
        created_at=r[7],
        next_attempt_at=r[8],
        attempts=r[9],
    )


class Rider(Protocol):
    """Writes queued by another user of the store's connection (the node's conversation store) that ride in the
    store's next write transaction, ahead of the store's own writes, instead of one transaction of their own."""

    def take(self) -> object | None:
        """The queued writes, taken (None: none to take now)."""

    def write(self, db: sqlite3.Connection, batch: object) -> object:
        """Write `batch` inside the open transaction; its results. Raises on a fault (the whole transaction fails)
        or on a bug in one write (then the batch goes `alone`)."""

    def deliver(self, results: object) -> None:
        """The transaction committed: hand the waiters their results."""

    def fail(self, batch: object, exc: BaseException) -> None:
        """The transaction failed: hand every waiter of `batch` the error."""

    def alone(self, batch: object) -> None:
        """Write `batch` now in a transaction of its own (and deliver its results)."""


class SqliteStore(Store):
    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "NORMAL",
        checkpoint_thread: bool = True,
        busy_timeout: float = 5.0,
        open_timeout: float = 5.0,
    ) -> None:
        """Open (or create, 0600) the database. `busy_timeout`: seconds a statement waits for a lock another
        process holds before it fails with StoreUnavailable (a node keeps it short: its event loop waits);
        `open_timeout`: the same while opening. Raises StoreUnavailable when the file cannot be opened or
        written (read-only, missing directory, disk full)."""
        self.path = path
        self._depth = 0
        self._begin_due = False
        self.rider: Rider | None = None
        """Set by the conversation store that shares the connection (store.conversations_sqlite)."""
        self._riding: tuple[object, object] | None = None
        """The rider's batch and results in the open transaction, delivered at its commit."""
        self._closed = False
        self._checkpointer: Checkpointer | None = None
        try:
            self._db = self._open(path, synchronous, open_timeout)
        except (sqlite3.Error, OSError) as exc:
            raise unavailable(exc, path) from exc
        self._db.execute(f"PRAGMA busy_timeout={max(0, int(busy_timeout * 1000))}")
        # Checkpoints run in a thread of their own (store.checkpoint); the commit that crosses ~80 MB of WAL still
        # checkpoints itself, should that thread ever fall behind.
        if path != ":memory:" and checkpoint_thread:
            self._db.execute("PRAGMA wal_autocheckpoint=20000")
            self._checkpointer = Checkpointer(path)

    @staticmethod
    def _open(path: str, synchronous: str, open_timeout: float) -> sqlite3.Connection:
        if path != ":memory:":
            parent = os.path.dirname(os.path.abspath(path))
            os.makedirs(parent, exist_ok=True)
            with files.private_umask():  # the database and the -wal/-shm files SQLite makes next to it: 0600
                os.close(os.open(path, os.O_RDWR | os.O_CREAT, files.FILE_MODE))
            for suffix in ("", "-wal", "-shm"):
                files.tighten(path + suffix)
        with files.private_umask():
            # isolation_level=None: we issue BEGIN/COMMIT ourselves.
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            try:
                db.execute(f"PRAGMA busy_timeout={max(0, int(open_timeout * 1000))}")
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(f"PRAGMA synchronous={synchronous}")
                # A page cache of up to 64 MB (SQLite's default is 2 MB): call records pile up, and pages read back
                # from the file with the GIL released cost the event loop a hand-off to the media thread each time.
                db.execute("PRAGMA cache_size=-65536")
                db.executescript(_SCHEMA)
                db.execute("BEGIN IMMEDIATE")  # a read-only file or directory fails here, not at the first request
                db.execute("ROLLBACK")
            except BaseException:
                db.close()
                raise
        return db

    # -- documents ---------------------------------------------------------------------------------------
    @_guarded
    def get(self, kind: str, key: str) -> Doc | None:
        row = self._x("SELECT doc FROM docs WHERE kind=? AND key=?", (kind, key), write=False).fetchone()
        return None if row is None else _loads(row[0])  # type: ignore[no-any-return]

    @_guarded
    def put(self, kind: str, key: str, doc: Doc) -> None:
        self._x(_PUT, (kind, key, _dumps(doc)))

    @_guarded
    def put_docs(self, items: Iterable[tuple[str, str, Doc]]) -> None:
        rows = [(kind, key, _dumps(doc)) for kind, key, doc in items]
        for chunk in _chunks(rows):  # one statement per chunk: every statement costs the loop a GIL hand-off
            sql = f"INSERT INTO docs(kind, key, doc) VALUES{_PLACES3 * len(chunk)}"[:-1] + _UPSERT
            self._x(sql, [value for row in chunk for value in row])

    @_guarded
    def delete(self, kind: str, key: str) -> bool:
        cur = self._x(_DELETE, (kind, key))
        return cur.rowcount > 0

    @_guarded
    def delete_many(self, kind: str, keys: Iterable[str]) -> None:
        for chunk in _chunks(list(keys)):
            self._x(f"DELETE FROM docs WHERE kind=? AND key IN ({_places(len(chunk))})", (kind, *chunk))

    def scan(self, kind: str) -> Iterator[tuple[str, Doc]]:
        return self._scan(kind, self._rows(kind))

    @_guarded
    def _rows(self, kind: str) -> list[tuple[str, str]]:
        return self._x("SELECT key, doc FROM docs WHERE kind=? ORDER BY key", (kind,), write=False).fetchall()

    @staticmethod
    def _scan(kind: str, rows: list[tuple[str, str]]) -> Iterator[tuple[str, Doc]]:
        for key, raw in rows:
            yield key, _loads(raw)

    @_guarded
    def change_marker(self) -> object:
        """SQLite's data_version: it changes when another connection commits to the database file."""
        return self._x("PRAGMA data_version", write=False).fetchone()[0]

    # -- outbox ------------------------------------------------------------------------------------------
    @_guarded
    def outbox_append(self, entry: OutboxEntry) -> OutboxEntry:
        cur = self._x(
            _OUTBOX_INSERT + " VALUES(?,?,?,?,?,?,?,?,?)",
            (
                entry.id,
                entry.order_key,
                entry.app_id,
                entry.tenant_id,
                entry.url,
                entry.body,
                entry.created_at,
                entry.next_attempt_at,
                entry.attempts,
            ),
        )
        assert cur.lastrowid is not None  # sqlite always sets it after an INSERT
        return entry.with_seq(cur.lastrowid)

    @_guarded
    def outbox_update(self, entry: OutboxEntry) -> None:
        self._x(
            "UPDATE outbox SET url=?, next_attempt_at=?, attempts=? WHERE id=?",
            (entry.url, entry.next_attempt_at, entry.attempts, entry.id),
        )

    @_guarded
    def outbox_remove(self, entry_id: str) -> None:
        self._x("DELETE FROM outbox WHERE id=?", (entry_id,))

    @_guarded
    def outbox_remove_many(self, entry_ids: Iterable[str]) -> None:
        for chunk in _chunks(list(entry_ids)):
            self._x(f"DELETE FROM outbox WHERE id IN ({_places(len(chunk))})", chunk)

    @_guarded
    def outbox_append_many(self, entries: list[OutboxEntry]) -> list[OutboxEntry]:
        """One INSERT per chunk. AUTOINCREMENT numbers the rows of one statement consecutively (we hold the
        write lock), so the last rowid gives every entry's seq."""
        appended: list[OutboxEntry] = []
        for chunk in _chunks(entries):
            values = [
                value
                for e in chunk
                for value in (
                    e.id,
                    e.order_key,
                    e.app_id,
                    e.tenant_id,
                    e.url,
                    e.body,
                    e.created_at,
                    e.next_attempt_at,
                    e.attempts,
                )
            ]
            cur = self._x(f"{_OUTBOX_INSERT} VALUES{_PLACES9 * len(chunk)}"[:-1], values)
            assert cur.lastrowid is not None  # sqlite always sets it after an INSERT
            first = cur.lastrowid - len(chunk) + 1
            appended.extend(e.with_seq(first + i) for i, e in enumerate(chunk))
        return appended

    @_guarded
    def outbox_load(self) -> list[OutboxEntry]:
        return [outbox_entry(r) for r in self._x(OUTBOX_SELECT, write=False).fetchall()]

    # -- lifecycle ---------------------------------------------------------------------------------------
    # -- transaction primitives (the template is Store.transaction)
    def _x(self, sql: str, params: Any = (), *, write: bool = True) -> sqlite3.Cursor:
        """Run one statement, first opening the transaction `transaction()` asked for (BEGIN is lazy: a block that
        touches nothing costs no lock and no commit). A write outside a transaction while the rider has writes
        queued takes them along in one transaction."""
        db = self._db
        rider = self.rider
        if self._begin_due:
            self._begin_due = False
            self._start(None if rider is None else rider.take())
        elif write and rider is not None and not db.in_transaction and (batch := rider.take()) is not None:
            self._start(batch)
            try:
                cur = db.execute(sql, params)
                self._end()
            except BaseException:
                self._rollback()
                raise
            return cur
        return db.execute(sql, params)

    def _start(self, batch: object | None) -> None:
        """BEGIN, with the rider's `batch` of queued writes first (under a savepoint of their own: a block of this
        store that rolls back leaves them to commit)."""
        db = self._db
        rider = self.rider
        try:
            db.execute("BEGIN IMMEDIATE")
        except BaseException as exc:
            if rider is not None and batch is not None:
                rider.fail(batch, exc)
            raise
        if rider is None or batch is None:
            return
        try:
            results = rider.write(db, batch)
        except BaseException as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error) and _is_fault(exc):
                rider.fail(batch, exc)
                raise
            rider.alone(batch)  # a bug in one of its writes: it is sorted out in a transaction of its own
            db.execute("BEGIN IMMEDIATE")
            return
        db.execute("SAVEPOINT own")
        self._riding = (batch, results)

    def _end(self) -> None:
        """COMMIT, then hand the rider its results."""
        riding, self._riding = self._riding, None
        if riding is not None:
            self._db.execute("RELEASE own")
        try:
            self._db.execute("COMMIT")
        except BaseException:
            self._riding = riding  # _rollback hands the rider the error
            raise
        if riding is not None and self.rider is not None:
            self.rider.deliver(riding[1])

    @property
    def connection(self) -> sqlite3.Connection:
        """The one connection (the node's conversation store shares it: see store.conversations_sqlite)."""
        return self._db

    def _begin(self) -> None:
        self._begin_due = True

    def _commit(self) -> None:
        if self._begin_due:  # nothing was read or written inside the block
            self._begin_due = False
            return
        self._end()

    def _fault(self, exc: BaseException) -> StoreUnavailable | None:
        return unavailable(exc, self.path) if isinstance(exc, sqlite3.Error) and _is_fault(exc) else None

    def _rollback(self) -> None:
        """Roll back what is left of a failed transaction (SQLite may have rolled it back itself)."""
        self._begin_due = False
        riding, self._riding = self._riding, None
        db = self._db
        if riding is not None and self.rider is not None:
            try:  # this store's writes go; the rider's, written before them, commit
                if not db.in_transaction:
                    raise sqlite3.OperationalError("the transaction was rolled back")
                db.execute("ROLLBACK TO own")
                db.execute("RELEASE own")
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                self.rider.fail(riding[0], exc)
            else:
                self.rider.deliver(riding[1])
                return
        if db.in_transaction:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error as exc:  # the connection is unusable: the next statement reports it
                log.warning("rollback failed: %s", exc)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._checkpointer is not None:
                self._checkpointer.close()
            self._db.close()
