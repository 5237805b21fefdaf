"""RedisCallState against a real redis-server: documents, atomic updates, locks and dedupe across workers."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from opencomms.sdk import (
    CommsClient,
    Notification,
    NotificationReceiver,
    RedisCallState,
    application_target,
    jwks_url_for,
    serve_receiver,
)
from opencomms.sdk.state import CallStateError
from opencomms.testing.redis import RedisServer, redis_server
from tests.integration.sdk.conftest import SdkEnv
from tests.integration.sdk.test_receiver import ISSUER, node_token


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    async with redis_server() as url:
        yield url


async def test_documents_expire_and_updates_are_atomic_across_workers(redis_url: str) -> None:
    # two "workers": separate connections (as separate processes would have)
    async with RedisCallState(redis_url, ttl=60) as w1, RedisCallState(redis_url, ttl=60) as w2:
        assert await w1.ping()
        assert await w1.get("c1") is None
        await w1.set("c1", {"menu": "main", "digits": ""})
        assert await w2.get("c1") == {"menu": "main", "digits": ""}

        def add_one(old: dict[str, Any] | None) -> dict[str, Any]:
            state = dict(old or {})
            state["count"] = state.get("count", 0) + 1
            return state

        async def slow_add(old: dict[str, Any] | None) -> dict[str, Any]:
            await asyncio.sleep(0)  # lets the other worker write in between: the update is retried
            return add_one(old)

        await asyncio.gather(*(w.update("c1", fn) for _ in range(25) for w, fn in ((w1, add_one), (w2, slow_add))))
        doc = await w1.get("c1")
        assert doc is not None and doc["count"] == 50 and doc["menu"] == "main"
        assert await w2.update("c1", lambda old: None) is None
        assert await w1.get("c1") is None
        await w1.set("c2", {"x": 1})
        await w1.delete("c2")
        assert await w2.get("c2") is None

        await w1.update("c3", lambda old: {"x": 1})
        raw = aioredis.Redis.from_url(redis_url)
        assert 0 < await raw.ttl("opencomms:call:c3") <= 60  # ended calls clean themselves up
        await raw.aclose()


async def test_locks_serialise_one_call_and_deliveries_are_claimed_once(redis_url: str) -> None:
    async with RedisCallState(redis_url) as w1, RedisCallState(redis_url) as w2:
        inside: list[str] = []
        overlap = False

        async def handle(worker: RedisCallState, name: str) -> None:
            nonlocal overlap
            async with worker.lock("call-1"):
                inside.append(name)
                overlap = overlap or len(inside) > 1
                await asyncio.sleep(0.05)
                inside.remove(name)

        await asyncio.gather(handle(w1, "w1"), handle(w2, "w2"), handle(w1, "w1b"))
        assert not overlap

        async with w1.lock("call-2"):
            with pytest.raises(CallStateError):
                async with w2.lock("call-2", wait=0.1):
                    pass
        async with w2.lock("call-2", wait=0.1):  # released
            pass

        assert await w1.claim("d2", hold=0.2) == "new"
        assert await w2.claim("d2") == "pending"  # another worker is on it (or died on it)
        await w1.done("d2")
        assert await w2.claim("d2") == "done"
        assert await w1.claim("d3") == "new"
        await w1.forget("d3")  # handling failed: the retry may go anywhere
        assert await w2.claim("d3", hold=0.1) == "new"
        await asyncio.sleep(0.15)
        assert await w1.claim("d3") == "new"  # the claimer died: the claim lapsed

        claims = await asyncio.gather(*(w.seen("delivery-1") for w in (w1, w2, w1, w2)))
        assert sorted(claims) == [False, True, True, True]  # exactly one worker handles it
        assert not await w1.seen("")


def test_sync_server_helper_starts_and_stops() -> None:
    with RedisServer() as server:
        port = server.port
        assert server.process is not None and server.process.poll() is None
        assert server.url == f"redis://127.0.0.1:{port}/0"
    assert server.process is None


async def poll(state: RedisCallState, call_id: str, last: str) -> dict[str, Any] | None:
    for _ in range(250):
        doc = await state.get(call_id)
        if doc and doc["log"][-1][1] == last:
            return doc
        await asyncio.sleep(0.02)
    return await state.get(call_id)


async def test_two_workers_behind_one_url_handle_a_call_in_order_once(redis_url: str, env: SdkEnv) -> None:
    """A round-robin 'load balancer' in front of two receivers sharing Redis; a real call through the node."""
    alice, bob_app = await env.bot("alice"), env.register("bob")
    states = [RedisCallState(redis_url) for _ in range(2)]

    def worker(index: int) -> NotificationReceiver:
        state = states[index]

        async def handle(note: Notification) -> None:
            async with state.lock(note.call_id):
                label = note.tone.key if note.tone else (note.state or note.kind.value)
                await state.update(note.call_id, lambda old: {"log": [*(old or {}).get("log", []), [index, label]]})

        return NotificationReceiver(
            app_id=bob_app[0],
            jwks_url=jwks_url_for(env.node.public_url),
            handler=handle,
            shared_dedupe=state,
            ack_after_handling=True,
            claim_hold=0.3,
        )

    workers = [worker(0), worker(1)]
    for receiver in workers:
        env.stack.push_async_callback(receiver.aclose)
    turn = itertools.count()

    async def balancer(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await workers[next(turn) % 2](scope, receive, send)

    base = await env.stack.enter_async_context(serve_receiver(balancer))
    env.set_callback(bob_app[0], f"{base}/bob")
    async with CommsClient(env.node.public_url, env.credentials(*bob_app)) as bob:
        call = await alice.client.create_call(targets=[application_target(bob_app[0])])
        bob_call_id = next(c.id for c in env.node.calls.calls.values() if c.app_id == bob_app[0])
        await bob.answer(bob_call_id)
        await alice.inbox.wait_for(lambda n: n.call_id == call.id and n.state == "established")
        await bob.subscribe_to_tone(bob_call_id)
        await alice.client.send_dtmf_tones(call.id, "123")
        doc = await poll(states[0], bob_call_id, "3")
        await alice.client.delete_call(call.id)
        doc = await poll(states[0], bob_call_id, "terminated")
    assert doc is not None
    labels = [label for _, label in doc["log"]]
    assert labels[2] == "established"  # (followed by a mediaState update, also 'established')
    assert [x for x in labels if x != "established"] == ["incoming", "establishing", "1", "2", "3", "terminated"]
    assert {w for w, _ in doc["log"]} == {0, 1}  # both workers took part
    # the node's retry of a delivery (same id) reaching the other worker is dropped there
    token = node_token(env, {"iss": ISSUER, "aud": bob_app[0], "tid": env.tenant_id, "exp": int(time.time()) + 60})
    headers = {"Authorization": f"Bearer {token}", "opencomms-delivery-id": "dup-1"}
    body = {"value": [{"changeType": "updated", "resourceUrl": "/communications/calls/dup", "resourceData": {}}]}
    async with aiohttp.ClientSession() as http:
        for _ in range(2):  # round robin: one POST per worker
            async with http.post(f"{base}/bob", json=body, headers=headers) as resp:
                assert resp.status == 202
    dup = await states[0].get("dup")
    assert dup is not None and len(dup["log"]) == 1
    assert workers[0].duplicates + workers[1].duplicates == 1
    # a worker killed while handling a delivery: its claim lapses, then the node's retry is handled elsewhere
    assert await states[0].claim("orphan", hold=0.3) == "new"
    headers["opencomms-delivery-id"] = "orphan"
    body["value"][0]["resourceUrl"] = "/communications/calls/orphan"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/bob", json=body, headers=headers) as resp:
            assert resp.status == 503 and resp.headers["Retry-After"] == "1"
        await asyncio.sleep(0.35)
        async with http.post(f"{base}/bob", json=body, headers=headers) as resp:
            assert resp.status == 202
    orphan = await states[1].get("orphan")
    assert orphan is not None and len(orphan["log"]) == 1
    for state in states:
        await state.close()
