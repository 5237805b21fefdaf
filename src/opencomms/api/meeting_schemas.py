"""OpenAPI schemas of the online-meeting and sign-in routes: request bodies mirroring wire/meetings.py and the
sign-in forms, and the JSON the node answers (merged into api/schemas.py and api/openapi.py)."""

from __future__ import annotations

from typing import Any

from opencomms.domain.meetings import LobbyScope, MeetingRole
from opencomms.wire.meetings import ECHOED, READ_ONLY

Schema = dict[str, Any]


def _nullable(schema: Schema) -> Schema:
    kind = schema["type"]
    return {**schema, "type": [*(kind if isinstance(kind, list) else [kind]), "null"]}


_TEXT = _nullable({"type": "string", "maxLength": 1024})
_BOOL = _nullable({"type": "boolean"})
_TIME = _nullable(
    {
        "type": "string",
        "maxLength": 64,
        "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?"
        r"([Zz]|[+-][0-9]{2}:[0-9]{2})?$",
        "description": "ISO 8601 date-time; no offset means UTC. endDateTime must be later than startDateTime.",
    }
)
_ATTENDEE: Schema = {
    "type": "object",
    "anyOf": [
        {"required": ["upn"], "properties": {"upn": {"type": "string"}}},
        {
            "required": ["identity"],
            "properties": {
                "identity": {
                    "type": "object",
                    "required": ["user"],
                    "properties": {
                        "user": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}
                    },
                }
            },
        },
    ],
    "properties": {
        "upn": _nullable({"type": "string", "maxLength": 256}),
        "role": _nullable({"type": "string", "enum": [r.value for r in MeetingRole]}),
        "identity": _nullable(
            {
                "type": "object",
                "properties": {
                    "user": _nullable(
                        {
                            "type": "object",
                            "properties": {
                                "id": _nullable({"type": "string", "maxLength": 64}),
                                "displayName": _nullable({"type": "string", "maxLength": 256}),
                            },
                        }
                    )
                },
            }
        ),
    },
}
_PROPERTIES: Schema = {
    "subject": _TEXT,
    "startDateTime": _TIME,
    "endDateTime": _TIME,
    "externalId": _nullable({"type": "string", "maxLength": 256}),
    "isEntryExitAnnounced": _BOOL,
    "recordAutomatically": _BOOL,
    "joinMeetingIdSettings": _nullable(
        {
            "type": "object",
            "description": "Only isPasscodeRequired may be given: the id and passcode are generated.",
            "properties": {
                "isPasscodeRequired": _BOOL,
                "joinMeetingId": {"type": "null"},
                "passcode": {"type": "null"},
            },
        }
    ),
    "lobbyBypassSettings": _nullable(
        {
            "type": "object",
            "properties": {
                "scope": _nullable({"type": "string", "enum": [s.value for s in LobbyScope]}),
                "isDialInBypassEnabled": _BOOL,
            },
        }
    ),
    "participants": _nullable(
        {
            "type": "object",
            "properties": {"attendees": _nullable({"type": "array", "maxItems": 1000, "items": _ATTENDEE})},
        }
    ),
    **{name: {"description": "Kept and echoed back."} for name in ECHOED},
}
_EXAMPLE = {
    "subject": "Weekly sync",
    "startDateTime": "2030-07-12T14:30:34.2444915-07:00",
    "endDateTime": "2030-07-12T15:00:34.2464912-07:00",
    "joinMeetingIdSettings": {"isPasscodeRequired": True},
    "lobbyBypassSettings": {"scope": "organization", "isDialInBypassEnabled": True},
}
_CASE = "Enum values are matched case-insensitively; unknown members are ignored."

REQUEST_SCHEMAS: dict[str, Schema] = {
    "onlineMeeting": {
        "type": "object",
        "description": _CASE,
        "properties": _PROPERTIES,
        "examples": [_EXAMPLE, {}],
    },
    "createOrGetOnlineMeeting": {
        "type": "object",
        "description": _CASE,
        "required": ["externalId"],
        "properties": {**_PROPERTIES, "externalId": {"type": "string", "minLength": 1, "maxLength": 256}},
        "examples": [{**_EXAMPLE, "externalId": "7eb8263f-d0e0-4149-bb1c-1f0476083c56"}],
    },
    "onlineMeetingPatch": {
        "type": "object",
        "description": f"{_CASE} These members cannot be changed: {', '.join(READ_ONLY)}.",
        "properties": {k: v for k, v in _PROPERTIES.items() if k not in READ_ONLY},
        "not": {"anyOf": [{"required": [k]} for k in READ_ONLY]},
        "examples": [{"subject": "Renamed", "lobbyBypassSettings": {"scope": "everyone"}}],
    },
    "signInForm": {
        "type": "object",
        "description": "The sign-in page's form (its csrf value must also come back in the cookie the page set).",
        "properties": {
            "txn": {"type": "string"},
            "csrf": {"type": "string"},
            "user_code": {"type": "string", "description": "Device login only"},
            "username": {"type": "string"},
            "password": {"type": "string"},
        },
    },
    "deviceCodeRequest": {
        "type": "object",
        "required": ["client_id", "scope"],
        "properties": {"client_id": {"type": "string"}, "scope": {"type": "string"}},
    },
}

_OBJ = {"type": "object"}
RESPONSE_SCHEMAS: dict[str, Schema] = {
    "onlineMeetingResource": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "joinWebUrl": {"type": "string"},
            "subject": {"type": "string"},
            "startDateTime": {"type": "string"},
            "endDateTime": {"type": "string"},
            "creationDateTime": {"type": "string"},
            "externalId": {"type": ["string", "null"]},
            "chatInfo": _OBJ,
            "joinMeetingIdSettings": _OBJ,
            "audioConferencing": _OBJ,
            "lobbyBypassSettings": _OBJ,
            "participants": _OBJ,
            "isEntryExitAnnounced": {"type": "boolean"},
            "recordAutomatically": {"type": "boolean"},
        },
    },
    "onlineMeetingCollection": {
        "type": "object",
        "properties": {"value": {"type": "array", "items": {"$ref": "#/components/schemas/onlineMeetingResource"}}},
    },
    "deviceCodeResponse": {
        "type": "object",
        "required": ["user_code", "device_code", "verification_uri", "expires_in", "interval"],
        "properties": {
            "user_code": {"type": "string"},
            "device_code": {"type": "string"},
            "verification_uri": {"type": "string"},
            "expires_in": {"type": "integer"},
            "interval": {"type": "integer"},
            "message": {"type": "string"},
        },
    },
}
