"""The live meeting's own rules: its state (end time, recording status, who is on hold), the lobby, admitting,
removing, hold music and recording status; and the lobby policy the meeting router applies to a joiner.

`MeetingCommands` is a base of `domain.conversation.Conversation` (after `LegLifecycle`): it holds the handlers of
the meeting commands; `domain.rules.RULES` holds their guards. Pure: no I/O, time from the command's `now`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from opencomms.domain import commands as c
from opencomms.domain import events as ev
from opencomms.domain import results
from opencomms.domain.calls import CallDirection, CallState
from opencomms.domain.legs import JsonObj
from opencomms.domain.lifecycle import LegLifecycle
from opencomms.domain.meetings import LobbyScope, MeetingInfo
from opencomms.domain.results import ResultInfo

__all__ = [
    "GUEST",
    "MEETING_HANDLERS",
    "MEMBER",
    "RECORDING_STATUSES",
    "JoinerKind",
    "MeetingCommands",
    "MeetingState",
    "bypasses_lobby",
    "removed_reason",
]

MEMBER = "member"
"""A bot joined with Calls.JoinGroupCall.All: it bypasses the lobby and has the organizer's rights (admit)."""
GUEST = "guest"
"""A bot joined with Calls.JoinGroupCallAsGuest.All: it waits in the lobby unless the meeting lets everyone in."""

RECORDING_STATUSES = ("notRecording", "recording", "failed")
"""Graph's recordingStatus values updateRecordingStatus accepts."""


class JoinerKind(StrEnum):
    """Who joins, as far as the lobby is concerned."""

    MEMBER = "member"
    """A bot with Calls.JoinGroupCall.All (directory-user privileges in the organizer's tenant)."""
    GUEST = "guest"
    """A bot with Calls.JoinGroupCallAsGuest.All, or anyone anonymous."""
    USER = "user"
    """A user of the organizer's tenant (a softphone user)."""
    PHONE = "phone"
    """A phone dialling in."""


def bypasses_lobby(info: MeetingInfo, joiner: JoinerKind, user_id: str = "") -> bool:
    """Graph's lobbyBypassSettings applied to one joiner. Members always bypass (they hold the organizer's rights
    and admit the others); phones bypass when dial-in bypass is on or everyone does."""
    scope = info.lobby_scope
    if joiner is JoinerKind.MEMBER or scope is LobbyScope.EVERYONE:
        return True
    if joiner is JoinerKind.PHONE:
        return info.dial_in_bypass
    if joiner is JoinerKind.GUEST:
        return False
    if user_id and user_id == info.organizer_id:
        return True
    if scope is LobbyScope.ORGANIZER:
        return False
    if scope is LobbyScope.INVITED:
        return info.role_of(user_id) is not None
    return True  # organization scopes: a user of the tenant


_REMOVED = {
    (200, 5000): "removedByParticipant",
    (200, 5001): "left",
    (200, 5003): "meetingEnded",
    (200, 5855): "lobbyTimeout",
    (200, 4097): "left",
    (200, 540000): "left",
}


def removed_reason(reason: ResultInfo | None) -> str:
    """`removedState.reason` of a participant that left for `reason` (a short word; the resultInfo stays on the leg's
    own notification)."""
    if reason is None:
        return "left"
    return _REMOVED.get((reason.code, reason.subcode), "removed" if reason.code < 300 else "failed")


@dataclass(slots=True)
class MeetingState:
    """What a live meeting keeps beside its legs and roster."""

    ends_at: float | None = None
    """When the live meeting ends by itself (endDateTime plus the grace)."""
    recording: str = "notRecording"
    recording_initiator: JsonObj | None = None
    held: str | None = None
    """The participant on hold with music (Graph: one at a time)."""

    def to_doc(self) -> JsonObj:
        return {
            "ends_at": self.ends_at,
            "recording": self.recording,
            "recording_initiator": self.recording_initiator,
            "held": self.held,
        }

    @classmethod
    def from_doc(cls, doc: JsonObj) -> MeetingState:
        return cls(**doc)


