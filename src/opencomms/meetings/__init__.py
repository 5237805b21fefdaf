"""Online meetings as resources: the store repository (also the live side's `MeetingLookup`), application access
policies, and the service the REST routes and the CLI use."""

from __future__ import annotations

from opencomms.meetings.directory import MeetingDirectory
from opencomms.meetings.policy import AccessPolicies, PolicyGrant
from opencomms.meetings.service import MEETING_DELETED, MeetingService

__all__ = ["MEETING_DELETED", "AccessPolicies", "MeetingDirectory", "MeetingService", "PolicyGrant"]
