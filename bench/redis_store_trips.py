"""The synchronous Redis store's share of a call on a cluster node: the writes a call's media operation, its
notification, its call record and its clean-up make through `RedisStore` (blocking, on the node's event loop),
replayed --calls times against a private redis-server. Prints the round trips and the client CPU per call.

Then the conversation store's share (`RedisConversationStore`, pipelined, not blocking): a call's commits, load,
timer query, outbox bookkeeping and removals, each awaited alone (as on a node at a few calls per second, where
every one is a pipeline of its own): its client CPU per call.

Run: .venv/bin/python bench/redis_store_trips.py [--calls 2000]
(run it from an older tree too to compare: it uses the store of the tree it lives in)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "src")]

import redis  # noqa: E402
from bench.sip_calls import free_port  # noqa: E402

from opencomms.store.base import OutboxEntry, Store  # noqa: E402
from opencomms.store.redis_common import RedisTarget  # noqa: E402
from opencomms.store.redis_sync import RedisStore  # noqa: E402
from opencomms.testing.redis_trips import CountingRedis  # noqa: E402

OP = {"@odata.type": "#microsoft.graph.playPromptOperation", "status": "running", "clientContext": "x" * 36}
RECORD = {
    "tenantId": "t",
    "record": {"version": 0, "sessions": [{"id": "s" * 36, "segments": [{"x": 1} for _ in range(3)]}]},
}


def one_call(store: Store, i: int) -> None:
    """The sync store's writes of one call (as the node makes them)."""
    call, op = f"call-{i:06}", f"op-{i:06}"
    with store.transaction():  # playPrompt: the operation document
        store.put("operation", f"{call}/{op}", OP)
    with store.transaction():  # it finishes: the document and its notification together
        store.put("operation", f"{call}/{op}", {**OP, "status": "completed"})
        store.outbox_append(OutboxEntry(f"n-{i}", call, "app", "t", "http://127.0.0.1:9/", b"{}" * 400, 1.0, 1.0))
    update = getattr(store, "update", None)
    if update is not None:  # the call ends: its record, then its operations go
        update("callRecord", call, lambda doc: RECORD)
    else:
        store.get("callRecord", call)
        store.put("callRecord", call, RECORD)
    later = getattr(store, "delete_later", None)
    if later is not None:
        later("operation", [f"{call}/{op}"])
    else:
        store.delete("operation", f"{call}/{op}")


async def run(calls: int, port: int) -> dict[str, Any]:
    url = f"redis://127.0.0.1:{port}/0"
    client = CountingRedis.from_url(url)
    store = RedisStore(RedisTarget(url, "bench", prefix="bench"), client=client)
    for i in range(50):  # warm up (scripts loaded)
        one_call(store, -i - 1)
    client.trips = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(calls):
        one_call(store, i)
        if i % 20 == 0:
            await asyncio.sleep(0)  # timers (deletions held) get their turn, as on a node's loop
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    trips = client.trips
    store.close()
    return {
        "bench": "redis_store_trips",
        "calls": calls,
        "round_trips_per_call": round(trips / calls, 2),
        "client_cpu_us_per_call": round(1e6 * cpu / calls, 1),
        "wall_us_per_call": round(1e6 * wall / calls, 1),
    }


async def conversation_call(store: Any, i: int) -> None:
    """The conversation store's commands of one call, each awaited on its own (as the node makes them)."""
    conv = f"conv-{i:06}"
    doc = {"id": conv, "legs": [{"id": f"leg-{i}", "state": "incoming"}], "x": "y" * 600}
    out = [OutboxEntry(f"n-{i}-{k}", conv, "app", "t", "http://127.0.0.1:9/", b"{}" * 400, 1.0, 1.0) for k in range(5)]
    version = await store.commit(conv, 0, doc, out[:1], legs=[f"leg-{i}"], deadline=2e9)
    assert await store.load(conv) is not None
    version = await store.commit(conv, version, doc, out[1:3])
    await store.due(1.0)
    version = await store.commit(conv, version, doc, out[3:4])
    await store.outbox_update(out[:1])
    for k in range(4):
        await store.outbox_remove([out[k].id])
    await store.commit(conv, version, None, out[4:])
    await store.outbox_remove([out[4].id])


async def run_conversations(calls: int, port: int) -> dict[str, Any]:
    from opencomms.store.conversations_redis import RedisConversationStore

    store = RedisConversationStore(RedisTarget(f"redis://127.0.0.1:{port}/0", "bench", prefix="benchc:", lease=30.0))
    for i in range(50):  # warm up
        await conversation_call(store, -i - 1)
    cpu0 = time.process_time()
    for i in range(calls):
        await conversation_call(store, i)
    cpu = time.process_time() - cpu0
    await store.aclose()
    return {
        "bench": "redis_store_trips.conversations",
        "calls": calls,
        "pipelines_per_call": 13,
        "client_cpu_us_per_call": round(1e6 * cpu / calls, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="opencomms-trips-")
    server = subprocess.Popen(
        [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            tmp,
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                redis.Redis(port=port).ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        print(json.dumps(asyncio.run(run(args.calls, port))))
        import uvloop  # as on a node

        print(json.dumps(uvloop.run(run_conversations(args.calls, port))))
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
