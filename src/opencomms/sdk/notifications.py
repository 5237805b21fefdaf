"""Typed commsNotifications, read tolerantly from the body the node POSTs to a bot's callback URL. Pure.

A POST carries `{"value": [commsNotification, ...]}`; each names a `changeType` (created, updated, deleted) and a
`resourceUrl`: `/communications/calls/{id}` (the call), `.../participants` (the roster) or
`.../operations/{opId}` (a finished operation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from opencomms.sdk.models import CallInfo, Operation, Participant, ResultInfo, ToneInfo, Transcript

JsonObj = dict[str, Any]


class NotificationError(ValueError):
    """The body is not a commsNotifications document."""


class ResourceKind(StrEnum):
    CALL = "call"
    PARTICIPANTS = "participants"
    OPERATION = "operation"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Notification:
    """One commsNotification. `call_id` is the call the resource belongs to (the ordering key)."""

    change_type: str
    resource_url: str
    call_id: str
    kind: ResourceKind
    resource: Any
    """`resourceData`: a dict for calls and operations, a list of participants for the roster."""
    delivery_id: str = ""
    """The node's `opencomms-delivery-id` of the POST that carried it (several notifications may share one)."""
    tenant_id: str | None = None
    """`tid` of the callback token."""
    raw: JsonObj = field(default_factory=dict, repr=False)

    # -- call notifications --------------------------------------------------------------------------------
    @property
    def data(self) -> JsonObj:
        return self.resource if isinstance(self.resource, dict) else {}

    @property
    def state(self) -> str | None:
        """The call's state (call notifications)."""
        if self.kind is not ResourceKind.CALL:
            return None
        value = self.data.get("state")
        return value if isinstance(value, str) else None

    @property
    def result_info(self) -> ResultInfo | None:
        return ResultInfo.from_wire(self.data.get("resultInfo"))

    @property
    def tone(self) -> ToneInfo | None:
        """A key the other side pressed (after subscribeToTone)."""
        if self.kind is not ResourceKind.CALL:
            return None
        return ToneInfo.from_wire(self.data.get("toneInfo"))

    @property
    def transcript(self) -> Transcript | None:
        """An utterance of live transcription (after startTranscription)."""
        if self.kind is not ResourceKind.CALL:
            return None
        return Transcript.from_wire(self.data.get("transcript"))

    @property
    def is_incoming_call(self) -> bool:
        return self.kind is ResourceKind.CALL and self.change_type == "created" and self.state == "incoming"

    @property
    def call(self) -> CallInfo | None:
        if self.kind is not ResourceKind.CALL:
            return None
        return CallInfo.from_wire(self.data, self.call_id)

    # -- roster and operations -----------------------------------------------------------------------------
    @property
    def participants(self) -> list[Participant]:
        if self.kind is not ResourceKind.PARTICIPANTS or not isinstance(self.resource, list):
            return []
        return [Participant.from_wire(p) for p in self.resource if isinstance(p, dict)]

    @property
    def operation(self) -> Operation | None:
        if self.kind is not ResourceKind.OPERATION:
            return None
        op = Operation.from_wire(self.data)
        if not op.id:
            op = Operation.from_wire({**self.data, "id": self.resource_url.rstrip("/").rsplit("/", 1)[-1]})
        return op

    @property
    def operation_status(self) -> str | None:
        op = self.operation
        return op.status if op is not None else None


def classify(resource_url: str) -> tuple[str, ResourceKind]:
    """(call id, kind) of a resourceUrl such as `/communications/calls/{id}/operations/{op}`.

    Absolute URLs and a leading API version (`/v1.0/communications/...`) are accepted too.
    """
    path = resource_url.split("?", 1)[0]
    if "://" in path:
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    parts = [p for p in path.split("/") if p]
    try:
        at = [p.lower() for p in parts].index("calls")
    except ValueError:
        return "", ResourceKind.OTHER
    rest = parts[at + 1 :]
    if not rest:
        return "", ResourceKind.OTHER
    call_id = rest[0]
    if len(rest) == 1:
        return call_id, ResourceKind.CALL
    sub = rest[1].lower()
    if sub == "participants":
        return call_id, ResourceKind.PARTICIPANTS
    if sub == "operations":
        return call_id, ResourceKind.OPERATION
    return call_id, ResourceKind.OTHER


def parse_notifications(body: Any, *, delivery_id: str = "", tenant_id: str | None = None) -> list[Notification]:
    """The notifications of one POST body; raises NotificationError if it is not a commsNotifications document."""
    if not isinstance(body, dict) or not isinstance(body.get("value"), list):
        raise NotificationError("expected a commsNotifications object with a 'value' array")
    out: list[Notification] = []
    for i, item in enumerate(body["value"]):
        if not isinstance(item, dict):
            raise NotificationError(f"value[{i}] is not an object")
        change, url = item.get("changeType"), item.get("resourceUrl")
        if not isinstance(change, str) or not isinstance(url, str):
            raise NotificationError(f"value[{i}] lacks changeType or resourceUrl")
        call_id, kind = classify(url)
        out.append(
            Notification(
                change_type=change,
                resource_url=url,
                call_id=call_id,
                kind=kind,
                resource=item.get("resourceData"),
                delivery_id=delivery_id,
                tenant_id=tenant_id,
                raw=item,
            )
        )
    return out
