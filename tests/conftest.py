"""Every test checks each partial conversation write against the whole document (`calling.ledger.VERIFY_DELTAS`):
a command that changes a leg without naming it (in the command or an event) fails the test that runs it, not a
restart later. Nodes started as processes by tests inherit the setting through the environment.

Once collected, the suite's own objects (imports, the collected tests) leave the collector's view, as a node
process freezes its start-up objects: a full collection during a test, which holds the GIL the media threads
need, scans only what the tests made since (a quarter of a second less each). The nodes tests start do not
freeze the heap (a frozen object is never collected: the stopped nodes would stay)."""

from __future__ import annotations

import gc
import os

os.environ.setdefault("OPENCOMMS_VERIFY_DELTAS", "1")

import opencomms.calling.ledger  # after the environment: the nodes tests start as processes read it

opencomms.calling.ledger.VERIFY_DELTAS = os.environ["OPENCOMMS_VERIFY_DELTAS"] not in ("", "0")


def pytest_collection_finish() -> None:
    gc.collect()
    gc.freeze()
