"""Hand notifications to a handler in order per call, concurrently across calls, without duplicates.

The node keeps one delivery in flight per call, and the receiver answers 202 before the handler runs, so the
order of arrival is the order to keep: each call gets a FIFO lane drained by one task at a time. A delivery the
node repeats (its 2xx was lost) carries the same `opencomms-delivery-id` and is dropped by `Deduper`.
`KeyedLanes` is the generic part (FIFO per key, one task per busy key), also used for application callbacks.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Generic, TypeVar

from opencomms.sdk.notifications import Notification

log = logging.getLogger("opencomms.sdk")

Handler = Callable[[Notification], Awaitable[None]]
T = TypeVar("T")


class Deduper:
    """Remembers the last `capacity` delivery ids (pure; LRU)."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def seen(self, delivery_id: str) -> bool:
        """True if this id was seen before (a duplicate); otherwise remembers it and returns False.

        An empty id (a sender without delivery ids) is never a duplicate.
        """
        if not delivery_id:
            return False
        if delivery_id in self._ids:
            self._ids.move_to_end(delivery_id)
            return True
        self._ids[delivery_id] = None
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return False

    def forget(self, delivery_id: str) -> None:
        """Let this id through again (its handling failed and the sender will retry it)."""
        self._ids.pop(delivery_id, None)

    def __contains__(self, delivery_id: object) -> bool:
        return delivery_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)


class KeyedLanes(Generic[T]):
    """FIFO lanes per key in front of `run`: one item at a time per key, keys concurrently.

    `run(item)` may be a plain function or return an awaitable (awaited in the lane). Its errors are counted in
    `failures` and logged as "<what> failed", never propagated.
    """

    def __init__(self, run: Callable[[T], object], *, what: str) -> None:
        self.run = run
        self.what = what
        self.failures = 0
        self._lanes: dict[str, deque[T]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def submit(self, key: str, item: T) -> None:
        """Queue `item` behind the key's earlier items; starts the key's task if the lane was idle."""
        self._lanes.setdefault(key, deque()).append(item)
        if key not in self._tasks:
            self._tasks[key] = asyncio.get_running_loop().create_task(self._drain(key))

    @property
    def pending(self) -> int:
        """Items queued and not yet started."""
        return sum(len(lane) for lane in self._lanes.values())

    async def _drain(self, key: str) -> None:
        lane = self._lanes[key]
        try:
            while lane:
                item = lane.popleft()
                try:
                    result = self.run(item)
                    if inspect.isawaitable(result):
                        await result
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self.failures += 1
                    log.exception("%s failed", self.what, extra={"call_id": key})
        finally:
            self._tasks.pop(key, None)
            if not lane:
                self._lanes.pop(key, None)

    async def join(self) -> None:
        """Wait until every queued item has been handled."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def close(self) -> None:
        """Stop: cancel the lanes' tasks (queued items are dropped)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._lanes.clear()


class CallSequencer:
    """Per-call FIFO lanes in front of an async handler; the handler's errors are logged, never propagated."""

    def __init__(self, handler: Handler, *, dedupe: Deduper | None = None) -> None:
        self.handler = handler
        self.dedupe = dedupe if dedupe is not None else Deduper()
        self.duplicates = 0
        self._lanes: KeyedLanes[Notification] = KeyedLanes(self._handle, what="notification handler")

    def _handle(self, note: Notification) -> Awaitable[None]:
        return self.handler(note)  # looked up per note: the receiver may replace the handler

    def submit(self, delivery_id: str, notifications: Iterable[Notification]) -> bool:
        """Queue one delivery's notifications; False if the delivery is a duplicate (nothing queued)."""
        if self.dedupe.seen(delivery_id):
            self.duplicates += 1
            return False
        for note in notifications:
            self._lanes.submit(note.call_id, note)
        return True

    @property
    def failures(self) -> int:
        return self._lanes.failures

    @property
    def pending(self) -> int:
        return self._lanes.pending

    async def join(self) -> None:
        """Wait until every queued notification has been handled."""
        await self._lanes.join()

    async def close(self) -> None:
        """Stop handling: cancel the lanes' tasks (queued notifications are dropped)."""
        await self._lanes.close()
