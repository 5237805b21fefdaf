from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from opencomms.notify import Dispatcher, RetryPolicy
from opencomms.store import MemoryStore, SqliteStore, Store
from tests.unit.notify.notify_receiver import HANG, Receiver, Reply, redirect

FAST = RetryPolicy(initial_delay=0.01, multiplier=2.0, max_delay=0.05, max_attempts=50, max_age=30.0, jitter=0.0)


def sign(app_id: str, tenant_id: str) -> str:
    return f"tok.{app_id}.{tenant_id}"


def body(key: str, i: int) -> bytes:
    return json.dumps({"key": key, "i": i}).encode()


def submit(d: Dispatcher, url: str, key: str, i: int) -> str:
    return d.submit(order_key=key, app_id="app", tenant_id="tenant", url=url, body=body(key, i)).id


async def eventually(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Poll a test condition (tests may poll; the dispatcher itself never does)."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - observing counters from outside
            await asyncio.sleep(0.002)


async def idle(d: Dispatcher, within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        await d.wait_idle()


async def test_delivers_with_headers_and_removes_from_store(receiver: Receiver) -> None:
    store = MemoryStore()
    async with Dispatcher(store, sign=sign, policy=FAST, user_agent="oc-test/1") as d:
        entry = d.submit(order_key="c1", app_id="a1", tenant_id="t1", url=receiver.url("/cb?x=1"), body=b'{"k":1}')
        assert entry.seq > 0 and store.outbox_load() == [entry]
        await idle(d)
        assert d.stats.delivered == 1 and d.stats.pending == 0
    [req] = receiver.requests
    assert req.path == "/cb"
    assert req.body == b'{"k":1}'
    assert req.delivery_id == entry.id
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["Authorization"] == "Bearer tok.a1.t1"
    assert req.headers["User-Agent"] == "oc-test/1"
    assert store.outbox_load() == []


async def test_per_key_order_under_concurrency_with_random_failures(receiver: Receiver) -> None:
    rng = random.Random(1234)

    def chooser(path: str) -> Reply:
        return Reply(status=500 if rng.random() < 0.2 else 202, delay=rng.random() * 0.003)

    receiver.chooser = chooser
    store = MemoryStore()
    keys = [f"call-{k}" for k in range(50)]
    expected: dict[str, list[str]] = {k: [] for k in keys}
    async with Dispatcher(store, sign=sign, policy=FAST, max_in_flight=32) as d:
        for i in range(20):
            for k in keys:
                expected[k].append(submit(d, receiver.url("/cb"), k, i))
        await idle(d, within=9.0)
        stats = d.stats
    assert stats.delivered == 1000 and stats.pending == 0 and stats.retried > 0
    assert stats.dropped == stats.given_up == 0
    accepted = [r for r in receiver.requests if r.accepted]
    # At-least-once: dedup by delivery id yields exactly the submitted set (here no duplicates at all).
    assert len({r.delivery_id for r in accepted}) == len(accepted) == 1000
    assert {r.delivery_id for r in accepted} == {i for ids in expected.values() for i in ids}
    for k in keys:
        got = [r for r in accepted if r.key == k]
        assert [r.index for r in got] == list(range(20))
        assert [r.delivery_id for r in got] == expected[k]
    assert receiver.max_in_flight_per_key == 1
    assert 1 < receiver.max_in_flight <= 32
    assert store.outbox_load() == []


async def test_retry_then_success(receiver: Receiver) -> None:
    receiver.script("/cb", 500, 503)
    store = MemoryStore()
    policy = RetryPolicy(initial_delay=0.05, multiplier=2.0, max_delay=1.0, jitter=0.0)
    async with Dispatcher(store, sign=sign, policy=policy) as d:
        entry_id = submit(d, receiver.url("/cb"), "c", 0)
        await eventually(lambda: d.stats.retried == 1)
        [waiting] = store.outbox_load()
        assert waiting.attempts == 1 and waiting.next_attempt_at > waiting.created_at
        await idle(d)
        assert d.stats.retried == 2 and d.stats.delivered == 1
    reqs = receiver.requests
    assert [r.status for r in reqs] == [500, 503, 202]
    assert {r.delivery_id for r in reqs} == {entry_id}
    assert reqs[1].at - reqs[0].at >= 0.045
    assert reqs[2].at - reqs[1].at >= 0.095
    assert store.outbox_load() == []


async def test_timeout_then_retry(receiver: Receiver) -> None:
    receiver.script("/cb", HANG)
    async with Dispatcher(MemoryStore(), sign=sign, policy=FAST, timeout=0.2) as d:
        entry_id = submit(d, receiver.url("/cb"), "c", 0)
        started = time.monotonic()
        await idle(d)
        assert time.monotonic() - started >= 0.2
        assert d.stats.retried == 1 and d.stats.delivered == 1
    assert [r.delivery_id for r in receiver.requests] == [entry_id, entry_id]


async def test_4xx_dropped_and_next_entry_of_the_key_delivered(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.script("/cb", 400)
    store = MemoryStore()
    caplog.set_level(logging.INFO, logger="opencomms.notify")
    async with Dispatcher(store, sign=sign, policy=FAST) as d:
        first = submit(d, receiver.url("/cb?secret=s3"), "c", 0)
        second = submit(d, receiver.url("/cb?secret=s3"), "c", 1)
        await idle(d)
        assert d.stats.dropped == 1 and d.stats.delivered == 1 and d.stats.retried == 0
    assert [(r.delivery_id, r.status) for r in receiver.requests] == [(first, 400), (second, 202)]
    assert store.outbox_load() == []
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.__dict__["delivery_id"] == first
    assert warning.__dict__["call_id"] == "c"
    assert warning.__dict__["status"] == 400
    text = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records)
    assert "tok." not in text and "s3" not in text and '"key"' not in text


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_auth_failures_are_not_retried(receiver: Receiver, status: int) -> None:
    receiver.script("/cb", status)
    async with Dispatcher(MemoryStore(), sign=sign, policy=FAST) as d:
        submit(d, receiver.url("/cb"), "c", 0)
        await idle(d)
        assert d.stats.dropped == 1 and d.stats.retried == 0
    assert len(receiver.requests) == 1


async def test_redirect_moves_later_entries_and_calls_on_redirect(receiver: Receiver) -> None:
    # The new instance fails once, so the moved entries can be seen persisted in the store.
    receiver.script("/old", redirect("/new?instance=2", 307))
    receiver.script("/new", 500)
    moves: list[tuple[str, str]] = []
    store = MemoryStore()
    policy = RetryPolicy(initial_delay=0.2, jitter=0.0)
    async with Dispatcher(store, sign=sign, policy=policy, on_redirect=lambda k, u: moves.append((k, u))) as d:
        ids = [submit(d, receiver.url("/old"), "c", i) for i in range(3)]
        other = submit(d, receiver.url("/old"), "other-call", 0)
        await eventually(lambda: d.stats.retried == 1 and d.stats.delivered == 1)
        new_url = receiver.url("/new?instance=2")
        assert moves == [("c", new_url)]
        assert [e.url for e in store.outbox_load() if e.order_key == "c"] == [new_url] * 3
        await idle(d)
        assert d.stats.redirected == 1 and d.stats.delivered == 4
    old = [r.delivery_id for r in receiver.on("/old")]
    new = [r.delivery_id for r in receiver.on("/new") if r.accepted]
    assert old == [ids[0], other]  # only the head went to the old URL; another call is untouched
    assert new == ids
    assert store.outbox_load() == []


async def test_302_absolute_location(receiver: Receiver) -> None:
    receiver.script("/a", redirect(receiver.url("/b"), 302))
    async with Dispatcher(MemoryStore(), sign=sign, policy=FAST) as d:
        entry_id = submit(d, receiver.url("/a"), "c", 0)
        await idle(d)
        assert d.stats.delivered == 1 and d.stats.redirected == 1
    assert [(r.path, r.delivery_id) for r in receiver.requests] == [("/a", entry_id), ("/b", entry_id)]
    assert receiver.requests[1].body == body("c", 0)


async def test_redirect_loop_is_dropped_after_max_redirects(receiver: Receiver) -> None:
    receiver.chooser = lambda path: redirect("/loop", 302)
    moves: list[tuple[str, str]] = []
    async with Dispatcher(
        MemoryStore(), sign=sign, policy=FAST, max_redirects=3, on_redirect=lambda k, u: moves.append((k, u))
    ) as d:
        submit(d, receiver.url("/start"), "c", 0)
        await idle(d)
        assert d.stats.dropped == 1 and d.stats.redirected == 3
    assert len(receiver.requests) == 4
    assert moves == []


async def test_3xx_without_location_is_dropped(receiver: Receiver) -> None:
    receiver.script("/cb", 302)
    async with Dispatcher(MemoryStore(), sign=sign, policy=FAST) as d:
        submit(d, receiver.url("/cb"), "c", 0)
        submit(d, receiver.url("/cb"), "c", 1)
        await idle(d)
        assert d.stats.dropped == 1 and d.stats.delivered == 1


async def test_retry_after_is_honoured(receiver: Receiver) -> None:
    receiver.script("/cb", Reply(status=429, headers={"Retry-After": "1"}))
    async with Dispatcher(MemoryStore(), sign=sign, policy=FAST) as d:
        submit(d, receiver.url("/cb"), "c", 0)
        await idle(d)
    first, second = receiver.requests
    assert (first.status, second.status) == (429, 202)
    assert second.at - first.at >= 0.95


async def test_gives_up_after_max_attempts_then_next_entry_flows(receiver: Receiver) -> None:
    receiver.script("/cb", 500, 500, 500)
    policy = RetryPolicy(initial_delay=0.01, max_delay=0.01, max_attempts=3, jitter=0.0)
    store = MemoryStore()
    async with Dispatcher(store, sign=sign, policy=policy) as d:
        first = submit(d, receiver.url("/cb"), "c", 0)
        second = submit(d, receiver.url("/cb"), "c", 1)
        await idle(d)
        assert d.stats.given_up == 1 and d.stats.retried == 2 and d.stats.delivered == 1
    assert [r.delivery_id for r in receiver.requests] == [first] * 3 + [second]
    assert store.outbox_load() == []


async def test_gives_up_by_age() -> None:
    now = [1000.0]
    store = MemoryStore()
    policy = RetryPolicy(initial_delay=0.01, jitter=0.0, max_age=60.0)
    # Nothing listens on this port (bound then closed), so every attempt is a connection error.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/cb"
    async with Dispatcher(store, sign=sign, policy=policy, clock=lambda: now[0]) as d:
        submit(d, url, "c", 0)
        now[0] += 61.0
        await idle(d)
        assert d.stats.given_up == 1 and d.stats.retried == 0


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/cb", "http://", "not a url"])
async def test_unusable_url_is_dropped(url: str) -> None:
    async with Dispatcher(MemoryStore(), sign=sign, policy=FAST) as d:
        submit(d, url, "c", 0)
        await idle(d)
        assert d.stats.dropped == 1


async def test_sign_failure_is_retried(receiver: Receiver) -> None:
    calls = [0]

    def flaky_sign(app_id: str, tenant_id: str) -> str:
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("token service down")
        return "tok"

    async with Dispatcher(MemoryStore(), sign=flaky_sign, policy=FAST) as d:
        submit(d, receiver.url("/cb"), "c", 0)
        await idle(d)
        assert d.stats.retried == 1 and d.stats.delivered == 1
    assert len(receiver.requests) == 1


async def test_transaction_commit_and_rollback(receiver: Receiver) -> None:
    store = MemoryStore()
    async with Dispatcher(store, sign=sign, policy=FAST) as d:
        with pytest.raises(RuntimeError), d.transaction():
            store.put("calls", "c", {"state": "established"})
            submit(d, receiver.url("/cb"), "c", 0)
            raise RuntimeError("boom")
        assert store.outbox_load() == [] and store.get("calls", "c") is None
        assert d.stats.pending == 0
        with d.transaction():
            store.put("calls", "c", {"state": "established"})
            with d.transaction():
                kept = submit(d, receiver.url("/cb"), "c", 1)
            await asyncio.sleep(0)  # nothing is released before the outermost block commits
            assert receiver.requests == []
        await idle(d)
    assert [r.delivery_id for r in receiver.requests] == [kept]


async def test_submit_inside_store_transaction_is_sent_after_commit(receiver: Receiver) -> None:
    store = MemoryStore()
    async with Dispatcher(store, sign=sign, policy=FAST) as d:
        with store.transaction():
            entry_id = submit(d, receiver.url("/cb"), "c", 0)
            assert d.stats.pending == 1
        await idle(d)
    assert [r.delivery_id for r in receiver.requests] == [entry_id]


async def test_submit_before_start_and_after_close_is_persisted(receiver: Receiver) -> None:
    store = MemoryStore()
    d1 = Dispatcher(store, sign=sign, policy=FAST)
    early = submit(d1, receiver.url("/cb"), "c", 0)
    async with d1:
        await idle(d1)
    late = submit(d1, receiver.url("/cb"), "c", 1)
    assert [e.id for e in store.outbox_load()] == [late]
    async with Dispatcher(store, sign=sign, policy=FAST) as d2:
        await idle(d2)
    assert [r.delivery_id for r in receiver.requests] == [early, late]


async def test_restart_resumes_from_sqlite(receiver: Receiver, tmp_path: Path) -> None:
    path = str(tmp_path / "outbox.db")
    receiver.script("/slow", HANG)
    store: Store = SqliteStore(path)
    try:
        d1 = Dispatcher(store, sign=sign, policy=FAST, timeout=5.0)
        async with d1:
            fast = [submit(d1, receiver.url("/fast"), "a", i) for i in range(5)]
            slow = [submit(d1, receiver.url("/slow"), "b", i) for i in range(5)]
            await eventually(lambda: d1.stats.delivered == 5 and len(receiver.on("/slow")) == 1)
        # Closed mid-delivery: the in-flight head and the blocked entries stay in the store, untouched.
        left = store.outbox_load()
        assert [e.id for e in left] == slow
        assert all(e.attempts == 0 for e in left)
        assert d1.stats.pending == 0
    finally:
        store.close()

    store = SqliteStore(path)
    try:
        async with Dispatcher(store, sign=sign, policy=FAST) as d2:
            assert d2.stats.pending == 5
            await idle(d2)
            assert d2.stats.delivered == 5
        assert store.outbox_load() == []
    finally:
        store.close()
    assert [r.delivery_id for r in receiver.on("/fast")] == fast
    assert [r.delivery_id for r in receiver.on("/slow")] == [slow[0], *slow]


def notify_tasks() -> set[asyncio.Task[object]]:
    """Tasks started by dispatchers (the receiver's server runs connection tasks of its own)."""
    return {t for t in asyncio.all_tasks() if t.get_name().startswith("notify-")}


async def test_close_is_idempotent_and_leaks_no_tasks(receiver: Receiver) -> None:
    d = Dispatcher(MemoryStore(), sign=sign, policy=FAST, max_in_flight=8)
    await d.start()
    submit(d, receiver.url("/cb"), "c", 0)
    await idle(d)
    assert len(notify_tasks()) == 8
    await d.aclose()
    await d.aclose()
    assert notify_tasks() == set()
    with pytest.raises(RuntimeError):
        await d.start()
    with pytest.raises(RuntimeError):
        await d.wait_idle()


async def test_close_while_retry_timer_armed(receiver: Receiver) -> None:
    receiver.script("/cb", 500)
    store = MemoryStore()
    policy = RetryPolicy(initial_delay=30.0, jitter=0.0)
    async with Dispatcher(store, sign=sign, policy=policy) as d:
        entry_id = submit(d, receiver.url("/cb"), "c", 0)
        await eventually(lambda: d.stats.retried == 1)
    [left] = store.outbox_load()
    assert left.id == entry_id and left.attempts == 1
    assert notify_tasks() == set()


async def test_session_factory_is_used_and_closed(receiver: Receiver) -> None:
    made: list[aiohttp.ClientSession] = []

    def factory() -> aiohttp.ClientSession:
        made.append(aiohttp.ClientSession(headers={"X-Factory": "yes"}))
        return made[-1]

    d = Dispatcher(MemoryStore(), sign=sign, policy=FAST, session_factory=factory)
    with pytest.raises(RuntimeError):
        await d.wait_idle()  # not started
    async with d:
        submit(d, receiver.url("/cb"), "c", 0)
        await idle(d)
    [session] = made
    assert session.closed
    assert receiver.requests[0].headers["X-Factory"] == "yes"
