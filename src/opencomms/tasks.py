"""An owned set of background tasks: whoever starts fire-and-forget work keeps it in a `TaskSet` and closes the
set when it stops, which cancels what is still running and waits for it, so no task outlives its owner.

A task that fails is logged (with the set's name) instead of warning "exception was never retrieved"; a finished
task leaves the set at once. After `close()`, `spawn` refuses new work (the coroutine is closed, never run).
Must not: hold tasks that someone else awaits (use a TaskGroup or an explicit task for those).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["TaskSet", "honour_cancel"]

_T = TypeVar("_T")
log = logging.getLogger("opencomms.tasks")


def honour_cancel() -> None:
    """Raise CancelledError when the running task was asked to stop but has not stopped: a library it awaited
    swallowed the cancellation (redis-py 8 can, around an XREADGROUP whose connection it releases), so the caller went
    on as if nothing happened. A loop that calls this each round ends at its next round instead of never, and with
    it the TaskGroup or shutdown waiting for it (a node's stop hung on exactly this)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class TaskSet:
    """Background tasks owned by one component (its `name` appears in the logs of failed tasks)."""

    __slots__ = ("_closed", "_tasks", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def spawn(self, coro: Coroutine[Any, Any, _T], *, name: str | None = None) -> asyncio.Task[_T] | None:
        """Run `coro` as a task of this set (None, and `coro` closed unrun, once the set is closed)."""
        if self._closed:
            coro.close()
            return None
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("%s task %s failed", self.name, task.get_name(), exc_info=error)

    async def close(self) -> None:
        """Refuse new tasks, cancel the running ones and wait until they have all finished. Idempotent."""
        self._closed = True
        while self._tasks:  # a task being cancelled may still spawn (refused) or finish others
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._tasks.difference_update(tasks)

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Any:
        return iter(list(self._tasks))
