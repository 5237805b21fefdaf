"""Readers for the participant-control bodies of a meeting: startHoldMusic and updateRecordingStatus (the rest take
only `clientContext`: `wire.media.context_only`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opencomms.domain.errors import BadRequest
from opencomms.wire import reader as r
from opencomms.wire.media import client_context, prompt
from opencomms.wire.reader import JsonObj

RECORDING_STATUSES = ("notRecording", "recording", "failed")


@dataclass(frozen=True, slots=True)
class StartHoldMusic:
    custom_prompt: JsonObj | None
    client_context: str | None


def start_hold_music(body: Any) -> StartHoldMusic:
    obj = {} if body is None else r.as_object(body, "")
    custom = obj.get("customPrompt")
    return StartHoldMusic(
        custom_prompt=None if custom is None else prompt(custom, "customPrompt")[1],
        client_context=client_context(obj),
    )


@dataclass(frozen=True, slots=True)
class UpdateRecordingStatus:
    status: str
    client_context: str | None


def update_recording_status(body: Any) -> UpdateRecordingStatus:
    obj = r.as_object(body, "")
    if obj.get("status") is None:
        raise BadRequest("'status' is required.")
    return UpdateRecordingStatus(
        status=r.enum_value(obj["status"], "status", RECORDING_STATUSES),
        client_context=client_context(obj),
    )
