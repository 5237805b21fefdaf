"""TaskSet: owned background tasks are cancelled and awaited on close, failures are logged, none outlive it."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from opencomms.tasks import TaskSet, honour_cancel


async def test_close_cancels_and_awaits_every_running_task() -> None:
    tasks = TaskSet("test")
    finished: list[str] = []

    async def forever(tag: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)  # cleanup that itself awaits
            finished.append(tag)

    spawned = [tasks.spawn(forever(tag)) for tag in "abc"]
    await asyncio.sleep(0)
    assert len(tasks) == 3
    await tasks.close()
    assert sorted(finished) == ["a", "b", "c"] and len(tasks) == 0
    assert all(t is not None and t.done() for t in spawned)


async def test_finished_tasks_leave_and_failures_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    tasks = TaskSet("test")

    async def fail() -> None:
        raise RuntimeError("boom")

    async def ok() -> None:
        pass

    tasks.spawn(ok(), name="fine")
    with caplog.at_level(logging.ERROR, logger="opencomms.tasks"):
        tasks.spawn(fail(), name="broken")
        for _ in range(3):
            await asyncio.sleep(0)
    assert len(tasks) == 0
    assert [r.getMessage() for r in caplog.records] == ["test task broken failed"]


async def test_a_closed_set_refuses_new_work_without_running_it() -> None:
    tasks = TaskSet("test")
    await tasks.close()
    ran: list[int] = []

    async def work() -> None:
        ran.append(1)

    assert tasks.spawn(work()) is None and tasks.closed
    await asyncio.sleep(0)
    assert ran == [] and len(tasks) == 0
    await tasks.close()  # idempotent


async def test_a_loop_ends_when_a_library_swallowed_its_cancellation() -> None:
    """A library that catches CancelledError and returns (redis-py 8 can, releasing a connection) would keep a
    retry loop alive forever, and whoever waits for that task with it; `honour_cancel` each round ends it."""
    inside = asyncio.Event()
    stopped = False

    async def library_call() -> None:
        inside.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.05)

    async def loop(honour: bool) -> None:
        while not stopped:
            if honour:
                honour_cancel()
            await library_call()

    for honour in (False, True):
        inside.clear()
        task = asyncio.get_running_loop().create_task(loop(honour))
        await inside.wait()
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=0.3)
        if honour:
            assert done and task.cancelled()
        else:
            assert not done and task.cancelling() == 1  # asked to stop, going on regardless
            stopped = True
            await task
            stopped = False
