"""An outbox whose removals take a while (a network round trip to Redis): heads that finish while a removal is under
way are removed too, in the next batch, and their lanes move on."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from opencomms.notify import Dispatcher, RetryPolicy
from opencomms.store import MemoryStore, OutboxEntry
from tests.unit.notify.notify_receiver import Receiver, Reply

FAST = RetryPolicy(initial_delay=0.01, multiplier=2.0, max_delay=0.05, max_attempts=50, max_age=30.0, jitter=0.0)


class SlowOutbox:
    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.removals: list[list[str]] = []

    async def outbox_load(self) -> list[OutboxEntry]:
        return self.store.outbox_load()

    async def outbox_remove(self, entry_ids: Iterable[str]) -> None:
        ids = list(entry_ids)
        await asyncio.sleep(0.05)
        self.removals.append(ids)
        self.store.outbox_remove_many(ids)

    async def outbox_update(self, entries: Iterable[OutboxEntry]) -> None:
        for entry in entries:
            self.store.outbox_update(entry)


async def test_heads_finished_during_a_removal_are_removed_too(receiver: Receiver) -> None:
    store = MemoryStore()
    outbox = SlowOutbox(store)
    receiver.script("/slow", Reply(delay=0.02))  # finishes while the first removal is under way
    async with Dispatcher(store, sign=lambda a, t: "tok", policy=FAST, outbox=outbox) as d:
        d.submit(order_key="a", app_id="app", tenant_id="t", url=receiver.url("/fast"), body=b'{"key":"a","i":0}')
        d.submit(order_key="b", app_id="app", tenant_id="t", url=receiver.url("/slow"), body=b'{"key":"b","i":0}')
        await asyncio.wait_for(d.wait_idle(), 2.0)
    assert len(outbox.removals) == 2 and store.outbox_load() == []
