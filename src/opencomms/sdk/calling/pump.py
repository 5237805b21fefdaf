"""Per-call ordered execution of the application's event callbacks, off the notification lanes.

Callbacks may await call actions (answer, play_prompt...) whose outcome arrives by later notifications of the
same call; running callbacks in the receiver's lane would deadlock, so each call gets its own callback queue.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger("opencomms.sdk")

Job = Callable[[], Any]


class CallbackPump:
    """Runs jobs (sync or async) one at a time per key, in submission order; errors are logged."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[Job]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.failures = 0

    def submit(self, key: str, job: Job) -> None:
        self._queues.setdefault(key, deque()).append(job)
        if key not in self._tasks:
            self._tasks[key] = asyncio.get_running_loop().create_task(self._run(key))

    async def _run(self, key: str) -> None:
        queue = self._queues[key]
        try:
            while queue:
                job = queue.popleft()
                try:
                    result = job()
                    if inspect.isawaitable(result):
                        await result
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self.failures += 1
                    log.exception("call event callback failed", extra={"call_id": key})
        finally:
            self._tasks.pop(key, None)
            if not queue:
                self._queues.pop(key, None)

    async def join(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._queues.clear()
