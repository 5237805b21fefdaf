"""The pipeline's packing of Redis commands (store.redis_batch.pack, hiredis) writes exactly what redis-py would."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from opencomms.store.redis_batch import pack


def test_pack_writes_what_redis_py_writes() -> None:
    conn = aioredis.Redis().connection_pool.make_connection()  # type: ignore[no-untyped-call]
    commands = [
        ("EVALSHA", "a" * 40, 2, "k:1", "k:2", "conv", 0, -7, 3.25, 1e-7, "", b"", b"\x00\xff{}", "é ünïcode"),
        ("HGET", "opencomms:legs", "leg-1"),
        ("HSET", "s", "id", "http://x/\n1.5\n2"),
    ]
    assert pack(commands) == b"".join(conn.pack_commands(commands))


def test_pack_refuses_what_redis_cannot_take() -> None:
    with pytest.raises(TypeError):
        pack([("SET", "k", None)])
    with pytest.raises(TypeError):
        pack([("SET", "k", True)])
