"""The SDK reads live transcription's call updates: `Notification.transcript` (text, status, speaker, offsets)."""

from __future__ import annotations

from opencomms.sdk import Transcript, parse_notifications


def body(transcript: object) -> dict[str, object]:
    return {
        "value": [
            {
                "changeType": "updated",
                "resourceUrl": "/communications/calls/2f1a-call",
                "resourceData": {
                    "@odata.type": "#microsoft.graph.call",
                    "state": "established",
                    "transcript": transcript,
                },
            }
        ]
    }


def test_a_transcript_is_read_with_its_speaker_and_offsets() -> None:
    wire = {
        "@odata.type": "#opencomms.transcript",
        "sequenceId": 3,
        "text": "Could you call me back?",
        "isFinal": True,
        "status": "final",
        "participantId": "p-1",
        "sourceId": "7",
        "identity": {"phone": {"id": "+15550123"}},
        "startOffset": "PT1.20S",
        "endOffset": "PT3.48S",
    }
    (note,) = parse_notifications(body(wire))
    got = note.transcript
    assert got == Transcript(
        3, "Could you call me back?", "final", "p-1", "7", {"phone": {"id": "+15550123"}}, "PT1.20S", "PT3.48S"
    )
    assert note.call_id == "2f1a-call"


def test_an_overloaded_span_and_junk_are_told_apart() -> None:
    (note,) = parse_notifications(body({"text": "", "status": "overloaded", "sequenceId": "x"}))
    assert note.transcript is not None and note.transcript.status == "overloaded" and note.transcript.sequence_id == 0
    (junk,) = parse_notifications(body("hello"))
    assert junk.transcript is None
