"""In-memory store for tests and throwaway nodes. Transactions snapshot and restore on error."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import replace

from opencomms.store.base import Doc, OutboxEntry, Store


class MemoryStore(Store):
    def __init__(self) -> None:
        self._docs: dict[str, dict[str, str]] = {}
        self._outbox: dict[str, OutboxEntry] = {}
        self._seq = 0
        self._depth = 0
        self._snapshot: tuple[dict[str, dict[str, str]], dict[str, OutboxEntry], int] | None = None

    def get(self, kind: str, key: str) -> Doc | None:
        raw = self._docs.get(kind, {}).get(key)
        return None if raw is None else json.loads(raw)  # type: ignore[no-any-return]

    def put(self, kind: str, key: str, doc: Doc) -> None:
        # Stored serialized so callers never share mutable state with the store (like a real database).
        self._docs.setdefault(kind, {})[key] = json.dumps(doc)

    def delete(self, kind: str, key: str) -> bool:
        return self._docs.get(kind, {}).pop(key, None) is not None

    def scan(self, kind: str) -> Iterator[tuple[str, Doc]]:
        items = sorted(self._docs.get(kind, {}).items())
        for key, raw in items:
            yield key, json.loads(raw)

    def outbox_append(self, entry: OutboxEntry) -> OutboxEntry:
        self._seq += 1
        stored = replace(entry, seq=self._seq)
        self._outbox[stored.id] = stored
        return stored

    def outbox_update(self, entry: OutboxEntry) -> None:
        if entry.id in self._outbox:
            self._outbox[entry.id] = entry

    def outbox_remove(self, entry_id: str) -> None:
        self._outbox.pop(entry_id, None)

    def outbox_load(self) -> list[OutboxEntry]:
        return sorted(self._outbox.values(), key=lambda e: e.seq)

    # -- transaction primitives (the template is Store.transaction)
    def _begin(self) -> None:
        self._snapshot = (copy.deepcopy(self._docs), dict(self._outbox), self._seq)

    def _commit(self) -> None:
        self._snapshot = None

    def _rollback(self) -> None:
        if self._snapshot is not None:
            self._docs, self._outbox, self._seq = self._snapshot
            self._snapshot = None
