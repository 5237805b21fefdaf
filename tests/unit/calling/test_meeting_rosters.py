"""Meeting rosters: a change is serialized once and sent to every listening bot leg with its own resourceUrl; delta
legs get only the change (in sequence order, removals with removedState), classic legs the whole roster, a new leg
the whole roster once; lobby legs and phones get nothing."""

from __future__ import annotations

import orjson

from opencomms.calling.model import Call
from opencomms.calling.rosters import MeetingRosters, roster_body
from opencomms.calling.subscribers import Batch
from opencomms.calling.views import view_of
from opencomms.domain import commands as c
from opencomms.domain import results
from opencomms.domain.conversation import Conversation
from opencomms.domain.legs import LegKind, LegSpec
from opencomms.domain.rules import ConversationKind


class Harness:
    def __init__(self) -> None:
        self.conv = Conversation("m1", "t1", ConversationKind.MEETING)
        self.views: dict[str, Call] = {}
        self.sent: list[tuple[str, dict[str, object]]] = []
        self.rosters = MeetingRosters()

    def leg(self, leg_id: str) -> Call | None:
        return self.views.get(leg_id)

    def _send(self, call: Call, body: bytes) -> None:
        self.sent.append((call.id, orjson.loads(body)))

    def do(self, command: c.Command) -> None:
        before = tuple(self.conv.roster.entries())
        events = self.conv.apply(command, 1.0)
        for leg in self.conv.legs.values():
            self.views[leg.id] = view_of(self.conv.id, self.conv.tenant_id, leg)
        batch = Batch(self.conv.id, self.conv.tenant_id, self.conv.kind, tuple(events), before)
        self.rosters.project(batch, self.conv, self, self._send)

    def take(self) -> dict[str, list[dict[str, object]]]:
        out: dict[str, list[dict[str, object]]] = {}
        for call_id, body in self.sent:
            value = body["value"][0]  # type: ignore[index]
            assert value["resourceUrl"] == f"/communications/calls/{call_id}/participants"
            out[call_id] = value["resourceData"]
        self.sent.clear()
        return out


def bot(name: str, *, delta: bool) -> LegSpec:
    options = {"isDeltaRosterEnabled": delta}
    identity = {"application": {"id": f"app-{name}"}}
    attrs = {"callback_uri": "http://b/cb", "call_options": options}
    return LegSpec(name, LegKind.BOT, f"p-{name}", "1", identity, app_id=f"app-{name}", attrs=attrs)


def phone(name: str) -> LegSpec:
    return LegSpec(name, LegKind.SIP, f"p-{name}", "2", {"phone": {"id": "+1555"}}, external="x")


def test_delta_legs_get_the_change_classic_legs_the_roster_new_legs_the_roster_once() -> None:
    h = Harness()
    h.do(c.Join(bot("d", delta=True)))
    assert [e["id"] for e in h.take()["d"]] == ["p-d"]  # its first roster: the whole one
    h.do(c.Join(bot("k", delta=False)))
    got = h.take()
    assert [e["rosterSequenceNumber"] for e in got["d"]] == [2]  # only the change
    assert [e["id"] for e in got["k"]] == ["p-d", "p-k"]  # new: the whole roster
    h.do(c.Join(phone("ann")))
    got = h.take()
    assert set(got) == {"d", "k"} and len(got["d"]) == 1 and len(got["k"]) == 3
    h.do(c.EndLeg("ann", results.PSTN_HUNG_UP))
    got = h.take()
    assert got["d"] == [
        {**got["d"][0], "removedState": {"@odata.type": "#microsoft.graph.removedState", "reason": "left"}}
    ]
    assert got["d"][0]["rosterSequenceNumber"] == 4 and [e["id"] for e in got["k"]] == ["p-d", "p-k"]


def test_a_change_is_serialized_once_whatever_the_number_of_listeners() -> None:
    h = Harness()
    for i in range(20):
        h.do(c.Join(bot(f"b{i}", delta=True)))
    h.take()
    built = h.rosters.bytes_built
    h.do(c.Join(phone("ann")))
    assert len(h.take()) == 20
    one = len(orjson.dumps([h.conv.roster.get("p-ann").to_wire(with_sequence=True)]))  # type: ignore[union-attr]
    assert h.rosters.bytes_built - built == one
    assert h.rosters.rebuilt == 1  # who listens is kept from the events, not found by scanning every leg


def test_lobby_legs_hear_nothing_until_admitted() -> None:
    h = Harness()
    h.do(c.Join(bot("host", delta=True), role="member"))
    h.do(c.Join(bot("guest", delta=True), in_lobby=True, role="guest"))
    got = h.take()
    assert set(got) == {"host"} and got["host"][0]["isInLobby"] is True
    h.do(c.Admit("host"))
    got = h.take()
    assert [e["isInLobby"] for e in got["guest"]] == [False, False] and len(got["host"]) == 1


def test_after_a_restart_the_listeners_come_back_from_the_conversation() -> None:
    h = Harness()
    h.do(c.Join(bot("d", delta=True)))
    h.take()
    h.rosters = MeetingRosters()  # a new node: the listener index is rebuilt from the conversation
    h.do(c.Join(phone("ann")))
    got = h.take()
    assert list(got) == ["d"] and [e["id"] for e in got["d"]] == ["p-ann"] and h.rosters.rebuilt == 1


def test_a_conversation_reloaded_after_a_failed_unit_rebuilds_the_listeners() -> None:
    h = Harness()
    h.do(c.Join(bot("d", delta=True)))
    h.do(c.Join(phone("ann")))
    h.take()
    h.conv = Conversation.from_doc(h.conv.to_doc())  # the ledger dropped the copy a failed unit had changed
    h.do(c.EndLeg("ann", results.PSTN_HUNG_UP))
    got = h.take()
    assert list(got) == ["d"] and got["d"][0]["id"] == "p-ann" and h.rosters.rebuilt == 2


def test_roster_body_is_a_graph_notification() -> None:
    body = orjson.loads(roster_body("/communications/calls/x", b"[]"))
    assert body == {
        "@odata.type": "#microsoft.graph.commsNotifications",
        "value": [
            {
                "@odata.type": "#microsoft.graph.commsNotification",
                "changeType": "updated",
                "resourceUrl": "/communications/calls/x/participants",
                "resourceData": [],
            }
        ],
    }
