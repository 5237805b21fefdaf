"""The stateful calling layer in meetings, without a node: a roster that arrives before the join request answered
waits until the SDK knows whether it asked for delta rosters, then is merged and announced."""

from __future__ import annotations

from typing import Any

from opencomms.sdk import CallInfo, Participant, RosterChange
from opencomms.sdk.calling import Call, CommunicationsClient
from opencomms.sdk.notifications import parse_notifications


def roster(call_id: str, *entries: tuple[str, int], removed: str | None = None) -> Any:
    items = []
    for pid, seq in entries:
        item: dict[str, Any] = {"id": pid, "info": {"identity": {"user": {"id": pid}}}, "rosterSequenceNumber": seq}
        if removed is not None:
            item["removedState"] = {"reason": removed}
        items.append(item)
    body = {"value": [{"changeType": "updated", "resourceUrl": f"/communications/calls/{call_id}/participants"}]}
    body["value"][0]["resourceData"] = items
    return parse_notifications(body)[0]


class FakeClient:
    """Answers a join only after the node's first roster for the new call was delivered (the race)."""

    def __init__(self) -> None:
        self.comms: CommunicationsClient | None = None
        self.bodies: list[dict[str, Any]] = []

    async def join_meeting(self, **kwargs: Any) -> CallInfo:
        self.bodies.append(kwargs)
        assert self.comms is not None
        await self.comms._on_notification(roster("c1", ("a", 1), ("b", 2)))  # whole roster, before the answer
        await self.comms._on_notification(roster("other", ("x", 1)))  # somebody else's call meanwhile
        return CallInfo(id="c1", state="establishing")


async def test_an_early_roster_waits_for_the_roster_mode_then_merges() -> None:
    fake = FakeClient()
    comms = CommunicationsClient(fake, callback_uri="http://bot/cb", app_id="app", jwks_url="http://node/keys")  # type: ignore[arg-type]
    fake.comms = comms
    joined: list[str] = []
    changes: list[RosterChange] = []
    comms.on_participant_joined(lambda call, p: joined.append(f"{call.id}:{p.id}"))
    comms.on_roster_changed(lambda call, change: changes.append(change))
    try:
        call = await comms.join_meeting(join_web_url="https://x/l/meetup-join/t/0?context={}", delta_roster=True)
        assert isinstance(call, Call) and call.delta_roster is True and fake.bodies[0]["delta_roster"] is True
        assert [p.id for p in call.participants] == ["a", "b"]
        assert comms.calls["other"].delta_roster is False  # not our join: classic, applied
        await comms._on_notification(roster("c1", ("c", 3)))  # a delta: merged, not a replacement
        await comms._on_notification(roster("c1", ("a", 4), removed="left"))
        await comms._on_notification(roster("c1", ("a", 1)))  # stale: ignored
        await comms.join()
        assert [p.id for p in call.participants] == ["b", "c"] and call.roster.sequence == 4
        assert [j for j in joined if j.startswith("c1:")] == ["c1:a", "c1:b", "c1:c"] and "other:x" in joined
        assert [[p.id for p in c.removed] for c in changes if c.removed] == [["a"]]
        found: list[Participant] = await call.wait_roster(lambda ps: len(ps) == 2, timeout=1)
        assert len(found) == 2
    finally:
        await comms.close()
