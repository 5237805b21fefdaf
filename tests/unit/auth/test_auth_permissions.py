"""Permission names: canonical spellings, tolerated variants (reference §14 row 5), role normalisation."""

from __future__ import annotations

import pytest

from opencomms.auth import Permission, normalize_roles, parse_permission


@pytest.mark.parametrize("permission", list(Permission))
def test_canonical_names_parse_in_any_case(permission: Permission) -> None:
    assert parse_permission(permission.value) is permission
    assert parse_permission(permission.value.upper()) is permission
    assert parse_permission(f"  {permission.value.lower()} ") is permission


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("Calls.JoinGroupCalls.All", Permission.CALLS_JOIN_GROUP_CALL_ALL),
        ("Calls.InitiateGroupCalls.All", Permission.CALLS_INITIATE_GROUP_CALL_ALL),
        ("Calls.JoinGroupCallsasGuest.All", Permission.CALLS_JOIN_GROUP_CALL_AS_GUEST_ALL),
        ("calls.joingroupcallsASGUEST.all", Permission.CALLS_JOIN_GROUP_CALL_AS_GUEST_ALL),
    ],
)
def test_variant_spellings_are_accepted(variant: str, expected: Permission) -> None:
    assert parse_permission(variant) is expected


def test_unknown_permission_names_the_valid_ones() -> None:
    with pytest.raises(ValueError) as caught:
        parse_permission("Calls.Everything.All")
    message = str(caught.value)
    assert "Calls.Everything.All" in message
    for permission in Permission:
        assert permission.value in message


def test_values_are_the_published_strings() -> None:
    expected = {
        "Calls.Initiate.All",
        "Calls.InitiateGroupCall.All",
        "Calls.JoinGroupCall.All",
        "Calls.JoinGroupCallAsGuest.All",
        "Calls.AccessMedia.All",
        "OnlineMeetings.Read.All",
        "OnlineMeetings.ReadWrite.All",
        "CallRecords.Read.All",
        "OnlineMeetingTranscript.Read.All",
        "OnlineMeetingRecording.Read.All",
    }
    assert {str(p) for p in Permission} == expected
    assert set(Permission) == expected  # members compare equal to their plain-string values


def test_normalize_roles_canonicalises_known_and_keeps_unknown() -> None:
    roles = normalize_roles(["calls.initiate.all", "Calls.JoinGroupCalls.All", "Custom.Role"])
    assert roles == {"Calls.Initiate.All", "Calls.JoinGroupCall.All", "Custom.Role"}
    assert Permission.CALLS_JOIN_GROUP_CALL_ALL in roles
    assert all(type(role) is str for role in roles)
