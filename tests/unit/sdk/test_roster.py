"""The SDK's roster: classic rosters replace, delta rosters merge by rosterSequenceNumber and removedState, stale
and out-of-order entries are ignored."""

from __future__ import annotations

from typing import Any

from opencomms.sdk import Participant, Roster


def entry(pid: str, seq: int | None, *, muted: bool = False, removed: str | None = None) -> Participant:
    body: dict[str, Any] = {
        "id": pid,
        "info": {"identity": {"user": {"id": pid, "displayName": pid.title()}}},
        "isMuted": muted,
    }
    if seq is not None:
        body["rosterSequenceNumber"] = seq
    if removed is not None:
        body["removedState"] = {"reason": removed}
    return Participant.from_wire(body)


def ids(roster: Roster) -> list[str]:
    return [p.id for p in roster.participants]


def test_delta_rosters_merge_in_sequence_order() -> None:
    roster = Roster()
    first = roster.apply([entry("b", 2), entry("a", 1)], whole=False)  # a delta leg's first, whole roster
    assert [p.id for p in first.added] == ["a", "b"] and first.sequence == 2 and ids(roster) == ["a", "b"]
    change = roster.apply([entry("c", 3)], whole=False)
    assert [p.id for p in change.added] == ["c"] and not change.updated and not change.removed
    change = roster.apply([entry("a", 4, muted=True)], whole=False)
    assert [p.id for p in change.updated] == ["a"] and roster.get("a") is not None and roster.get("a").is_muted  # type: ignore[union-attr]
    change = roster.apply([entry("b", 5, removed="left")], whole=False)
    assert [p.id for p in change.removed] == ["b"] and ids(roster) == ["c", "a"] and roster.sequence == 5
    assert roster.find(display_name="C") is roster.get("c") and len(roster) == 2 and "b" not in roster


def test_stale_and_out_of_order_delta_entries_are_ignored() -> None:
    roster = Roster()
    roster.apply([entry("a", 1), entry("b", 2)], whole=False)
    roster.apply([entry("b", 5, removed="removed")], whole=False)
    late = roster.apply([entry("b", 3, muted=True)], whole=False)  # a mute that happened before the removal
    assert late.empty and late.stale == 1 and "b" not in roster
    dup = roster.apply([entry("a", 1)], whole=False)  # a duplicate
    assert dup.empty and dup.stale == 1
    roster.apply([entry("a", 7, muted=True)], whole=False)
    old = roster.apply([entry("a", 6)], whole=False)  # delivered after a newer one
    assert old.stale == 1 and roster.get("a").is_muted  # type: ignore[union-attr]
    # one notification with entries out of order: applied in sequence order
    change = roster.apply([entry("c", 9, removed="left"), entry("c", 8)], whole=False)
    assert "c" not in roster and [p.sequence for p in (*change.added, *change.removed)] == [8, 9]
    assert roster.sequence == 9


def test_classic_rosters_replace_the_whole_roster() -> None:
    roster = Roster()
    roster.apply([entry("a", 1), entry("b", 2)], whole=True)
    change = roster.apply([entry("a", 1), entry("c", 3)], whole=True)
    assert [p.id for p in change.added] == ["c"] and [p.id for p in change.removed] == ["b"]
    assert not change.updated and ids(roster) == ["a", "c"]
    change = roster.apply([entry("a", 4, muted=True), entry("c", 3)], whole=True)
    assert [p.id for p in change.updated] == ["a"] and not change.added and not change.removed
    # an older snapshot of an entry does not undo a newer one; a removed participant does not come back
    change = roster.apply([entry("a", 1), entry("b", 2), entry("c", 3)], whole=True)
    assert change.stale == 2 and roster.get("a").is_muted and "b" not in roster  # type: ignore[union-attr]
    # a whole roster with a removal in it (the node never sends one, but be safe) is merged like a delta
    change = roster.apply([entry("c", 10, removed="left")], whole=True)
    assert [p.id for p in change.removed] == ["c"] and ids(roster) == ["a"]


def test_entries_without_sequence_numbers_are_taken_as_they_come() -> None:
    roster = Roster()
    roster.apply([entry("a", None), entry("b", None)], whole=True)
    change = roster.apply([entry("b", None, muted=True)], whole=True)
    assert [p.id for p in change.removed] == ["a"] and [p.id for p in change.updated] == ["b"]
    assert roster.sequence == 0
