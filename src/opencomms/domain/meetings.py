"""What the live side of a meeting needs to know of an `onlineMeeting` resource, and how the two sides meet.

The resource side (`POST /users/{id}/onlineMeetings`, its store and its REST routes) implements `MeetingLookup`;
the live side (the meeting's conversation: joins, lobby, roster, media) reads `MeetingInfo` through it and
implements `LiveMeetings` so that deleting a meeting ends it for everyone. Pure data and protocols: no I/O.
A live meeting's conversation id is the meeting's id (one conversation per meeting, created by its first join).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from opencomms.domain.results import ResultInfo

__all__ = ["LiveMeetings", "LobbyScope", "MeetingInfo", "MeetingLookup", "MeetingRole"]


class LobbyScope(StrEnum):
    """Graph's `lobbyBypassScope`: who joins without waiting in the lobby."""

    ORGANIZER = "organizer"
    ORGANIZATION = "organization"
    ORGANIZATION_AND_FEDERATED = "organizationAndFederated"
    EVERYONE = "everyone"
    INVITED = "invited"
    ORGANIZATION_EXCLUDING_GUESTS = "organizationExcludingGuests"


class MeetingRole(StrEnum):
    """Graph's `onlineMeetingRole`."""

    ATTENDEE = "attendee"
    PRESENTER = "presenter"
    PRODUCER = "producer"
    COORGANIZER = "coorganizer"


@dataclass(frozen=True, slots=True)
class MeetingInfo:
    """The behaviour-changing fields of one `onlineMeeting`, as the live meeting reads them."""

    id: str
    tenant_id: str
    organizer_id: str
    """The organizer's user id (`participants.organizer.identity.user.id`)."""
    organizer_name: str
    thread_id: str
    """`chatInfo.threadId` (also inside `joinWebUrl`)."""
    message_id: str = "0"
    join_meeting_id: str = ""
    """`joinMeetingIdSettings.joinMeetingId`: what bots give in `joinMeetingIdMeetingInfo`."""
    passcode: str | None = None
    passcode_required: bool = False
    conference_id: str = ""
    """`audioConferencing.conferenceId`: what a phone keys in at the dial-in prompt."""
    lobby_scope: LobbyScope = LobbyScope.ORGANIZATION
    dial_in_bypass: bool = False
    """`lobbyBypassSettings.isDialInBypassEnabled`: phones skip the lobby."""
    roles: tuple[tuple[str, MeetingRole], ...] = ()
    """Invited users (user id, role); the organizer is not listed here."""
    entry_exit_announced: bool = False
    record_automatically: bool = False
    allow_transcription: bool | None = None
    """`allowTranscription`: false refuses live transcription; true turns it on when a bot starts recording."""
    start: float | None = None
    end: float | None = None
    """`endDateTime` as epoch seconds: the live meeting ends a configurable grace after it."""
    subject: str = ""

    def role_of(self, user_id: str) -> MeetingRole | None:
        for uid, role in self.roles:
            if uid == user_id:
                return role
        return None


class MeetingLookup(Protocol):
    """The resource side: find a meeting by what a joiner gives. Every lookup is tenant-checked by the caller."""

    def meeting(self, meeting_id: str) -> MeetingInfo | None: ...

    def by_thread(self, thread_id: str) -> MeetingInfo | None:
        """By `chatInfo.threadId` (a bot joining with chatInfo + organizerMeetingInfo, or from a joinWebUrl)."""
        ...

    def by_join_id(self, join_meeting_id: str) -> MeetingInfo | None:
        """By `joinMeetingIdSettings.joinMeetingId` (a bot's joinMeetingIdMeetingInfo)."""
        ...

    def by_conference_id(self, conference_id: str) -> MeetingInfo | None:
        """By `audioConferencing.conferenceId` (a phone at the dial-in prompt)."""
        ...


class LiveMeetings(Protocol):
    """The live side, as the resource side calls it."""

    async def end_meeting(self, meeting_id: str, reason: ResultInfo) -> None:
        """End the meeting's conversation for everyone (every leg ends with `reason`); nothing when not live."""
        ...

    async def meeting_changed(self, info: MeetingInfo) -> None:
        """A PATCH changed the meeting (lobby, end time, announcements): the live meeting applies it."""
        ...
