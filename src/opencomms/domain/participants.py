"""The roster: a conversation's participants with Graph's participant fields and a roster sequence number.

A participant enters the roster when its leg is established and leaves when the leg ends. Every change (join,
update, leave) takes the next `sequence` once for the whole conversation, whoever is listening: subscribers read
the change from the event, never recompute the roster per leg. `to_wire` is the participant body the calls slice
sends today (`calling.model.Call.participant`), plus `rosterSequenceNumber` and `removedState` when asked for
(delta rosters, Graph reference 7.5).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

JsonObj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Participant:
    """One roster entry. Frozen: a change makes a new entry with the change's sequence number."""

    id: str
    leg_id: str
    identity: JsonObj
    source_id: str
    muted: bool = False
    in_lobby: bool = False
    sequence: int = 0
    """The roster sequence number of this entry's last change."""
    server_muted: bool = False
    """Muted by another participant (participants/{id}/mute): `mediaStreams[].serverMuted`."""
    recording: str | None = None
    """Meetings: the recordingStatus its recordingInfo shows (None outside meetings: no recordingInfo)."""
    recording_initiator: JsonObj | None = None

    def to_wire(self, *, with_sequence: bool = False, removed: str | None = None) -> JsonObj:
        body: JsonObj = {
            "@odata.type": "#microsoft.graph.participant",
            "id": self.id,
            "info": {"@odata.type": "#microsoft.graph.participantInfo", "identity": self.identity},
            "mediaStreams": [
                {
                    "@odata.type": "#microsoft.graph.mediaStream",
                    "mediaType": "audio",
                    "label": "main-audio",
                    "sourceId": self.source_id,
                    "direction": "sendReceive",
                    "serverMuted": self.server_muted,
                }
            ],
            "isMuted": self.muted,
            "isInLobby": self.in_lobby,
        }
        if self.recording is not None:
            body["recordingInfo"] = {
                "@odata.type": "#microsoft.graph.recordingInfo",
                "initiator": self.recording_initiator,
                "recordingStatus": self.recording,
            }
        if with_sequence:
            body["rosterSequenceNumber"] = self.sequence
        if removed is not None:
            body["removedState"] = {"@odata.type": "#microsoft.graph.removedState", "reason": removed}
        return body

    def to_doc(self) -> JsonObj:
        return {
            "id": self.id,
            "leg_id": self.leg_id,
            "identity": self.identity,
            "source_id": self.source_id,
            "muted": self.muted,
            "in_lobby": self.in_lobby,
            "sequence": self.sequence,
            "server_muted": self.server_muted,
            "recording": self.recording,
            "recording_initiator": self.recording_initiator,
        }

    @classmethod
    def from_doc(cls, doc: JsonObj) -> Participant:
        return cls(**doc)


class Roster:
    """Participants in join order, keyed by participant id, and the conversation's roster sequence number. It notes
    which entries changed and which left since `take_changes` last ran (what a partial write stores)."""

    __slots__ = ("_by_id", "_changed", "_left", "sequence")

    def __init__(self, participants: list[Participant] | None = None, sequence: int = 0) -> None:
        self._by_id: dict[str, Participant] = {p.id: p for p in participants or ()}
        self.sequence = sequence
        self._changed: dict[str, None] = {}
        """Participant ids joined or updated (a join goes last, as in `_by_id`)."""
        self._left: set[str] = set()

    def take_changes(self) -> tuple[list[str], list[str]]:
        """(ids of the entries joined or updated, in roster order for the joined ones; ids of those that left) since
        the last call. An id that left and joined again is in both: remove it, then write it (it is last now)."""
        changed = [pid for pid in self._changed if pid in self._by_id]
        left = list(self._left)
        self._changed, self._left = {}, set()
        return changed, left

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, participant_id: object) -> bool:
        return participant_id in self._by_id

    def get(self, participant_id: str) -> Participant | None:
        return self._by_id.get(participant_id)

    def entries(self) -> list[Participant]:
        return list(self._by_id.values())

    def join(self, participant: Participant) -> Participant:
        self.sequence += 1
        entry = replace(participant, sequence=self.sequence)
        if entry.id in self._by_id:
            self._changed.setdefault(entry.id)
        else:
            self._changed.pop(entry.id, None)
            self._changed[entry.id] = None
        self._by_id[entry.id] = entry
        return entry

    def update(self, participant_id: str, **changes: Any) -> Participant:
        self.sequence += 1
        entry = replace(self._by_id[participant_id], sequence=self.sequence, **changes)
        self._by_id[participant_id] = entry
        self._changed.setdefault(participant_id)
        return entry

    def leave(self, participant_id: str) -> Participant | None:
        entry = self._by_id.pop(participant_id, None)
        if entry is None:
            return None
        self._changed.pop(participant_id, None)
        self._left.add(participant_id)
        self.sequence += 1
        return replace(entry, sequence=self.sequence)

    def to_doc(self) -> JsonObj:
        return {"sequence": self.sequence, "participants": [p.to_doc() for p in self._by_id.values()]}

    @classmethod
    def from_doc(cls, doc: JsonObj) -> Roster:
        return cls([Participant.from_doc(p) for p in doc.get("participants", ())], int(doc.get("sequence", 0)))
