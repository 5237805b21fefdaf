"""Reader for `POST /communications/calls/{id}/participants/invite` (Graph's inviteParticipants body)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opencomms.wire import reader as r
from opencomms.wire.calls import invitation_participant_info
from opencomms.wire.media import client_context
from opencomms.wire.reader import JsonObj

MAX_INVITEES = 5
"""Participants one invite may name (Graph's limit); more answer 400."""


@dataclass(frozen=True, slots=True)
class InviteParticipants:
    participants: list[JsonObj]
    client_context: str | None


def invite_participants(body: Any) -> InviteParticipants:
    obj = r.as_object(body, "")
    items = r.array(obj, "participants", "", required=True, min_items=1, max_items=MAX_INVITEES) or []
    return InviteParticipants(
        participants=[invitation_participant_info(p, f"participants[{i}]") for i, p in enumerate(items)],
        client_context=client_context(obj),
    )
