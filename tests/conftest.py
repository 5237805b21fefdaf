"""Every test checks each partial conversation write against the whole document (`calling.ledger.VERIFY_DELTAS`):
a command that changes a leg without naming it (in the command or an event) fails the test that runs it, not a
restart later. Nodes started as processes by tests inherit the setting through the environment."""

from __future__ import annotations

import os

os.environ.setdefault("OPENCOMMS_VERIFY_DELTAS", "1")

import opencomms.calling.ledger  # after the environment: the nodes tests start as processes read it

opencomms.calling.ledger.VERIFY_DELTAS = os.environ["OPENCOMMS_VERIFY_DELTAS"] not in ("", "0")
