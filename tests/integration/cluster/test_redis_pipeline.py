"""The conversation store's pipeline to Redis (store.redis_batch) against a real redis-server: a command Redis refuses
fails alone, a restarted Redis is found again without a node restart (its scripts loaded again), and a Redis that is
gone fails the batch with StoreUnavailable."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from opencomms.store import StoreUnavailable
from opencomms.store.conversations_redis import RedisConversationStore
from opencomms.store.redis_common import RedisTarget
from tests.redis_fixtures import PersistentRedis, redis_target, redis_url

__all__ = ["redis_target", "redis_url"]  # fixtures


async def test_a_refused_command_fails_alone_and_the_others_of_its_batch_go_through(redis_target: RedisTarget) -> None:
    st = RedisConversationStore(redis_target)
    try:
        assert await st.commit("c1", 0, {"n": 1}, legs=["leg-1"]) == 1
        wrong = st._pipe.submit("HGET", redis_target.key("conv", "c1"), "doc", "extra")  # wrong arity
        right = st.find_leg("leg-1", remembered=False)
        later = st.commit("c1", 1, {"n": 2})
        with pytest.raises(Exception, match="wrong number of arguments"):
            await wrong
        assert await right == "c1"
        assert await later == 2
        loaded = await st.load("c1")
        assert loaded is not None and loaded.doc == {"n": 2} and loaded.version == 2
    finally:
        await st.aclose()


@contextlib.asynccontextmanager
async def restartable(tmp_path: Path) -> AsyncIterator[tuple[PersistentRedis, RedisConversationStore]]:
    """A redis-server the test may stop and start again on the same port and data, and a store on it holding
    conversation c1 at version 1."""
    server = PersistentRedis(tmp_path)
    await server.astart()
    st = RedisConversationStore(RedisTarget(server.url, "n1", lease=5.0, timeout=0.2))
    try:
        assert await st.commit("c1", 0, {"n": 1}) == 1
        yield server, st
    finally:
        await st.aclose()
        await asyncio.to_thread(server.stop)


async def test_a_restarted_redis_is_found_again_with_its_scripts(tmp_path: Path) -> None:
    async with restartable(tmp_path) as (server, st):
        await asyncio.to_thread(server.stop)
        with pytest.raises(StoreUnavailable):
            await st.commit("c1", 1, {"n": 2})
        await server.astart()  # same port, same data (append-only), no scripts loaded
        assert await st.commit("c1", 1, {"n": 2}) == 2  # a new connection; NOSCRIPT: loaded and resent
        loaded = await st.load("c1")
        assert loaded is not None and loaded.doc == {"n": 2}


async def test_redis_restarted_while_the_connection_was_idle_costs_no_failed_write(tmp_path: Path) -> None:
    async with restartable(tmp_path) as (server, st):
        await asyncio.to_thread(server.stop)
        await server.astart()  # the store's connection is closed under it, unnoticed until the next batch
        assert await st.commit("c1", 1, {"n": 2}) == 2