class MeetingCommands(LegLifecycle):
    """The meeting commands' handlers (their guards are in domain.rules)."""

    meeting: MeetingState | None

    def _join(self, cmd: c.Join) -> None:
        meeting = self.meeting
        if meeting is not None and cmd.ends_at is not None and meeting.ends_at is None:
            meeting.ends_at = cmd.ends_at
        leg = self._add(cmd.leg, CallDirection.OUTGOING, CallState.ESTABLISHING)
        leg.in_lobby = cmd.in_lobby
        leg.role = cmd.role
        self._establishing(leg)
        if cmd.in_lobby:
            if cmd.lobby_timeout is not None:
                leg.answer_deadline = self._now + cmd.lobby_timeout
            joined = self.roster.join(self._entry(leg))
            self._emit(ev.ParticipantJoined(joined, joined.sequence))
        else:
            self._establish(leg)  # O(1): a meeting connects the joiner alone, whoever is there

    def _admit(self, cmd: c.Admit) -> None:
        self._let_in(cmd.participant_ids, everyone=not cmd.participant_ids)

    def _let_in(self, participant_ids: tuple[str, ...], *, everyone: bool = False) -> None:
        """Lobby participants `participant_ids` (every lobby participant when `everyone`) join the media."""
        for entry in self.roster.entries() if everyone else [self.roster.get(p) for p in participant_ids]:
            if entry is None or not entry.in_lobby:
                continue
            leg = self.legs.get(entry.leg_id)
            if leg is None:
                continue
            leg.in_lobby = False
            leg.answer_deadline = None
            leg.version += 1
            updated = self.roster.update(entry.id, in_lobby=False)
            self._emit(ev.ParticipantUpdated(updated, updated.sequence))
            self._establish(leg, joined=False)

    def _remove_participant(self, cmd: c.RemoveParticipant) -> None:
        entry = self.roster.get(cmd.participant_id)
        leg = None if entry is None else self.legs.get(entry.leg_id)
        if leg is not None:
            self._end(leg, results.REMOVED_BY_PARTICIPANT)

    def _hold_music(self, cmd: c.HoldMusic) -> None:
        meeting = self.meeting
        entry = self.roster.get(cmd.participant_id)
        leg = None if entry is None else self.legs.get(entry.leg_id)
        if leg is not None and (cmd.on or (meeting is not None and meeting.held == cmd.participant_id)):
            if meeting is not None:
                meeting.held = cmd.participant_id if cmd.on else None
            leg.version += 1
            self._emit(ev.LegHeld(leg.id, leg.kind, cmd.on, cmd.prompt if cmd.on else None))
        by = self.legs[cmd.leg_id]
        if cmd.operation:
            self._emit(ev.OperationFinished(by.id, by.kind, cmd.operation))

    def _update_recording(self, cmd: c.UpdateRecordingStatus) -> None:
        meeting = self.meeting
        assert meeting is not None
        by = self.legs[cmd.leg_id]
        if meeting.recording == cmd.status:
            return
        meeting.recording = cmd.status
        meeting.recording_initiator = by.identity
        self._emit(ev.RecordingStatusChanged(cmd.status, by.identity))  # phones hear it: calling/announcements.py
        for entry in self.roster.entries():
            updated = self.roster.update(entry.id, recording=cmd.status, recording_initiator=by.identity)
            self._emit(ev.ParticipantUpdated(updated, updated.sequence))

    def _configure_meeting(self, cmd: c.ConfigureMeeting) -> None:
        if self.meeting is not None:
            self.meeting.ends_at = cmd.ends_at
        self._let_in(cmd.admit)

    def _meeting_over(self, now: float) -> bool:
        """FireTimers: the meeting's end time (plus grace) has passed: every leg ends."""
        meeting = self.meeting
        if meeting is None or meeting.ends_at is None or meeting.ends_at > now:
            return False
        for leg in list(self.legs.values()):
            if leg.id in self.legs:
                self._end(leg, results.MEETING_TIME_OVER)
        return True

    def _meeting_deadline(self) -> float | None:
        meeting = self.meeting
        return None if meeting is None or not self.legs else meeting.ends_at


MEETING_HANDLERS: dict[type, Callable[[Any, Any], None]] = {
    c.Join: MeetingCommands._join,
    c.Admit: MeetingCommands._admit,
    c.RemoveParticipant: MeetingCommands._remove_participant,
    c.HoldMusic: MeetingCommands._hold_music,
    c.UpdateRecordingStatus: MeetingCommands._update_recording,
    c.ConfigureMeeting: MeetingCommands._configure_meeting,
}
