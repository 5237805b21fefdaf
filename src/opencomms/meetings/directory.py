"""The meeting repository over the store: `onlineMeeting` documents and their secondary lookups.

Implements `MeetingLookup` (domain/meetings.py) for the live side. Kinds: "onlineMeeting" (by id) and
"onlineMeetingKey" (thread:, join:, conf:, ext: → meeting id). Generates the numeric codes, unique per store.
Does not check who may see a meeting (meetings/service.py does).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

from opencomms.domain.errors import ServiceUnavailable
from opencomms.domain.meeting_resource import OnlineMeeting
from opencomms.domain.meetings import MeetingInfo
from opencomms.store.base import Store

__all__ = ["MeetingDirectory"]

KIND = "onlineMeeting"
KEYS = "onlineMeetingKey"
JOIN_ID_DIGITS = 12
CONFERENCE_ID_DIGITS = 9
PASSCODE_DIGITS = 6
"""Passcodes are digits so that a phone can key them in at the dial-in prompt."""


class MeetingDirectory:
    """Stored meetings. Not thread-safe: one event loop owns it (as the store)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- MeetingLookup -----------------------------------------------------------------------------------
    def meeting(self, meeting_id: str) -> MeetingInfo | None:
        found = self.get(meeting_id)
        return None if found is None else found.info()

    def by_thread(self, thread_id: str) -> MeetingInfo | None:
        found = self._by_key(f"thread:{thread_id}")
        return None if found is None else found.info()

    def by_join_id(self, join_meeting_id: str) -> MeetingInfo | None:
        found = self._by_key(f"join:{join_meeting_id.replace(' ', '')}")
        return None if found is None else found.info()

    def by_conference_id(self, conference_id: str) -> MeetingInfo | None:
        found = self._by_key(f"conf:{conference_id}")
        return None if found is None else found.info()

    # -- the resource side -------------------------------------------------------------------------------
    def get(self, meeting_id: str) -> OnlineMeeting | None:
        if not meeting_id or len(meeting_id) > 512:
            return None
        doc = self.store.get(KIND, meeting_id)
        return None if doc is None else OnlineMeeting.from_doc(doc)

    def find(self, key: str) -> OnlineMeeting | None:
        """By a secondary key: `thread:`, `join:`, `conf:` or `ext:{app}:{organizer}:{externalId}`."""
        return self._by_key(key)

    def all(self) -> Iterator[OnlineMeeting]:
        for _, doc in self.store.scan(KIND):
            yield OnlineMeeting.from_doc(doc)

    def new_codes(self) -> tuple[str, str, str]:
        """(joinMeetingId, conferenceId, passcode), the two ids unused in this store."""
        join_id = self._unused("join", JOIN_ID_DIGITS)
        return join_id, self._unused("conf", CONFERENCE_ID_DIGITS), _digits(PASSCODE_DIGITS)

    def add(self, meeting: OnlineMeeting) -> None:
        with self.store.transaction():
            self.store.put(KIND, meeting.id, meeting.to_doc())
            for key in _keys(meeting):
                self.store.put(KEYS, key, {"id": meeting.id})

    def save(self, meeting: OnlineMeeting) -> None:
        """Write a changed meeting (its keys never change: ids and codes are fixed at creation)."""
        self.store.put(KIND, meeting.id, meeting.to_doc())

    def remove(self, meeting: OnlineMeeting) -> None:
        with self.store.transaction():
            for key in _keys(meeting):
                self.store.delete(KEYS, key)
            self.store.delete(KIND, meeting.id)

    def _by_key(self, key: str) -> OnlineMeeting | None:
        if len(key) > 1024:
            return None
        ref = self.store.get(KEYS, key)
        return None if ref is None else self.get(str(ref["id"]))

    def _unused(self, prefix: str, digits: int) -> str:
        for _ in range(32):
            code = _digits(digits)
            if self.store.get(KEYS, f"{prefix}:{code}") is None:
                return code
        raise ServiceUnavailable("No free meeting code was found; retry.", retry_after=1)


def external_key(app_id: str, organizer_id: str, external_id: str) -> str:
    return f"ext:{app_id}:{organizer_id}:{external_id}"


def _keys(meeting: OnlineMeeting) -> list[str]:
    keys = [f"thread:{meeting.thread_id}", f"join:{meeting.join_meeting_id}", f"conf:{meeting.conference_id}"]
    if meeting.external_id is not None:
        keys.append(external_key(meeting.app_id, meeting.organizer_id, meeting.external_id))
    return keys


def _digits(count: int) -> str:
    first = str(secrets.randbelow(9) + 1)  # no leading zero: a phone user or a spreadsheet would drop it
    return first + "".join(str(secrets.randbelow(10)) for _ in range(count - 1))
