"""The subscription resource as Graph has it, and its rules: what may be subscribed, for how long, and the body of
a change notification. Pure: no I/O, no clock (times are handed in).

Only `created` notifications exist, on `/communications/callRecords` and on the tenant's meeting transcripts and
recordings (`/communications/onlineMeetings/getAllTranscripts`, `.../getAllRecordings`, as in Graph), each needing
its read permission (`RESOURCES`), with Graph's maximum lifetime for call records: 4230 minutes. `clientState` (up
to 128 characters) comes back in every notification so the receiver can tell them from forgeries.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from opencomms.domain.errors import BadRequest

__all__ = [
    "ALL_RECORDINGS",
    "ALL_TRANSCRIPTS",
    "CALL_RECORDS",
    "MAX_CLIENT_STATE",
    "MAX_LIFETIME_MINUTES",
    "RESOURCES",
    "Subscription",
    "notification",
    "parse_create",
    "parse_update",
    "read_create",
    "read_update",
]

CALL_RECORDS = "communications/callRecords"
ALL_TRANSCRIPTS = "communications/onlineMeetings/getAllTranscripts"
ALL_RECORDINGS = "communications/onlineMeetings/getAllRecordings"
RESOURCES = {
    CALL_RECORDS: "CallRecords.Read.All",
    ALL_TRANSCRIPTS: "OnlineMeetingTranscript.Read.All",
    ALL_RECORDINGS: "OnlineMeetingRecording.Read.All",
}
"""Every resource one may subscribe to, and the application permission it needs."""
MAX_LIFETIME_MINUTES = 4230
MAX_CLIENT_STATE = 128
KIND = "subscription"
JsonObj = dict[str, Any]


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _epoch(value: Any, name: str) -> float:
    if not isinstance(value, str):
        raise BadRequest(f"'{name}' must be an ISO 8601 date-time string.")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"'{name}' is not an ISO 8601 date-time: {value!r}.") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _expiration(value: Any, now: float) -> float:
    at = _epoch(value, "expirationDateTime")
    if at <= now:
        raise BadRequest("Subscription expiration must be in the future.")
    if at > now + MAX_LIFETIME_MINUTES * 60:
        raise BadRequest(f"Subscription expiration can only be {MAX_LIFETIME_MINUTES} minutes in the future.")
    return at


def _text(body: JsonObj, name: str, *, required: bool, limit: int = 2048) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise BadRequest(f"'{name}' is required.")
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise BadRequest(f"'{name}' must be a non-empty string.")
    if len(value) > limit:
        raise BadRequest(f"'{name}' is longer than {limit} characters.")
    return value


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    tenant_id: str
    app_id: str
    resource: str
    change_type: str
    notification_url: str
    expires_at: float
    client_state: str | None = None

    def graph(self) -> JsonObj:
        """The Graph JSON of this subscription."""
        return {
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.app_id,
            "changeType": self.change_type,
            "clientState": self.client_state,
            "notificationUrl": self.notification_url,
            "expirationDateTime": iso(self.expires_at),
            "creatorId": self.app_id,
            "latestSupportedTlsVersion": "v1_2",
            "includeResourceData": False,
            "lifecycleNotificationUrl": None,
            "encryptionCertificate": None,
            "encryptionCertificateId": None,
            "notificationUrlAppId": None,
        }

    def to_doc(self) -> JsonObj:
        return {
            "id": self.id,
            "tenantId": self.tenant_id,
            "appId": self.app_id,
            "resource": self.resource,
            "changeType": self.change_type,
            "notificationUrl": self.notification_url,
            "expiresAt": self.expires_at,
            "clientState": self.client_state,
        }

    @classmethod
    def from_doc(cls, doc: JsonObj) -> Subscription:
        return cls(
            doc["id"],
            doc["tenantId"],
            doc["appId"],
            doc["resource"],
            doc["changeType"],
            doc["notificationUrl"],
            float(doc["expiresAt"]),
            doc.get("clientState"),
        )


def _url(body: JsonObj) -> str:
    url = _text(body, "notificationUrl", required=True)
    assert url is not None
    if not url.lower().startswith(("https://", "http://")):
        raise BadRequest("'notificationUrl' must be an http or https URL.")
    return url


def read_create(body: Any) -> JsonObj:
    """The shape of a POST /subscriptions body (the OpenAPI schema mirrors it); times are judged by parse_create."""
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object (a subscription).")
    resource = _text(body, "resource", required=True)
    assert resource is not None
    known = {r.lower(): r for r in RESOURCES}.get(resource.strip("/").lower())
    if known is None:
        supported = ", ".join(f"'/{r}'" for r in RESOURCES)
        raise BadRequest(f"Resource '{resource}' is not supported: subscribe to one of {supported}.")
    change = (_text(body, "changeType", required=True) or "").strip()
    if [c.strip() for c in change.split(",")] != ["created"]:
        raise BadRequest(f"changeType '{change}' is not supported for '/{known}': use 'created'.")
    expires = _text(body, "expirationDateTime", required=True)
    client_state = _text(body, "clientState", required=False, limit=MAX_CLIENT_STATE)
    return {"url": _url(body), "clientState": client_state, "expirationDateTime": expires, "resource": known}


def parse_create(body: Any, *, sub_id: str, tenant_id: str, app_id: str, now: float) -> Subscription:
    """A new subscription from a POST body; BadRequest naming what is wrong."""
    read = read_create(body)
    expires = _expiration(read["expirationDateTime"], now)
    return Subscription(
        sub_id, tenant_id, app_id, "/" + read["resource"], "created", read["url"], expires, read["clientState"]
    )


def read_update(body: Any) -> JsonObj:
    """The shape of a PATCH body: the members that change (others are ignored, as Graph ignores read-only ones)."""
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    out: JsonObj = {}
    if "expirationDateTime" in body:
        out["expirationDateTime"] = _text(body, "expirationDateTime", required=True)
    if "notificationUrl" in body:
        out["url"] = _url(body)
    return out


def parse_update(sub: Subscription, body: Any, now: float) -> Subscription:
    """A renewal (PATCH): `expirationDateTime` (and `notificationUrl`, re-validated by the caller) change."""
    read = read_update(body)
    out = sub
    if "expirationDateTime" in read:
        out = replace(out, expires_at=_expiration(read["expirationDateTime"], now))
    if "url" in read:
        out = replace(out, notification_url=read["url"])
    return out


def notification(
    sub: Subscription, record_id: str, resource: str | None = None, odata_type: str = "#microsoft.graph.callRecord"
) -> JsonObj:
    """The change-notification collection Graph POSTs when call record `record_id` (or the resource at `resource`,
    of `odata_type`: a meeting's transcript or recording) is created."""
    resource = resource or f"{CALL_RECORDS}/{record_id}"
    return {
        "value": [
            {
                "subscriptionId": sub.id,
                "clientState": sub.client_state,
                "changeType": "created",
                "resource": resource,
                "subscriptionExpirationDateTime": iso(sub.expires_at),
                "tenantId": sub.tenant_id,
                "resourceData": {
                    "oDataType": odata_type,
                    "@odata.type": odata_type,
                    "@odata.id": resource,
                    "id": record_id,
                },
            }
        ]
    }
