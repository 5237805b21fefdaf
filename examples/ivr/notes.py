"""From the node's notifications to IVR events, and IVR events to and from JSON (for the stateless journal).

Prompts and recordings the IVR starts carry `clientContext` "ivr:<tag>", so whichever process receives an
operation's outcome knows which step of the machine it finishes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

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
from examples.ivr.menu import KEYS
from opencomms.sdk import Notification, ResourceKind

CONTEXT_PREFIX = "ivr:"
_EVENT_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        CallIncoming,
        CallEstablished,
        PromptFinished,
        KeyPressed,
        TimerFired,
        RecordingFinished,
        TransferFailed,
        CallEnded,
    )
}


def context_for(tag: int) -> str:
    return f"{CONTEXT_PREFIX}{tag}"


def tag_of(client_context: str | None) -> int | None:
    if not client_context or not client_context.startswith(CONTEXT_PREFIX):
        return None
    value = client_context[len(CONTEXT_PREFIX) :]
    return int(value) if value.isdigit() else None


def events_for(note: Notification) -> list[Event]:
    """The IVR events one notification means (often none: roster updates, operations of others...)."""
    if note.kind is ResourceKind.CALL:
        if note.change_type == "deleted" or note.state == "terminated":
            return [CallEnded()]
        tone = note.tone
        if tone is not None:
            return [KeyPressed(tone.key)] if tone.key in KEYS else []
        if note.is_incoming_call:
            return [CallIncoming()]
        if note.state == "established":
            return [CallEstablished()]
        return []
    if note.kind is ResourceKind.OPERATION:
        op = note.operation
        tag = None if op is None else tag_of(op.client_context)
        if op is None or tag is None or not op.finished:
            return []
        if op.type == "recordOperation":
            ok = op.status == "completed"
            return [
                RecordingFinished(
                    tag,
                    op.recording_location if ok else None,
                    op.recording_access_token if ok else None,
                    op.completion_reason or "",
                )
            ]
        if op.type == "playPromptOperation":
            return [PromptFinished(tag, ok=op.status == "completed")]
    return []


def encode_event(event: Event) -> dict[str, Any]:
    return {"type": type(event).__name__, **dataclasses.asdict(event)}


def decode_event(data: dict[str, Any]) -> Event:
    fields = dict(data)
    cls = _EVENT_TYPES[str(fields.pop("type"))]
    event: Event = cls(**fields)
    return event
