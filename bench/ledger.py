"""Commits per second of one-conversation units of work: the async ledger (memory, SQLite on its writer thread)
against the synchronous SQLite unit of work the node used before the ledger, measured the same way (component figure).

    .venv/bin/python bench/ledger.py [--seconds 3] [--tasks 64] [--modes memory,sqlite,sync-sqlite] [--uvloop]

`--tasks` asyncio tasks each own one conversation (two call legs, the documents CallService stores) and run units
back to back: change a leg, write the conversation and one notification (~500 bytes) in one commit. `sync-sqlite`
is what the old `UnitOfWork` + `Dispatcher.transaction()` did: one `store.transaction()` per unit on the node's
SqliteStore (checkpoint thread on), with `put_docs` of the legs and the conversation and `outbox_append_many`,
all on the event loop. A 5 ms timer probes the loop meanwhile. Prints one line per mode: commits/s, CPU per
commit on the event loop (a node's scarce resource) and on the writer thread, and the worst loop stall.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from typing import Any, Self

from opencomms.store import SqliteStore
from opencomms.store.base import Doc
from opencomms.store.conversations import ConversationStore, MemoryConversationStore
from opencomms.store.conversations_sqlite import SqliteConversationStore
from opencomms.store.ledger import Index, Ledger, Unit, new_entry


def _leg(conv_id: str, n: int) -> Doc:
    """A leg's stored form, about the size the node's legs have (ids, identities, targets, deadlines)."""
    identity = {"@odata.type": "#microsoft.graph.identitySet", "application": {"id": f"app-{n}", "displayName": "Bot"}}
    return {
        "id": f"{conv_id}-leg{n}",
        "tenant_id": "tenant-0000-0000",
        "app_id": f"app-{n}",
        "direction": "outgoing",
        "state": "established",
        "my_participant_id": f"participant-{conv_id}-{n}",
        "source_id": str(1000 + n),
        "identity": identity,
        "source": {"@odata.type": "#microsoft.graph.participantInfo", "identity": identity},
        "targets": [{"@odata.type": "#microsoft.graph.invitationParticipantInfo", "identity": identity}],
        "requested_modalities": ["audio"],
        "created_at": time.time(),
        "callback_uri": "http://127.0.0.1:9/callback",
        "media_config": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
        "keepalive_deadline": time.time() + 2700,
        "muted": False,
        "version": 0,
    }


class BenchConv:
    """A conversation with two legs, stored as one document (as the node stores a conversation with its legs)."""

    def __init__(self, conv: Doc, legs: list[Doc]) -> None:
        self.conv, self.legs, self.version = conv, legs, 0

    def to_doc(self) -> Doc:
        return {**self.conv, "legs": self.legs}

    @classmethod
    def from_doc(cls, doc: Doc) -> Self:
        return cls({k: v for k, v in doc.items() if k != "legs"}, doc["legs"])


def _new(conv_id: str) -> BenchConv:
    legs = [_leg(conv_id, 1), _leg(conv_id, 2)]
    return BenchConv({"id": conv_id, "tenant_id": "tenant-0000-0000", "kind": "peerToPeer"}, legs)


BODY = b'{"value":[{"changeType":"updated","resource":"/communications/calls/x","resourceData":{}}]}' * 5


def command(unit: Unit[BenchConv]) -> None:
    conv = unit.state or _new(unit.conv_id)
    leg = conv.legs[0]
    leg["version"] += 1
    leg["muted"] = not leg["muted"]
    unit.put(conv)
    unit.notify(
        new_entry(order_key=leg["id"], app_id=leg["app_id"], tenant_id=leg["tenant_id"], url="http://x/", body=BODY)
    )


async def _probe(stop: asyncio.Event) -> float:
    loop, worst = asyncio.get_running_loop(), 0.0
    while not stop.is_set():
        t = loop.time()
        await asyncio.sleep(0.005)
        worst = max(worst, loop.time() - t - 0.005)
    return worst


async def _drive(seconds: float, tasks: int, unit: Any) -> tuple[int, float, float, float]:
    """Run `unit(i)` back to back in `tasks` tasks for `seconds`: (units, wall s, CPU s, worst loop stall s)."""
    stop = asyncio.Event()
    done = 0

    async def worker(i: int) -> None:
        nonlocal done
        while not stop.is_set():
            await unit(i)
            done += 1
            await asyncio.sleep(0)  # a sync unit never yields: let the other tasks (and the probe) in

    probe = asyncio.create_task(_probe(stop))
    cpu0, t0 = time.process_time(), time.perf_counter()
    workers = [asyncio.create_task(worker(i)) for i in range(tasks)]
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*workers)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return done, wall, cpu, await probe


async def run_ledger(store: ConversationStore, seconds: float, tasks: int) -> tuple[int, float, float, float, float]:
    released: list[int] = []
    ledger: Ledger[BenchConv] = Ledger(
        store,
        BenchConv,
        index=lambda c: Index(frozenset(leg["id"] for leg in c.legs)),
        release=lambda entries: released.append(len(entries)),
    )
    convs = [f"conv-{i:05d}" for i in range(tasks)]

    async def unit(i: int) -> None:
        await ledger.apply(convs[i], command)

    units, wall, cpu, stall = await _drive(seconds, tasks, unit)
    await store.aclose()
    off_loop = store.stats.thread_cpu if isinstance(store, SqliteConversationStore) else 0.0
    return units, wall, cpu, stall, off_loop


async def run_sync(path: str, seconds: float, tasks: int) -> tuple[int, float, float, float, float]:
    store = SqliteStore(path, busy_timeout=0.075)  # the node's store, as `opencomms serve` opens it
    convs = [_new(f"conv-{i:05d}") for i in range(tasks)]

    async def unit(i: int) -> None:
        conv = convs[i]
        leg = conv.legs[0]
        leg["version"] += 1
        leg["muted"] = not leg["muted"]
        entry = new_entry(
            order_key=leg["id"], app_id=leg["app_id"], tenant_id=leg["tenant_id"], url="http://x/", body=BODY
        )
        with store.transaction():  # what the old UnitOfWork did: one conversation document + its outbox
            store.put_docs([("conversation", conv.conv["id"], conv.to_doc())])
            store.outbox_append_many([entry])

    try:
        return (*await _drive(seconds, tasks, unit), 0.0)
    finally:
        store.close()


async def main(args: argparse.Namespace) -> None:
    for mode in args.modes.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "bench.db")
            if mode == "memory":
                figures = await run_ledger(MemoryConversationStore(), args.seconds, args.tasks)
            elif mode == "sqlite":
                figures = await run_ledger(await SqliteConversationStore.open(path), args.seconds, args.tasks)
            elif mode == "sync-sqlite":
                figures = await run_sync(path, args.seconds, args.tasks)
            else:
                raise SystemExit(f"unknown mode {mode!r}")
        units, wall, cpu, stall, off_loop = figures
        print(
            f"ledger {mode:<11} tasks={args.tasks}: {units / wall:6.0f} commits/s, CPU/commit"
            f" {(cpu - off_loop) / units * 1e6:5.1f} us on the loop + {off_loop / units * 1e6:4.1f} us on the writer"
            f" thread, worst loop stall {stall * 1000:5.1f} ms",
            flush=True,
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per mode")
    parser.add_argument("--tasks", type=int, default=64, help="concurrent conversations (one task each)")
    parser.add_argument("--modes", default="memory,sqlite,sync-sqlite")
    parser.add_argument("--uvloop", action="store_true")
    ns = parser.parse_args()
    if ns.uvloop:
        import uvloop

        uvloop.run(main(ns))
    else:
        asyncio.run(main(ns))
