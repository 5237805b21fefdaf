"""SIP <-> Graph vocabulary of the gateway."""

from __future__ import annotations

import pytest

from opencomms.domain import results
from opencomms.gateway.mapping import caller_identity, failure_for_status, normalize_number, status_for_failure


@pytest.mark.parametrize(
    ("user", "number"),
    [
        ("+14255550100", "+14255550100"),
        ("14255550100", "+14255550100"),
        ("+1 (425) 555-0100", "+14255550100"),
        ("0049301234567", "+49301234567"),
        ("alice", None),
        ("12", None),
        ("+1234567890123456", None),
        ("", None),
    ],
)
def test_normalize_number(user: str, number: str | None) -> None:
    assert normalize_number(user) == number


def test_caller_identity() -> None:
    phone = caller_identity("+14255550100", "Ann", "sip:+14255550100@trunk")
    assert phone["phone"] == {"@odata.type": "#microsoft.graph.identity", "id": "+14255550100", "displayName": "Ann"}
    user = caller_identity("alice", None, "sip:alice@example.com")
    assert user["user"]["id"] == "sip:alice@example.com" and user["user"]["displayName"] == "alice"


def test_failures_round_trip_to_sensible_statuses() -> None:
    assert failure_for_status(486) is results.BUSY
    assert failure_for_status(603) is results.DECLINED
    assert failure_for_status(404) is results.CALLEE_UNREACHABLE
    assert failure_for_status(408) is results.NO_ANSWER
    assert (failure_for_status(502, "Bad Gateway").code, failure_for_status(503).subcode) == (502, 9131)
    assert failure_for_status(302, "Moved Temporarily").code == 480
    assert status_for_failure(results.BUSY) == (486, "Busy Here")
    assert status_for_failure(results.DECLINED) == (603, "Decline")
    assert status_for_failure(results.NO_ANSWER)[0] == 480
    assert status_for_failure(results.CANNOT_ROUTE) == (404, "Not Found")
    assert status_for_failure(results.NO_CALLEE_ENDPOINTS)[0] == 480
