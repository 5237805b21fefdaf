"""Roster: a meeting's current participants kept from roster notifications, classic or delta. Pure.

Classic rosters (Graph's default) carry the whole roster every time: it replaces the current one, and what is new,
changed or missing becomes the change. Delta rosters (`callOptions.isDeltaRosterEnabled`) carry only what changed,
each entry with its `rosterSequenceNumber`, removals with `removedState`: entries are merged one by one in sequence
order, and an entry whose sequence number is not newer than what is known of that participant (a duplicate, or a
notification delivered out of order) is ignored, including one that would bring back a participant whose removal
was already applied. A delta leg's first notification is a whole roster; merging it is the same upsert.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from opencomms.sdk.models import Participant

MAX_REMEMBERED_REMOVALS = 10_000
"""Removed participants remembered (with their sequence numbers) to refuse a late entry that would revive them."""


@dataclass(frozen=True, slots=True)
class RosterChange:
    """What one roster notification changed."""

    added: tuple[Participant, ...] = ()
    updated: tuple[Participant, ...] = ()
    removed: tuple[Participant, ...] = ()
    sequence: int = 0
    """The highest rosterSequenceNumber known after the change (0 when the node sends none)."""
    stale: int = 0
    """Entries ignored: not newer than what was already known."""

    @property
    def empty(self) -> bool:
        return not (self.added or self.updated or self.removed)


class Roster:
    """The participants of one call (a meeting leg), by participant id."""

    def __init__(self) -> None:
        self._entries: dict[str, Participant] = {}
        self._removed: dict[str, int] = {}
        self.sequence = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, participant_id: object) -> bool:
        return participant_id in self._entries

    def get(self, participant_id: str) -> Participant | None:
        return self._entries.get(participant_id)

    @property
    def participants(self) -> list[Participant]:
        """The current roster, in rosterSequenceNumber order (entries without one last, as received)."""
        return sorted(self._entries.values(), key=lambda p: (p.sequence is None, p.sequence or 0))

    def find(self, *, display_name: str | None = None, app_id: str | None = None) -> Participant | None:
        for p in self._entries.values():
            if display_name is not None and p.display_name == display_name:
                return p
            if app_id is not None and p.app_id == app_id:
                return p
        return None

    # -- merging ------------------------------------------------------------------------------------------
    def apply(self, entries: Iterable[Participant], *, whole: bool) -> RosterChange:
        """Merge one roster notification: `whole` for a classic roster (the entire roster), else a delta."""
        items = list(entries)
        if whole and not any(p.removed_reason is not None for p in items):
            return self._replace(items)
        return self._merge(items)

    def _is_stale(self, p: Participant, *, same_is_stale: bool = True) -> bool:
        seq = p.sequence
        if seq is None:
            return False
        gone = self._removed.get(p.id)
        if gone is not None and gone >= seq:
            return True
        known = self._entries.get(p.id)
        if known is None or known.sequence is None:
            return False
        return known.sequence >= seq if same_is_stale else known.sequence > seq

    def _merge(self, items: list[Participant]) -> RosterChange:
        added: list[Participant] = []
        updated: list[Participant] = []
        removed: list[Participant] = []
        stale = 0
        for p in sorted(items, key=lambda p: p.sequence or 0):
            if self._is_stale(p):
                stale += 1
                continue
            self._bump(p.sequence)
            if p.removed_reason is not None:
                old = self._entries.pop(p.id, None)
                self._forget(p.id, p.sequence)
                if old is not None:
                    removed.append(p)
                continue
            self._removed.pop(p.id, None)
            (updated if p.id in self._entries else added).append(p)
            self._entries[p.id] = p
        return RosterChange(tuple(added), tuple(updated), tuple(removed), self.sequence, stale)

    def _replace(self, items: list[Participant]) -> RosterChange:
        added: list[Participant] = []
        updated: list[Participant] = []
        stale = 0
        seen: dict[str, Participant] = {}
        for p in items:
            if self._is_stale(p, same_is_stale=False):
                stale += 1
                known = self._entries.get(p.id)
                if known is not None:
                    seen[p.id] = known  # keep the newer entry we have
                continue
            self._bump(p.sequence)
            old = self._entries.get(p.id)
            if old is None:
                added.append(p)
            elif old.raw != p.raw:
                updated.append(p)
            self._removed.pop(p.id, None)
            seen[p.id] = p
        removed = [p for pid, p in self._entries.items() if pid not in seen]
        for p in removed:
            self._forget(p.id, p.sequence)
        self._entries = seen
        return RosterChange(tuple(added), tuple(updated), tuple(removed), self.sequence, stale)

    def _bump(self, seq: int | None) -> None:
        if seq is not None and seq > self.sequence:
            self.sequence = seq

    def _forget(self, participant_id: str, seq: int | None) -> None:
        if seq is None:
            return
        self._removed[participant_id] = seq
        while len(self._removed) > MAX_REMEMBERED_REMOVALS:
            del self._removed[next(iter(self._removed))]


__all__ = ["Roster", "RosterChange"]
