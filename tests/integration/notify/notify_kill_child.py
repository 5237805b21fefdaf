"""Child process for test_kill: runs a Dispatcher on a SQLite outbox until killed or idle.

Usage: notify_kill_child.py DB BASE_URL submit KEYS PER_KEY  (submits, prints the ids, runs until killed)
       notify_kill_child.py DB BASE_URL resume  (delivers what the store holds, exits when idle)
"""

from __future__ import annotations

import asyncio
import json
import sys

from opencomms.notify import Dispatcher, RetryPolicy
from opencomms.store import SqliteStore

POLICY = RetryPolicy(initial_delay=0.05, max_delay=0.2, jitter=0.1)


def sign(app_id: str, tenant_id: str) -> str:
    return "tok"


async def main(argv: list[str]) -> None:
    db, base, mode = argv[:3]
    store = SqliteStore(db)
    try:
        async with Dispatcher(store, sign=sign, policy=POLICY, timeout=2.0, max_in_flight=16) as d:
            if mode == "submit":
                keys, per_key = int(argv[3]), int(argv[4])
                with d.transaction():
                    for i in range(per_key):
                        for k in range(keys):
                            key = f"call-{k}"
                            body = json.dumps({"key": key, "i": i}).encode()
                            entry = d.submit(order_key=key, app_id="app", tenant_id="t", url=base + "/cb", body=body)
                            print(json.dumps({"id": entry.id, "key": key, "i": i}))
                print("READY", flush=True)
                await asyncio.Event().wait()  # until SIGKILL
            else:
                print("READY", flush=True)
                await d.wait_idle()
                print("IDLE", flush=True)
    finally:
        store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
