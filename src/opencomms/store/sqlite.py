"""SQLite store: the embedded persistent default. One connection, WAL journal, owned by one event loop.

Writes outside an explicit transaction commit at once; `transaction()` groups them. With WAL and
synchronous=NORMAL a killed process loses nothing committed (an OS crash may lose the last commits).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from opencomms.store.base import Doc, OutboxEntry, Store

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
    def __init__(self, path: str, *, synchronous: str = "NORMAL") -> None:
        if path != ":memory:":
            parent = os.path.dirname(os.path.abspath(path))
            os.makedirs(parent, exist_ok=True)
        self.path = path
        # isolation_level=None: we issue BEGIN/COMMIT ourselves.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._depth = 0
        self._closed = False

    # -- documents ---------------------------------------------------------------------------------------
    def get(self, kind: str, key: str) -> Doc | None:
        row = self._db.execute("SELECT doc FROM docs WHERE kind=? AND key=?", (kind, key)).fetchone()
        return None if row is None else json.loads(row[0])  # type: ignore[no-any-return]

    def put(self, kind: str, key: str, doc: Doc) -> None:
        self._db.execute(
            "INSERT INTO docs(kind, key, doc) VALUES(?,?,?) ON CONFLICT(kind, key) DO UPDATE SET doc=excluded.doc",
            (kind, key, json.dumps(doc, separators=(",", ":"))),
        )

    def delete(self, kind: str, key: str) -> bool:
        cur = self._db.execute("DELETE FROM docs WHERE kind=? AND key=?", (kind, key))
        return cur.rowcount > 0

    def scan(self, kind: str) -> Iterator[tuple[str, Doc]]:
        rows = self._db.execute("SELECT key, doc FROM docs WHERE kind=? ORDER BY key", (kind,)).fetchall()
        for key, raw in rows:
            yield key, json.loads(raw)

    # -- outbox ------------------------------------------------------------------------------------------
    def outbox_append(self, entry: OutboxEntry) -> OutboxEntry:
        cur = self._db.execute(
            "INSERT INTO outbox(id, order_key, app_id, tenant_id, url, body, created_at, next_attempt_at, attempts)"
            " VALUES(?,?,?,?,?,?,?,?,?)",
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
            self._db.close()
