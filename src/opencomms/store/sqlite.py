"""SQLite store: the embedded persistent default. One connection, WAL journal, owned by one event loop (plus a
thread of its own that runs the WAL checkpoints, see store.checkpoint).

Writes outside an explicit transaction commit at once; `transaction()` groups them. With WAL and
synchronous=NORMAL a killed process loses nothing committed (an OS crash may lose the last commits).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, TypeVar

import orjson

from opencomms.store.base import Doc, OutboxEntry, Store
from opencomms.store.checkpoint import Checkpointer

_T = TypeVar("_T")

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


class SqliteStore(Store):
    def __init__(self, path: str, *, synchronous: str = "NORMAL", checkpoint_thread: bool = True) -> None:
        if path != ":memory:":
            parent = os.path.dirname(os.path.abspath(path))
            os.makedirs(parent, exist_ok=True)
        self.path = path
        # isolation_level=None: we issue BEGIN/COMMIT ourselves.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        # Checkpoints run in a thread of their own (store.checkpoint); the commit that crosses ~80 MB of WAL still
        # checkpoints itself, should that thread ever fall behind.
        self._checkpointer: Checkpointer | None = None
        if path != ":memory:" and checkpoint_thread:
            self._db.execute("PRAGMA wal_autocheckpoint=20000")
            self._checkpointer = Checkpointer(path)
        # A page cache of up to 64 MB (SQLite's default is 2 MB): call records pile up, and pages read back from the
        # file with the GIL released cost the event loop a hand-off to the media thread each time.
        self._db.execute("PRAGMA cache_size=-65536")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._depth = 0
        self._closed = False

    # -- documents ---------------------------------------------------------------------------------------
    def get(self, kind: str, key: str) -> Doc | None:
        row = self._db.execute("SELECT doc FROM docs WHERE kind=? AND key=?", (kind, key)).fetchone()
        return None if row is None else _loads(row[0])  # type: ignore[no-any-return]

    def put(self, kind: str, key: str, doc: Doc) -> None:
        self._db.execute(_PUT, (kind, key, _dumps(doc)))

    def put_docs(self, items: Iterable[tuple[str, str, Doc]]) -> None:
        rows = [(kind, key, _dumps(doc)) for kind, key, doc in items]
        for chunk in _chunks(rows):  # one statement per chunk: every statement costs the loop a GIL hand-off
            sql = f"INSERT INTO docs(kind, key, doc) VALUES{_PLACES3 * len(chunk)}"[:-1] + _UPSERT
            self._db.execute(sql, [value for row in chunk for value in row])

    def delete(self, kind: str, key: str) -> bool:
        cur = self._db.execute(_DELETE, (kind, key))
        return cur.rowcount > 0

    def delete_many(self, kind: str, keys: Iterable[str]) -> None:
        for chunk in _chunks(list(keys)):
            self._db.execute(f"DELETE FROM docs WHERE kind=? AND key IN ({_places(len(chunk))})", (kind, *chunk))

    def scan(self, kind: str) -> Iterator[tuple[str, Doc]]:
        rows = self._db.execute("SELECT key, doc FROM docs WHERE kind=? ORDER BY key", (kind,)).fetchall()
        for key, raw in rows:
            yield key, _loads(raw)

    def change_marker(self) -> object:
        """SQLite's data_version: it changes when another connection commits to the database file."""
        return self._db.execute("PRAGMA data_version").fetchone()[0]

    # -- outbox ------------------------------------------------------------------------------------------
    def outbox_append(self, entry: OutboxEntry) -> OutboxEntry:
        cur = self._db.execute(
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
        return replace(entry, seq=cur.lastrowid)

    def outbox_update(self, entry: OutboxEntry) -> None:
        self._db.execute(
            "UPDATE outbox SET url=?, next_attempt_at=?, attempts=? WHERE id=?",
            (entry.url, entry.next_attempt_at, entry.attempts, entry.id),
        )

    def outbox_remove(self, entry_id: str) -> None:
        self._db.execute("DELETE FROM outbox WHERE id=?", (entry_id,))

    def outbox_remove_many(self, entry_ids: Iterable[str]) -> None:
        for chunk in _chunks(list(entry_ids)):
            self._db.execute(f"DELETE FROM outbox WHERE id IN ({_places(len(chunk))})", chunk)

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
            cur = self._db.execute(f"{_OUTBOX_INSERT} VALUES{_PLACES9 * len(chunk)}"[:-1], values)
            assert cur.lastrowid is not None  # sqlite always sets it after an INSERT
            first = cur.lastrowid - len(chunk) + 1
            appended.extend(replace(e, seq=first + i) for i, e in enumerate(chunk))
        return appended

    def outbox_load(self) -> list[OutboxEntry]:
        rows = self._db.execute(
            "SELECT seq, id, order_key, app_id, tenant_id, url, body, created_at, next_attempt_at, attempts"
            " FROM outbox ORDER BY seq"
        ).fetchall()
        return [
            OutboxEntry(
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
            for r in rows
        ]

    # -- lifecycle ---------------------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")
        finally:
            self._depth = 0

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._checkpointer is not None:
                self._checkpointer.close()
            self._db.close()
