"""Commit cost of one unit of work: a nested store transaction with one document put, on SQLite (WAL,
synchronous=NORMAL, as a node runs it) and in memory. The SIP calls/s figure is sensitive to it.

Run: .venv/bin/python bench/store_commit.py [--units 3000] [--repeat 5]. Prints the best per-unit time.
"""

from __future__ import annotations

import argparse
import tempfile
import timeit
from pathlib import Path

from opencomms.store.base import Store
from opencomms.store.memory import MemoryStore
from opencomms.store.sqlite import SqliteStore


def unit(store: Store) -> None:
    with store.transaction(), store.transaction():
        store.put("call", "c1", {"state": "established", "n": 1})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--units", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stores: list[tuple[str, Store]] = [
            ("sqlite", SqliteStore(str(Path(tmp) / "bench.db"))),
            ("memory", MemoryStore()),
        ]
        figures = []
        for name, store in stores:
            best = min(timeit.repeat(lambda s=store: unit(s), number=args.units, repeat=args.repeat)) / args.units
            figures.append(f"{name} {best * 1e6:.1f} us")
            store.close()
    print("one unit of work (nested transaction, one put, commit): " + ", ".join(figures))


if __name__ == "__main__":
    main()
