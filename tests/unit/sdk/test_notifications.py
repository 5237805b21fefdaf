"""Parsing commsNotifications into typed notifications (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from opencomms.sdk import NotificationError, ResourceKind, parse_notifications
from opencomms.sdk.notifications import classify

CALL = "4f1b8a6e-8f00-4d2a-9a0e-2b4f3f0f0c11"


def envelope(*items: dict[str, Any]) -> dict[str, Any]:
    return {"@odata.type": "#microsoft.graph.commsNotifications", "value": list(items)}


def note(change: str, url: str, data: Any) -> dict[str, Any]:
    return {"changeType": change, "resourceUrl": url, "resourceData": data}


def test_resource_urls_are_classified() -> None:
    assert classify(f"/communications/calls/{CALL}") == (CALL, ResourceKind.CALL)
    assert classify(f"/communications/calls/{CALL}/participants") == (CALL, ResourceKind.PARTICIPANTS)
    assert classify(f"/communications/calls/{CALL}/operations/op1") == (CALL, ResourceKind.OPERATION)
    assert classify(f"https://graph.example/v1.0/communications/calls/{CALL}") == (CALL, ResourceKind.CALL)
    assert classify(f"/app/calls/{CALL}/audioRoutingGroups/x") == (CALL, ResourceKind.OTHER)
    assert classify("/communications/onlineMeetings/1") == ("", ResourceKind.OTHER)
    assert classify("/communications/calls/") == ("", ResourceKind.OTHER)


def test_call_tone_roster_and_operation_notifications() -> None:
    body = envelope(
        note(
            "created",
            f"/communications/calls/{CALL}",
            {"id": CALL, "state": "incoming", "direction": "incoming", "source": {"identity": {}}},
        ),
        note(
            "updated",
            f"/communications/calls/{CALL}",
            {"state": "established", "toneInfo": {"sequenceId": 3, "tone": "pound"}},
        ),
        note(
            "updated",
            f"/communications/calls/{CALL}/participants",
            [{"id": "p1", "info": {"identity": {"application": {"id": "app"}}}, "mediaStreams": [{"sourceId": "7"}]}],
        ),
        note(
            "deleted",
            f"/communications/calls/{CALL}/operations/op9",
            {
                "@odata.type": "#microsoft.graph.recordOperation",
                "status": "completed",
                "resultInfo": {"code": 200, "subcode": 8515, "message": "max"},
                "recordingLocation": "http://node/media/recordings/r",
                "recordingAccessToken": "tok",
                "completionReason": "maxRecordDurationReached",
            },
        ),
        note("deleted", f"/communications/calls/{CALL}", {"state": "terminated", "resultInfo": {"code": 200}}),
    )
    ring, tone, roster, op, end = parse_notifications(body, delivery_id="d1", tenant_id="t1")
    assert ring.is_incoming_call and ring.call is not None and ring.call.direction == "incoming"
    assert ring.delivery_id == "d1" and ring.tenant_id == "t1" and ring.call_id == CALL
    assert tone.tone is not None and (tone.tone.sequence_id, tone.tone.key) == (3, "#") and not tone.is_incoming_call
    assert roster.kind is ResourceKind.PARTICIPANTS and roster.state is None
    assert [(p.id, p.app_id, p.source_ids) for p in roster.participants] == [("p1", "app", ("7",))]
    operation = op.operation
    assert operation is not None and operation.id == "op9" and operation.type == "recordOperation"
    assert operation.finished and not operation.failed and op.operation_status == "completed"
    assert operation.result_info is not None and operation.result_info.subcode == 8515
    assert (operation.recording_access_token, operation.completion_reason) == ("tok", "maxRecordDurationReached")
    assert op.tone is None and op.call is None and op.state is None
    assert end.state == "terminated" and end.result_info is not None and end.result_info.subcode == 0


@pytest.mark.parametrize(
    "body",
    [None, [], {"value": "x"}, {"value": [1]}, {"value": [{"changeType": "updated"}]}, {"nothing": []}],
)
def test_malformed_bodies_are_refused(body: Any) -> None:
    with pytest.raises(NotificationError):
        parse_notifications(body)
