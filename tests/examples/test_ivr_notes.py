"""Notifications to IVR events (what the stateless workers feed the machine), and events through JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest
from examples.ivr.machine import (
    CallEnded,
    CallEstablished,
    CallIncoming,
    Event,
    KeyPressed,
    PromptFinished,
    RecordingFinished,
    TimerFired,
    TransferFailed,
)
from examples.ivr.notes import decode_event, encode_event, events_for

from opencomms.sdk import parse_notifications

CALL = "/communications/calls/57dab8b1-894c-409a-b240-bd8beae78896"


def note(change: str, url: str, data: Any) -> list[Event]:
    (parsed,) = parse_notifications({"value": [{"changeType": change, "resourceUrl": url, "resourceData": data}]})
    return events_for(parsed)


def op(kind: str, status: str, context: str | None, **extra: Any) -> dict[str, Any]:
    return {"@odata.type": f"#microsoft.graph.{kind}", "id": "op1", "status": status, "clientContext": context, **extra}


def test_call_notifications() -> None:
    assert note("created", CALL, {"state": "incoming"}) == [CallIncoming()]
    assert note("updated", CALL, {"state": "established"}) == [CallEstablished()]
    assert note("updated", CALL, {"state": "established", "toneInfo": {"tone": "pound", "sequenceId": 3}}) == [
        KeyPressed("#")
    ]
    assert note("updated", CALL, {"state": "established", "toneInfo": {"tone": "flash"}}) == []
    assert note("updated", CALL, {"state": "terminated"}) == [CallEnded()]
    assert note("deleted", CALL, {"state": "terminated"}) == [CallEnded()]
    assert note("updated", CALL, {"state": "transferring"}) == []
    assert note("updated", f"{CALL}/participants", []) == []


def test_operation_notifications_carry_their_step_in_client_context() -> None:
    ops = f"{CALL}/operations/op1"
    assert note("deleted", ops, op("playPromptOperation", "completed", "ivr:7")) == [PromptFinished(7)]
    assert note("deleted", ops, op("playPromptOperation", "failed", "ivr:8")) == [PromptFinished(8, ok=False)]
    assert note("deleted", ops, op("playPromptOperation", "completed", None)) == []  # not the machine's
    assert note("deleted", ops, op("playPromptOperation", "completed", "other:1")) == []
    assert note("deleted", ops, op("playPromptOperation", "running", "ivr:7")) == []
    recorded = op(
        "recordOperation",
        "completed",
        "ivr:9",
        recordingLocation="https://node/media/recordings/r1",
        recordingAccessToken="tok",
        completionReason="stopToneDetected",
    )
    assert note("deleted", ops, recorded) == [
        RecordingFinished(9, "https://node/media/recordings/r1", "tok", "stopToneDetected")
    ]
    failed = op("recordOperation", "failed", "ivr:9", completionReason="operationCanceled")
    assert note("deleted", ops, failed) == [RecordingFinished(9, None, None, "operationCanceled")]


@pytest.mark.parametrize(
    "event",
    [
        CallIncoming(),
        CallEstablished(),
        PromptFinished(3, ok=False),
        KeyPressed("*"),
        TimerFired(12),
        RecordingFinished(4, "https://x/r", "t", "maxSilenceTimeout"),
        TransferFailed("480"),
        CallEnded(),
    ],
)
def test_events_survive_json(event: Event) -> None:
    assert decode_event(json.loads(json.dumps(encode_event(event)))) == event
