"""Per-call ordering and dedupe of notifications, and per-key ordering of sync/async jobs (application callbacks)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from opencomms.sdk import CallSequencer, Deduper, Notification, ResourceKind
from opencomms.sdk.ordering import KeyedLanes


def n(call: str, state: str) -> Notification:
    return Notification("updated", f"/communications/calls/{call}", call, ResourceKind.CALL, {"state": state})


def test_deduper_is_bounded_and_ignores_empty_ids() -> None:
    d = Deduper(capacity=2)
    assert not d.seen("a") and d.seen("a")
    assert not d.seen("b") and not d.seen("c")  # "a" evicted (least recently seen)
    assert not d.seen("a") and len(d) == 2
    assert not d.seen("") and not d.seen("")


async def test_sequencer_keeps_order_per_call_and_runs_calls_concurrently() -> None:
    log: list[tuple[str, str]] = []

    async def handler(note: Notification) -> None:
        if note.state == "slow":
            await asyncio.sleep(0.05)
        if note.state == "boom":
            raise RuntimeError("handler bug")
        log.append((note.call_id, note.state or ""))

    seq = CallSequencer(handler)
    assert seq.submit("d1", [n("a", "slow"), n("a", "boom")])
    assert seq.submit("d2", [n("a", "2")])
    assert not seq.submit("d1", [n("a", "slow")])  # a redelivery
    assert seq.submit("", [n("b", "1")])
    assert seq.submit("", [n("b", "2")])  # no id: never a duplicate
    await seq.join()
    assert [s for c, s in log if c == "a"] == ["slow", "2"]
    assert log[:2] == [("b", "1"), ("b", "2")]
    assert (seq.duplicates, seq.failures, seq.pending) == (1, 1, 0)


async def test_sequencer_close_drops_pending() -> None:
    started = asyncio.Event()

    async def handler(note: Notification) -> None:
        started.set()
        await asyncio.sleep(10)

    seq = CallSequencer(handler)
    seq.submit("x", [n("a", "1"), n("a", "2")])
    await started.wait()
    await seq.close()
    assert seq.pending == 0


async def test_keyed_lanes_run_sync_and_async_jobs_in_order() -> None:
    out: list[int] = []
    pump: KeyedLanes[Callable[[], object]] = KeyedLanes(lambda job: job(), what="job")

    async def slow() -> None:
        await asyncio.sleep(0.02)
        out.append(1)

    pump.submit("c", slow)
    pump.submit("c", lambda: out.append(2))
    pump.submit("c", lambda: 1 / 0)
    pump.submit("c", lambda: out.append(3))
    await pump.join()
    assert out == [1, 2, 3] and pump.failures == 1
