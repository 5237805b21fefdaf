"""Application permission (app role) names for cloud communications, and tolerant parsing of their spellings.

Owns the canonical names and accepted variants (reference §2, §14 row 5);
must not decide which API needs which permission.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

__all__ = ["DelegatedScope", "Permission", "normalize_roles", "parse_permission", "parse_scope"]


class Permission(StrEnum):
    """Canonical application permission names, as they appear in the ``roles`` claim."""

    CALLS_INITIATE_ALL = "Calls.Initiate.All"
    CALLS_INITIATE_GROUP_CALL_ALL = "Calls.InitiateGroupCall.All"
    CALLS_JOIN_GROUP_CALL_ALL = "Calls.JoinGroupCall.All"
    CALLS_JOIN_GROUP_CALL_AS_GUEST_ALL = "Calls.JoinGroupCallAsGuest.All"
    CALLS_ACCESS_MEDIA_ALL = "Calls.AccessMedia.All"
    ONLINE_MEETINGS_READ_ALL = "OnlineMeetings.Read.All"
    ONLINE_MEETINGS_READ_WRITE_ALL = "OnlineMeetings.ReadWrite.All"
    CALLS_RECORDS_READ_ALL = "CallRecords.Read.All"
    ONLINE_MEETING_TRANSCRIPT_READ_ALL = "OnlineMeetingTranscript.Read.All"
    ONLINE_MEETING_RECORDING_READ_ALL = "OnlineMeetingRecording.Read.All"


# Spellings found in Microsoft's own material (reference §14 row 5).
_VARIANTS: dict[str, Permission] = {
    "calls.joingroupcalls.all": Permission.CALLS_JOIN_GROUP_CALL_ALL,
    "calls.initiategroupcalls.all": Permission.CALLS_INITIATE_GROUP_CALL_ALL,
    "calls.joingroupcallsasguest.all": Permission.CALLS_JOIN_GROUP_CALL_AS_GUEST_ALL,
}
_BY_LOWER: dict[str, Permission] = {p.value.lower(): p for p in Permission} | _VARIANTS


def parse_permission(name: str) -> Permission:
    """The canonical permission for ``name`` (case-insensitive, variants accepted); ValueError otherwise."""
    found = _BY_LOWER.get(name.strip().lower())
    if found is None:
        valid = ", ".join(p.value for p in Permission)
        raise ValueError(f"unknown permission {name!r}; valid permissions are: {valid}")
    return found


def normalize_roles(names: Iterable[str]) -> frozenset[str]:
    """Roles with known permissions mapped to their canonical spelling; unknown roles are kept unchanged."""
    canonical: set[str] = set()
    for name in names:
        found = _BY_LOWER.get(name.strip().lower())
        canonical.add(name if found is None else found.value)
    return frozenset(canonical)


class DelegatedScope(StrEnum):
    """Delegated permissions (the `scp` claim of a signed-in user's token). Every registered app may ask for
    them: the operator who registers an app consents for the tenant, as an Entra ID admin does."""

    ONLINE_MEETINGS_READ = "OnlineMeetings.Read"
    ONLINE_MEETINGS_READ_WRITE = "OnlineMeetings.ReadWrite"
    USER_READ = "User.Read"
    ONLINE_MEETING_TRANSCRIPT_READ_ALL = "OnlineMeetingTranscript.Read.All"
    ONLINE_MEETING_RECORDING_READ_ALL = "OnlineMeetingRecording.Read.All"


_SCOPES: dict[str, DelegatedScope] = {s.value.lower(): s for s in DelegatedScope}


def parse_scope(name: str) -> DelegatedScope | None:
    """The delegated scope for ``name`` (case-insensitive), or None if it is not one."""
    return _SCOPES.get(name.strip().lower())
