"""Online meetings as the REST API uses them: who may act on whose meetings, create/get/find/patch/delete.

Rules (Graph's): an application token needs OnlineMeetings.ReadWrite.All (Read.All to read) and an application
access policy granting the app on the organizer; a delegated token needs the OnlineMeetings.ReadWrite (or .Read)
scope and acts on its own user only. A meeting of another user or tenant is 404. DELETE ends the live meeting and
PATCH tells it, through the optional `LiveMeetings` the composition root registers.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable

from opencomms.auth.permissions import DelegatedScope, Permission
from opencomms.calling.service import Caller
from opencomms.config import MeetingsConfig
from opencomms.directory import Directory
from opencomms.domain.directory import User
from opencomms.domain.errors import AccessDenied, BadRequest, NotFound, Throttled
from opencomms.domain.ids import new_id, normalize_id
from opencomms.domain.meeting_resource import OnlineMeeting, meeting_id_for, thread_id_for
from opencomms.domain.meetings import LiveMeetings, LobbyScope
from opencomms.domain.results import ResultInfo
from opencomms.meetings.directory import MeetingDirectory, external_key
from opencomms.meetings.policy import AccessPolicies
from opencomms.ratelimit import KeyedTokenBucket, retry_after
from opencomms.wire.meetings import MeetingFields

__all__ = ["MEETING_DELETED", "MeetingService"]

log = logging.getLogger("opencomms.meetings")
MEETING_DELETED = ResultInfo(200, 5300, "The meeting was deleted by its organizer.")
"""The resultInfo every leg of a live meeting ends with when the meeting resource is deleted."""
_WRITE = (Permission.ONLINE_MEETINGS_READ_WRITE_ALL.value,)
_READ = (Permission.ONLINE_MEETINGS_READ_ALL.value, Permission.ONLINE_MEETINGS_READ_WRITE_ALL.value)
_WRITE_SCOPES = (DelegatedScope.ONLINE_MEETINGS_READ_WRITE.value,)
_READ_SCOPES = (DelegatedScope.ONLINE_MEETINGS_READ.value, DelegatedScope.ONLINE_MEETINGS_READ_WRITE.value)
ME = "me"
"""The `userId` the /me routes pass: the signed-in user of a delegated token."""


class MeetingService:
    def __init__(
        self,
        meetings: MeetingDirectory,
        directory: Directory,
        config: MeetingsConfig | None = None,
        *,
        public_url: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.meetings = meetings
        self.directory = directory
        self.policies = AccessPolicies(directory)
        self.config = config or MeetingsConfig()
        self.public_url = public_url
        self.clock = clock
        self.live: LiveMeetings | None = None
        """The live side (registered at the composition root); None: no live meetings to tell."""
        rate = self.config.passcode_failures_per_minute
        self._short_guesses = KeyedTokenBucket(rate / 60.0, rate) if rate else None
        """Short links that named no meeting (or a wrong passcode) per source address: ids cannot be swept."""

    def by_short_link(self, join_meeting_id: str, passcode: str, source: str) -> OnlineMeeting:
        """The meeting a short join link (`/meet/{joinMeetingId}?p={passcode}`, Teams' newer form) names: the
        passcode must match when the meeting requires one. An unknown id and a wrong passcode are the same 404
        (no oracle); past `passcode_failures_per_minute` of them from one address, 429."""
        guesses, now = self._short_guesses, self.clock()
        if guesses is not None and (wait := guesses.wait(source, now)) is not None:
            raise Throttled("Too many unknown meeting links from this address; retry later.", retry_after(wait))
        join_id = join_meeting_id.replace(" ", "")
        found = self.meetings.find(f"join:{join_id}") if join_id.isdigit() and len(join_id) <= 32 else None
        if found is not None and (
            not found.passcode_required or hmac.compare_digest(passcode.encode(), found.passcode.encode())
        ):
            return found
        if guesses is not None:
            guesses.charge(source, now)
        raise NotFound("No such meeting.")

    def to_wire(self, meeting: OnlineMeeting) -> dict[str, object]:
        return meeting.to_wire(self.public_url, self.config.dial_in_number)

    # -- who -----------------------------------------------------------------------------------------------
    def organizer(
        self,
        caller: Caller,
        user_id: str,
        *,
        write: bool,
        roles: tuple[str, ...] | None = None,
        scopes: tuple[str, ...] | None = None,
    ) -> User:
        """The user whose meetings `caller` acts on at /users/{user_id} (or /me); raises 403/404. `roles` and
        `scopes` replace the meeting permissions (transcripts and recordings have their own)."""
        if caller.user_id is not None:
            scopes = scopes or (_WRITE_SCOPES if write else _READ_SCOPES)
            if not caller.scopes & set(scopes):
                raise AccessDenied(f"The token lacks the delegated permission {scopes[0]}.")
            if user_id != ME and normalize_id(user_id) != caller.user_id:
                raise AccessDenied("A delegated token acts on the signed-in user's own meetings only.")
            user = self.directory.get_user(caller.user_id)
            if user is None or user.tenant_id != caller.tenant_id:
                raise NotFound("The signed-in user no longer exists.")
            return user
        if user_id == ME:
            raise AccessDenied("/me requires a delegated (signed-in user) token; use /users/{id} with an app token.")
        needed = roles or (_WRITE if write else _READ)
        if not caller.roles & set(needed):
            raise AccessDenied(f"The application lacks the permission {needed[-1]}.")
        user = self.directory.get_user(user_id) if len(user_id) <= 64 else None
        if user is None or user.tenant_id != caller.tenant_id:
            raise NotFound(f"No user {user_id[:64]!r} in this tenant.")
        if not self.policies.allows(caller.app_id, caller.tenant_id, user.id):
            raise AccessDenied(
                "No application access policy grants this application on the user "
                "(the operator runs: opencomms policy grant --app ID --user ID)."
            )
        return user

    def _owned(self, user: User, meeting_id: str) -> OnlineMeeting:
        found = self.meetings.get(meeting_id)
        if found is None or found.organizer_id != user.id or found.tenant_id != user.tenant_id:
            raise NotFound("The online meeting was not found.")
        return found

    # -- operations ----------------------------------------------------------------------------------------
    def create(self, caller: Caller, user: User, fields: MeetingFields) -> OnlineMeeting:
        now = self.clock()
        start = fields.start if fields.start is not None else now
        end = fields.end if fields.end is not None else start + self.config.default_duration
        if end <= start:
            raise BadRequest("'endDateTime' must be later than 'startDateTime'.")
        join_id, conference_id, passcode = self.meetings.new_codes()
        thread = thread_id_for(new_id())
        meeting = OnlineMeeting(
            id=meeting_id_for(user.id, thread),
            tenant_id=user.tenant_id,
            organizer_id=user.id,
            organizer_name=user.display_name,
            organizer_upn=user.upn,
            thread_id=thread,
            join_meeting_id=join_id,
            passcode=passcode,
            conference_id=conference_id,
            created_at=now,
            start=start,
            end=end,
            app_id=caller.app_id,
            subject=fields.subject or "",
            external_id=fields.external_id,
            passcode_required=True if fields.passcode_required is None else fields.passcode_required,
            lobby_scope=fields.lobby_scope or LobbyScope.ORGANIZATION,
            dial_in_bypass=bool(fields.dial_in_bypass),
            entry_exit_announced=True if fields.entry_exit_announced is None else fields.entry_exit_announced,
            record_automatically=bool(fields.record_automatically),
            attendees=fields.attendees or (),
            extra=fields.extra or {},
        )
        self.meetings.add(meeting)
        return meeting

    def create_or_get(self, caller: Caller, user: User, fields: MeetingFields) -> tuple[OnlineMeeting, bool]:
        """(meeting, created): the meeting this app made for this organizer with this externalId, or a new one."""
        assert fields.external_id is not None
        found = self.meetings.find(external_key(caller.app_id, user.id, fields.external_id))
        if found is not None:
            return found, False
        return self.create(caller, user, fields), True

    def get(self, user: User, meeting_id: str) -> OnlineMeeting:
        return self._owned(user, meeting_id)

    def find(self, user: User, key: str) -> list[OnlineMeeting]:
        found = self.meetings.find(key)
        if found is None or found.organizer_id != user.id or found.tenant_id != user.tenant_id:
            return []
        return [found]

    async def update(self, user: User, meeting_id: str, fields: MeetingFields) -> OnlineMeeting:
        meeting = self._owned(user, meeting_id)
        changes: dict[str, object] = {
            name: value
            for name, value in (
                ("subject", fields.subject),
                ("start", fields.start),
                ("end", fields.end),
                ("lobby_scope", fields.lobby_scope),
                ("dial_in_bypass", fields.dial_in_bypass),
                ("entry_exit_announced", fields.entry_exit_announced),
                ("record_automatically", fields.record_automatically),
                ("attendees", fields.attendees),
            )
            if value is not None
        }
        if fields.extra:
            changes["extra"] = {**meeting.extra, **fields.extra}
        updated = meeting.changed(**changes)
        if updated.end <= updated.start:
            raise BadRequest("'endDateTime' must be later than 'startDateTime'.")
        self.meetings.save(updated)
        if self.live is not None:
            try:
                await self.live.meeting_changed(updated.info())
            except Exception:  # the change is stored; the live meeting's failure is its own, not the request's
                log.exception("the live meeting did not take the change", extra={"meeting": updated.id[:16]})
        return updated

    async def delete(self, user: User, meeting_id: str) -> None:
        meeting = self._owned(user, meeting_id)
        await self.remove(meeting)

    async def remove(self, meeting: OnlineMeeting) -> None:
        """Delete a meeting and end its live conference for everyone (also the operator's CLI path)."""
        self.meetings.remove(meeting)
        if self.live is not None:
            try:
                await self.live.end_meeting(meeting.id, MEETING_DELETED)
            except Exception:
                log.exception("the live meeting did not end", extra={"meeting": meeting.id[:16]})
