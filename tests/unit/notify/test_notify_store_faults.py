"""A store that cannot write (disk full, locked) never ends the dispatcher: removals and retry bookkeeping wait and
are retried; deliveries go on and keep their per-call order."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from opencomms.notify import Dispatcher, RetryPolicy
from opencomms.store import MemoryStore, StoreUnavailable
from opencomms.store.base import OutboxEntry
from tests.unit.notify.notify_receiver import Receiver, Reply

FAST = RetryPolicy(initial_delay=0.01, multiplier=2.0, max_delay=0.05, max_attempts=50, max_age=30.0, jitter=0.0)


class FullStore(MemoryStore):
    """Writes fail like a full disk's while `full` is set. Unit tests only."""

    def __init__(self) -> None:
        super().__init__()
        self.full = False

    def _check(self) -> None:
        if self.full:
            raise StoreUnavailable("store test.db is full (no space left)", reason="full")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._check()
        with super().transaction():
            yield

    def outbox_update(self, entry: OutboxEntry) -> None:
        self._check()
        super().outbox_update(entry)

    def outbox_remove_many(self, entry_ids: Iterable[str]) -> None:
        self._check()
        super().outbox_remove_many(entry_ids)


async def test_failed_removals_and_updates_are_retried_not_fatal(receiver: Receiver) -> None:
    failing = {"on": True}
    receiver.chooser = lambda path: Reply(status=500 if failing["on"] else 202)
    store = FullStore()
    async with Dispatcher(store, sign=lambda a, t: "tok", policy=FAST, remove_batch_s=0.001, fault_retry=0.05) as d:
        ids = [
            d.submit(order_key="c1", app_id="a", tenant_id="t", url=receiver.url("/cb"), body=json.dumps(i).encode()).id
            for i in range(3)
        ]
        await asyncio.sleep(0.05)  # attempts fail and are rescheduled
        store.full = True  # now their bookkeeping cannot be written either
        await asyncio.sleep(0.05)
        failing["on"] = False
        async with asyncio.timeout(5):
            while not receiver.requests or receiver.requests[-1].delivery_id != ids[0]:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
        await asyncio.sleep(0.2)  # delivered, but its removal cannot commit: the lane waits, the dispatcher lives
        assert d.store_faults >= 2
        assert {r.delivery_id for r in receiver.requests} == {ids[0]}
        assert [e.id for e in store.outbox_load()] == ids
        store.full = False  # space returns
        async with asyncio.timeout(5):
            await d.wait_idle()
        assert d.stats.delivered == 3
    delivered = [r.delivery_id for r in receiver.requests if r.delivery_id in ids]
    assert list(dict.fromkeys(delivered)) == ids  # order kept
    assert store.outbox_load() == []
