"""The `onlineMeeting` resource (Graph v1.0): its stored value, its JSON on the wire, and its `MeetingInfo`.

Pure: no store, no clock, no randomness of its own (ids and codes are given by the repository that creates a
meeting). Reading request bodies lives in wire/meetings.py; the live side reads only `MeetingInfo`.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from opencomms.domain.meetings import LobbyScope, MeetingInfo, MeetingRole

__all__ = ["Attendee", "OnlineMeeting", "iso_time", "join_web_url", "meeting_id_for", "thread_id_for"]


@dataclass(frozen=True, slots=True)
class Attendee:
    """One invited person (`participants.attendees[]`): a directory user (by id) and/or a UPN, and a role."""

    user_id: str | None = None
    upn: str | None = None
    display_name: str | None = None
    role: MeetingRole = MeetingRole.ATTENDEE

    def to_wire(self, tenant_id: str) -> dict[str, Any]:
        identity: dict[str, Any] = {"@odata.type": "#microsoft.graph.identitySet"}
        if self.user_id is not None:
            identity["user"] = {
                "@odata.type": "#microsoft.graph.identity",
                "id": self.user_id,
                "displayName": self.display_name,
                "tenantId": tenant_id,
            }
        return {
            "@odata.type": "#microsoft.graph.meetingParticipantInfo",
            "identity": identity,
            "upn": self.upn,
            "role": self.role.value,
        }


@dataclass(frozen=True, slots=True)
class OnlineMeeting:
    """One stored meeting. Times are epoch seconds; codes are strings of digits."""

    id: str
    tenant_id: str
    organizer_id: str
    organizer_name: str
    thread_id: str
    join_meeting_id: str
    passcode: str
    conference_id: str
    created_at: float
    start: float
    end: float
    app_id: str
    """The application that created it (createOrGet's externalId is unique per application and organizer)."""
    message_id: str = "0"
    subject: str = ""
    external_id: str | None = None
    passcode_required: bool = True
    lobby_scope: LobbyScope = LobbyScope.ORGANIZATION
    dial_in_bypass: bool = False
    entry_exit_announced: bool = True
    record_automatically: bool = False
    attendees: tuple[Attendee, ...] = ()
    organizer_upn: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Settings Graph defines that change nothing here yet (allowedPresenters, allowMeetingChat, …), echoed back."""

    # -- store -------------------------------------------------------------------------------------------
    def to_doc(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["attendees"] = [asdict(a) for a in self.attendees]
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> OnlineMeeting:
        doc = dict(doc)
        doc["attendees"] = tuple(
            Attendee(**{**a, "role": MeetingRole(a.get("role", "attendee"))}) for a in doc.get("attendees", ())
        )
        doc["lobby_scope"] = LobbyScope(doc.get("lobby_scope", LobbyScope.ORGANIZATION.value))
        return cls(**doc)

    def changed(self, **changes: Any) -> OnlineMeeting:
        return replace(self, **changes)

    # -- the live side's view ----------------------------------------------------------------------------
    def info(self) -> MeetingInfo:
        return MeetingInfo(
            id=self.id,
            tenant_id=self.tenant_id,
            organizer_id=self.organizer_id,
            organizer_name=self.organizer_name,
            thread_id=self.thread_id,
            message_id=self.message_id,
            join_meeting_id=self.join_meeting_id,
            passcode=self.passcode,
            passcode_required=self.passcode_required,
            conference_id=self.conference_id,
            lobby_scope=self.lobby_scope,
            dial_in_bypass=self.dial_in_bypass,
            roles=tuple((a.user_id, a.role) for a in self.attendees if a.user_id is not None),
            entry_exit_announced=self.entry_exit_announced,
            record_automatically=self.record_automatically,
            allow_transcription=_flag(self.extra.get("allowTranscription")),
            start=self.start,
            end=self.end,
            subject=self.subject,
        )

    # -- Graph JSON --------------------------------------------------------------------------------------
    def to_wire(self, public_url: str, dial_in_number: str = "") -> dict[str, Any]:
        organizer = {
            "@odata.type": "#microsoft.graph.meetingParticipantInfo",
            "identity": {
                "@odata.type": "#microsoft.graph.identitySet",
                "user": {
                    "@odata.type": "#microsoft.graph.identity",
                    "id": self.organizer_id,
                    "displayName": self.organizer_name,
                    "tenantId": self.tenant_id,
                },
            },
            "upn": self.organizer_upn,
            "role": "presenter",
        }
        return {
            "@odata.type": "#microsoft.graph.onlineMeeting",
            "id": self.id,
            "creationDateTime": iso_time(self.created_at),
            "startDateTime": iso_time(self.start),
            "endDateTime": iso_time(self.end),
            "subject": self.subject,
            "externalId": self.external_id,
            "joinWebUrl": join_web_url(public_url, self.thread_id, self.message_id, self.tenant_id, self.organizer_id),
            "videoTeleconferenceId": None,
            "isEntryExitAnnounced": self.entry_exit_announced,
            "recordAutomatically": self.record_automatically,
            "joinInformation": None,
            "chatInfo": {
                "@odata.type": "#microsoft.graph.chatInfo",
                "threadId": self.thread_id,
                "messageId": self.message_id,
                "replyChainMessageId": None,
            },
            "joinMeetingIdSettings": {
                "@odata.type": "#microsoft.graph.joinMeetingIdSettings",
                "isPasscodeRequired": self.passcode_required,
                "joinMeetingId": self.join_meeting_id,
                "passcode": self.passcode if self.passcode_required else None,
            },
            "audioConferencing": {
                "@odata.type": "#microsoft.graph.audioConferencing",
                "conferenceId": self.conference_id,
                "tollNumber": dial_in_number or None,
                "tollNumbers": [dial_in_number] if dial_in_number else [],
                "tollFreeNumber": None,
                "tollFreeNumbers": [],
                "dialinUrl": f"{public_url}/l/dialin/{self.conference_id}",
            },
            "lobbyBypassSettings": {
                "@odata.type": "#microsoft.graph.lobbyBypassSettings",
                "scope": self.lobby_scope.value,
                "isDialInBypassEnabled": self.dial_in_bypass,
            },
            "participants": {
                "@odata.type": "#microsoft.graph.meetingParticipants",
                "organizer": organizer,
                "attendees": [a.to_wire(self.tenant_id) for a in self.attendees],
            },
            **self.extra,
        }


def iso_time(epoch: float) -> str:
    """Graph's UTC date-time form: `2019-07-11T02:17:17.6491360Z` (seven fraction digits, as Graph writes)."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def thread_id_for(guid: str) -> str:
    """Teams' meeting thread id: `19:meeting_` + base64 of the GUID's text + `@thread.v2` (no `+`, `/` or `=`)."""
    return f"19:meeting_{base64.b64encode(guid.encode()).decode()}@thread.v2"


def meeting_id_for(organizer_id: str, thread_id: str) -> str:
    """Graph's meeting id is base64 of `1*{organizer}*0**{thread}`; URL-safe here so it can sit in a path."""
    raw = f"1*{organizer_id}*0**{thread_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def join_web_url(public_url: str, thread_id: str, message_id: str, tenant_id: str, organizer_id: str) -> str:
    """`https://<host>/l/meetup-join/{thread}/{message}?context={"Tid":…,"Oid":…}`, URL-encoded as Teams does."""
    context = json.dumps({"Tid": tenant_id, "Oid": organizer_id}, separators=(",", ":"))
    return f"{public_url}/l/meetup-join/{quote(thread_id, safe='')}/{message_id}?context={quote(context, safe='')}"


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None
