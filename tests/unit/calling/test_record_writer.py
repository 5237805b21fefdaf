"""The call-record writer: which bot legs become sessions when their conversation ends, and when the record is
announced (bot-to-bot: one session for the pair; group: one per leg; with a SIP leg: none, the gateway writes the
phone's; a call that only rang and was withdrawn: no record, no announcement)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opencomms.calling import records
from opencomms.calling.record_writer import CallRecordWriter
from opencomms.calling.subscribers import Batch
from opencomms.domain import events as ev
from opencomms.domain.legs import LegKind
from opencomms.domain.results import ResultInfo
from opencomms.domain.rules import ConversationKind
from opencomms.store.memory import MemoryStore

OK = ResultInfo(200, 5000, "ok")
CANCELLED = ResultInfo(200, 5010, "cancelled")


def leg(leg_id: str, direction: str, app: str, *, connected: bool = True) -> dict[str, Any]:
    return {
        "id": leg_id,
        "kind": "bot",
        "app_id": app,
        "direction": direction,
        "state": "terminated",
        "participant_id": f"p-{leg_id}",
        "source_id": "1",
        "identity": {"application": {"id": app}},
        "source": {"identity": {"application": {"id": "app-a"}}},
        "targets": [{"identity": {"application": {"id": "app-b"}}}],
        "created_at": 1_800_000_000.0,
        "attrs": {},
        "incoming_context": None,
        "call_routes": [],
        "result_info": None,
        "answer_deadline": None,
        "keepalive_deadline": None,
        "ring_group": None,
        "connected": connected,
        "muted": False,
        "external": None,
        "version": 1,
    }


def run(kind: ConversationKind, events: list[ev.Event]) -> tuple[MemoryStore, list[tuple[str, str]]]:
    store = MemoryStore()
    announced: list[tuple[str, str]] = []
    writer = CallRecordWriter(store, lambda: 1_800_000_010.0, on_record=lambda t, r: announced.append((t, r)))
    batch = Batch("conv", "tenant", kind, tuple(events))
    for event in events:
        writer.committed(batch, event)
    return store, announced


def test_bot_to_bot_gets_one_session_for_the_pair() -> None:
    store, announced = run(
        ConversationKind.PEER_TO_PEER,
        [
            ev.LegEnded("a", LegKind.BOT, OK, leg("a", "outgoing", "app-a")),
            ev.LegEnded("b", LegKind.BOT, OK, leg("b", "incoming", "app-b")),
            ev.ConversationEnded("conv"),
        ],
    )
    record = records.view(store, "tenant", "conv", "sessions($expand=segments)")
    assert record is not None and record["type"] == "peerToPeer" and record["version"] == 1
    (session,) = record["sessions"]
    assert session["caller"]["identity"]["application"]["id"] == "app-a"
    assert session["callee"]["identity"]["application"]["id"] == "app-b"
    assert announced == [("tenant", "conv")]


def test_group_calls_get_a_session_per_leg_against_the_service() -> None:
    store, announced = run(
        ConversationKind.GROUP,
        [ev.LegEnded(x, LegKind.BOT, OK, leg(x, "incoming", f"app-{x}")) for x in "abc"]
        + [ev.ConversationEnded("conv")],
    )
    record = records.view(store, "tenant", "conv", "sessions")
    assert record is not None and record["type"] == "groupCall" and len(record["sessions"]) == 3
    assert all(s["caller"]["@odata.type"].endswith("serviceEndpoint") for s in record["sessions"])
    assert announced == [("tenant", "conv")]


def test_a_sip_peer_call_leaves_its_record_to_the_gateway_but_is_announced() -> None:
    store, announced = run(
        ConversationKind.PEER_TO_PEER,
        [
            ev.LegEstablished("s", LegKind.SIP),
            ev.LegEnded("a", LegKind.BOT, OK, leg("a", "outgoing", "app-a")),
            ev.ConversationEnded("conv"),
        ],
    )
    assert store.get(records.KIND, "conv") is None and announced == [("tenant", "conv")]


def test_a_call_that_only_rang_has_no_record() -> None:
    store, announced = run(
        ConversationKind.PEER_TO_PEER,
        [
            ev.LegEnded("a", LegKind.BOT, CANCELLED, leg("a", "outgoing", "app-a", connected=False)),
            ev.ConversationEnded("conv"),
        ],
    )
    assert store.get(records.KIND, "conv") is None and announced == []


def test_the_record_and_its_notifications_are_one_transaction_after_the_commit() -> None:
    store = MemoryStore()
    log: list[str] = []

    @contextmanager
    def transaction() -> Iterator[None]:
        log.append("begin")
        yield
        log.append("commit")

    writer = CallRecordWriter(
        store, lambda: 1_800_000_010.0, on_record=lambda t, r: log.append(f"notify {r}"), transaction=transaction
    )
    events = [ev.LegEnded("a", LegKind.BOT, OK, leg("a", "outgoing", "app-a")), ev.ConversationEnded("conv")]
    batch = Batch("conv", "tenant", ConversationKind.GROUP, tuple(events))
    for event in events:
        writer.committed(batch, event)
    assert log == ["begin", "notify conv", "commit"] and store.get(records.KIND, "conv") is not None
