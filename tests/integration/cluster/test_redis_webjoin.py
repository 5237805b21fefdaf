"""Web join tickets in a real redis-server: a ticket issued by one node is redeemed by another exactly once (also
when nodes race for it), expires with its lifetime, is kept only as a digest, and a Redis outage refuses (503 on
issue, no WebSocket on redeem) rather than letting anyone in. The replay across nodes against running nodes is in
tests/security/test_webjoin_cluster.py."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
import redis

from opencomms.gateway.webjoin import WebGrant
from opencomms.gateway.webjoin_redis import RedisWebJoinTickets
from opencomms.store import StoreUnavailable
from opencomms.store.redis_common import RedisTarget
from opencomms.testing.redis import _free_port
from tests.redis_fixtures import redis_target, redis_url

__all__ = ["redis_target", "redis_url"]  # fixtures

GRANT = WebGrant("tenant-1", "Wendy Web", "sip:support@bob.example", None, "app-1")


def test_a_ticket_issued_by_one_node_is_redeemed_once_by_another(redis_target: RedisTarget) -> None:
    a = RedisWebJoinTickets(redis_target, ttl=60)
    b = RedisWebJoinTickets(dataclasses.replace(redis_target, node="n2"), ttl=60)
    now = time.time()
    issued = a.issue(GRANT, now)
    assert b.redeem(issued, now) == GRANT
    assert a.redeem(issued, now) is None and b.redeem(issued, now) is None  # spent, everywhere
    assert b.redeem("forged", now) is None and b.redeem("x" * 65, now) is None
    user = WebGrant("tenant-1", "Ada", None, "user-1", None)
    assert a.redeem(b.issue(user, now), now) == user
    raw = redis.Redis.from_url(redis_target.url)
    keep = a.issue(GRANT, now)
    keys = [k.decode() for k in raw.keys(f"{redis_target.prefix}*")]
    assert len(keys) == 1 and keys[0].startswith(f"{redis_target.prefix}webticket:") and keep not in keys[0]
    assert keep.encode() not in raw.get(keys[0])  # a Redis dump yields no usable ticket
    assert 55_000 < raw.pttl(keys[0]) <= 60_000
    raw.close()
    a.close()
    b.close()


async def test_racing_nodes_redeem_a_ticket_once(redis_target: RedisTarget) -> None:
    nodes = [RedisWebJoinTickets(dataclasses.replace(redis_target, node=f"n{i}"), ttl=60) for i in range(8)]
    issued = nodes[0].issue(GRANT, time.time())
    results = await asyncio.gather(*(asyncio.to_thread(n.redeem, issued, time.time()) for n in nodes))
    assert [r for r in results if r is not None] == [GRANT]
    for n in nodes:
        n.close()


def test_tickets_expire(redis_target: RedisTarget) -> None:
    book = RedisWebJoinTickets(redis_target, ttl=0.2)
    now = time.time()
    gone, late = book.issue(GRANT, now), book.issue(GRANT, now)
    assert book.redeem(late, now + 0.5) is None  # past its lifetime by the redeeming node's clock
    time.sleep(0.3)
    assert book.redeem(gone, time.time()) is None  # and Redis dropped it
    book.close()


def test_redis_down_refuses() -> None:
    dead = RedisTarget(f"redis://127.0.0.1:{_free_port()}/0", "n1", timeout=0.2)
    book = RedisWebJoinTickets(dead, ttl=60)
    with pytest.raises(StoreUnavailable):
        book.issue(GRANT, time.time())
    assert book.redeem("some-ticket", time.time()) is None and book.failures == 2
    book.close()
