"""JSON Schemas (2020-12, as OpenAPI 3.1 uses) of the request bodies, mirroring the readers in `wire/` exactly.

Each constant below is built from the readers' own tables (modalities, reasons, tones, limits), so that a body
valid against a schema is a body the reader accepts: same required members, same types and bounds, `null`
accepted wherever the reader treats it as absent, unknown members allowed (Graph's types are open and the
readers ignore or echo what they do not know). Where a reader is more tolerant than a schema can say (enum and
`@odata.type` case, numbers sent as digit strings) the schema documents the canonical form and says so.
`tests/security/test_openapi_exact.py` sends every schema's examples to a node and checks none is refused.
"""

from __future__ import annotations

from typing import Any

from opencomms.api import meeting_schemas, stream_schemas
from opencomms.wire import apphosted
from opencomms.wire import calls as wc
from opencomms.wire import media as wm

Schema = dict[str, Any]

CASE_NOTE = "Enum values and @odata.type names are matched case-insensitively; the canonical form is shown."


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    """The reader treats null as absent."""
    if set(schema) == {"$ref"} or "type" not in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    kind = schema["type"]
    return {**schema, "type": [*(kind if isinstance(kind, list) else [kind]), "null"]}


def text(max_len: int = 4096, **extra: Any) -> Schema:
    return nullable({"type": "string", "maxLength": max_len, **extra})


def odata(*names: str) -> Schema:
    return nullable({"type": "string", "enum": list(names)})


def graph_types(*short: str) -> Schema:
    return odata(*(f"#microsoft.graph.{name}" for name in short))


URL: Schema = {
    "type": "string",
    "format": "uri",
    "maxLength": 2048,
    "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9._~-]",
    "description": "An absolute http(s) URL with a host.",
}
BOOL = nullable({"type": "boolean"})


def integer(lo: int, hi: int) -> Schema:
    return nullable({"type": "integer", "minimum": lo, "maximum": hi, "description": "Digit strings are accepted too."})


IDENTITY: Schema = {
    "type": "object",
    "properties": {
        "@odata.type": graph_types(*wc._IDENTITY_TYPES),
        "id": text(256),
        "displayName": text(256),
    },
}
IDENTITY_SET: Schema = {
    "type": "object",
    "description": f"At least one of {', '.join(wc.IDENTITY_KEYS)} must be given (not null). {CASE_NOTE}",
    "properties": {
        "@odata.type": graph_types("identitySet", "communicationsIdentitySet"),
        "endpointType": text(),
        **{key: nullable(ref("identity")) for key in wc.IDENTITY_KEYS},
    },
    "anyOf": [{"required": [key], "properties": {key: {"type": "object"}}} for key in wc.IDENTITY_KEYS],
}
PARTICIPANT_INFO: Schema = {
    "type": "object",
    "required": ["identity"],
    "properties": {
        "@odata.type": graph_types("participantInfo"),
        "identity": ref("identitySet"),
        **{key: text(256) for key in ("participantId", "countryCode", "endpointType", "languageId", "region")},
    },
}
INVITATION_PARTICIPANT_INFO: Schema = {
    "type": "object",
    "required": ["identity"],
    "properties": {
        "@odata.type": graph_types("invitationParticipantInfo"),
        "identity": ref("identitySet"),
        "hidden": BOOL,
        "removeFromDefaultAudioRoutingGroup": BOOL,
        "participantId": text(256),
        "replacesCallId": text(256),
    },
}
MEDIA_INFO: Schema = {
    "type": "object",
    "required": ["uri"],
    "properties": {"@odata.type": graph_types("mediaInfo"), "uri": URL, "resourceId": text(256)},
}
BLOB: Schema = {
    "type": "object",
    "required": ["v", "url", "key", "secret"],
    "properties": {
        "v": {"const": apphosted.BLOB_VERSION},
        "url": {"type": "string", "pattern": "^wss?://", "maxLength": apphosted.MAX_URL_CHARS},
        "key": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,128}$"},
        "secret": {"type": "string", "pattern": "^[A-Za-z0-9_-]{22,256}$"},
    },
}
SERVICE_HOSTED: Schema = {
    "type": "object",
    "title": "serviceHostedMediaConfig",
    "properties": {
        "@odata.type": {"type": "string", "enum": ["#microsoft.graph.serviceHostedMediaConfig"]},
        "preFetchMedia": nullable({"type": "array", "maxItems": 100, "items": ref("mediaInfo")}),
    },
    "description": "Without @odata.type, a mediaConfig with a 'blob' member is app-hosted.",
    "if": {"not": {"required": ["@odata.type"]}},
    "then": {"not": {"required": ["blob"]}},
}
APP_HOSTED: Schema = {
    "type": "object",
    "title": "appHostedMediaConfig",
    "required": ["blob"],
    "properties": {
        "@odata.type": {"type": "string", "enum": ["#microsoft.graph.appHostedMediaConfig"]},
        "blob": {
            "type": "string",
            "minLength": 1,
            "maxLength": apphosted.MAX_BLOB_CHARS,
            "contentMediaType": "application/json",
            "contentSchema": BLOB,
            "description": "Made by the SDK's LocalMediaSession (see wire/apphosted.py). Needs Calls.AccessMedia.All.",
        },
    },
}
MEDIA_CONFIG: Schema = {"anyOf": [ref("serviceHostedMediaConfig"), ref("appHostedMediaConfig")]}


def call_options(kind: str) -> Schema:
    return nullable(
        {
            "type": "object",
            "properties": {
                "@odata.type": graph_types("outgoingCallOptions", "incomingCallOptions"),
                **{flag: BOOL for flag in wc._CALL_OPTION_FLAGS},
            },
            "description": f"#microsoft.graph.{kind} when @odata.type is absent.",
        }
    )


def modalities() -> Schema:
    items = {"type": "string", "enum": list(wc.MODALITIES)}
    return nullable({"type": "array", "minItems": 1, "maxItems": 8, "items": items, "description": CASE_NOTE})


TARGETS: Schema = {"type": "array", "minItems": 1, "maxItems": 25, "items": ref("invitationParticipantInfo")}
CLIENT_CONTEXT = text(256)

CHAT_INFO: Schema = {
    "type": "object",
    "required": ["threadId"],
    "properties": {
        "@odata.type": graph_types("chatInfo"),
        "threadId": {"type": "string", "maxLength": 512},
        "messageId": text(256),
        "replyChainMessageId": text(256),
    },
}
ORGANIZER_MEETING_INFO: Schema = {
    "type": "object",
    "required": ["organizer"],
    "properties": {
        "@odata.type": graph_types("organizerMeetingInfo"),
        "organizer": ref("identitySet"),
        "allowConversationWithoutHost": BOOL,
    },
}
JOIN_MEETING_ID_MEETING_INFO: Schema = {
    "type": "object",
    "required": ["joinMeetingId"],
    "properties": {
        "@odata.type": graph_types("joinMeetingIdMeetingInfo"),
        "joinMeetingId": {"type": "string", "minLength": 1, "maxLength": 64},
        "passcode": text(64),
    },
}
_JOIN = {"targets": {"maxItems": 0}}
CREATE_CALL: Schema = {
    "type": "object",
    "required": ["mediaConfig"],
    "description": "'callbackUri' is required when the application has no registered calling webhook. "
    "A call names 'targets'; a meeting join names no targets but 'meetingInfo': joinMeetingIdMeetingInfo, or "
    "organizerMeetingInfo with 'chatInfo' (Calls.JoinGroupCall.All joins as a member, "
    "Calls.JoinGroupCallAsGuest.All as a guest subject to the lobby). " + CASE_NOTE,
    "anyOf": [
        {"required": ["targets"], "properties": {"meetingInfo": {"type": "null"}, "chatInfo": {"type": "null"}}},
        {
            "required": ["meetingInfo"],
            "properties": {**_JOIN, "meetingInfo": {"type": "object", "required": ["joinMeetingId"]}},
        },
        {
            "required": ["meetingInfo", "chatInfo"],
            "properties": {
                **_JOIN,
                "meetingInfo": {"type": "object", "required": ["organizer"]},
                "chatInfo": {"type": "object"},
            },
        },
    ],
    "properties": {
        "@odata.type": graph_types("call"),
        "callbackUri": nullable(URL),
        "mediaConfig": ref("mediaConfig"),
        "targets": TARGETS,
        "requestedModalities": modalities(),
        "source": nullable(ref("participantInfo")),
        "tenantId": text(64),
        "subject": text(1024),
        "callOptions": call_options("outgoingCallOptions"),
        "chatInfo": nullable(ref("chatInfo")),
        "meetingInfo": nullable({"oneOf": [ref("organizerMeetingInfo"), ref("joinMeetingIdMeetingInfo")]}),
    },
    "examples": [
        {
            "@odata.type": "#microsoft.graph.call",
            "targets": [
                {
                    "@odata.type": "#microsoft.graph.invitationParticipantInfo",
                    "identity": {"application": {"id": "2a4b2ea6-8e1c-4c4b-9b1e-1a2b3c4d5e6f"}},
                }
            ],
            "requestedModalities": ["audio"],
            "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
        },
        {
            "@odata.type": "#microsoft.graph.call",
            "requestedModalities": ["audio"],
            "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
            "meetingInfo": {
                "@odata.type": "#microsoft.graph.joinMeetingIdMeetingInfo",
                "joinMeetingId": "1234567890",
                "passcode": "aB3xYz",
            },
        },
        {
            "@odata.type": "#microsoft.graph.call",
            "requestedModalities": ["audio"],
            "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
            "chatInfo": {"@odata.type": "#microsoft.graph.chatInfo", "threadId": "19:meeting_M2Iz@thread.v2"},
            "meetingInfo": {
                "@odata.type": "#microsoft.graph.organizerMeetingInfo",
                "organizer": {"user": {"id": "550fae72-d251-43ec-868c-373732c2704f"}},
            },
        },
    ],
}
ANSWER: Schema = {
    "type": "object",
    "required": ["mediaConfig"],
    "description": CASE_NOTE,
    "properties": {
        "callbackUri": nullable(URL),
        "mediaConfig": ref("mediaConfig"),
        "acceptedModalities": modalities(),
        "callOptions": call_options("incomingCallOptions"),
        "participantCapacity": integer(0, 1000),
    },
    "examples": [{"mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}}],
}
REJECT: Schema = {
    "type": "object",
    "description": "No body means reason 'none'. " + CASE_NOTE,
    "properties": {
        "reason": nullable({"type": "string", "enum": list(wc.REJECT_REASONS)}),
        "callbackUri": nullable(URL),
    },
    "examples": [{"reason": "busy"}],
}
REDIRECT: Schema = {
    "type": "object",
    "required": ["targets"],
    "properties": {"targets": TARGETS, "timeout": integer(15, 90), "callbackUri": nullable(URL)},
    "examples": [{"targets": [{"identity": {"phone": {"id": "+12345678901"}}}], "timeout": 30}],
}
INVITE_PARTICIPANTS: Schema = {
    "type": "object",
    "required": ["participants"],
    "description": "At most 5 participants. A participant with 'replacesCallId' (invited alone, into a meeting) "
    "is the far party of that peer-to-peer call of the same application, moved in with its media.",
    "properties": {
        "participants": {"type": "array", "minItems": 1, "maxItems": 5, "items": ref("invitationParticipantInfo")},
        "clientContext": CLIENT_CONTEXT,
    },
    "examples": [{"participants": [{"identity": {"phone": {"id": "+12345678901"}}}], "clientContext": "c"}],
}
TRANSFER: Schema = {
    "type": "object",
    "required": ["transferTarget"],
    "description": "Consultative transfer (transferTarget.replacesCallId) is not supported.",
    "properties": {
        "transferTarget": {
            "allOf": [
                ref("invitationParticipantInfo"),
                {"properties": {"replacesCallId": {"enum": [None, ""]}}},
            ]
        },
        "transferee": nullable(ref("participantInfo")),
    },
    "examples": [{"transferTarget": {"identity": {"user": {"id": "550fae72-d251-43ec-868c-373732c2704f"}}}}],
}
ANY_OBJECT: Schema = {"type": "object", "description": "Any JSON object (or no body).", "examples": [{}]}

MEDIA_PROMPT: Schema = {
    "type": "object",
    "title": "mediaPrompt",
    "required": ["mediaInfo"],
    "properties": {"@odata.type": {"type": "string", "enum": [wm.MEDIA_PROMPT]}, "mediaInfo": ref("mediaInfo")},
    "description": "The default kind when @odata.type is absent.",
}
VOICE = text(40, pattern="^[A-Za-z0-9_+-]+$")
TEXT_PROMPT: Schema = {
    "type": "object",
    "title": "textPrompt",
    "required": ["text"],
    "description": "opencomms extension: spoken by the node's text-to-speech engine (piper's natural voice for "
    "English by default, espeak-ng for other languages and espeak variants such as 'en-us+f3'). Without "
    "@odata.type, a prompt with 'text' and no 'mediaInfo' is a textPrompt.",
    "properties": {
        "@odata.type": {"type": "string", "enum": [wm.TEXT_PROMPT]},
        "text": {"type": "string", "minLength": 1, "maxLength": wm.MAX_TEXT, "pattern": "\\S"},
        "voice": {
            **VOICE,
            "description": "opencomms: a piper voice (its model's name, e.g. 'en_US-joe-medium'), an English tag "
            "('en-us': the node's English voice) or an espeak-ng voice ('de', 'en-us+f3').",
        },
        "language": VOICE,
        "speed": nullable(
            {
                "type": "number",
                "minimum": wm.MIN_SPEED,
                "maximum": wm.MAX_SPEED,
                "description": "opencomms: speaking rate relative to the voice's own pace (default 1).",
            }
        ),
    },
    "if": {"not": {"required": ["@odata.type"]}},
    "then": {"not": {"required": ["mediaInfo"]}},
}
PROMPT: Schema = {"anyOf": [ref("mediaPrompt"), ref("textPrompt")]}
PLAY_PROMPT: Schema = {
    "type": "object",
    "required": ["prompts"],
    "properties": {
        "prompts": {"type": "array", "minItems": 1, "maxItems": wm.MAX_PROMPTS, "items": ref("prompt")},
        "clientContext": CLIENT_CONTEXT,
    },
    "examples": [
        {
            "clientContext": "greeting",
            "prompts": [{"@odata.type": wm.TEXT_PROMPT, "text": "Hello", "voice": "en-us"}],
        }
    ],
}
STOP_TONES = sorted(wm.STOP_TONE_KEYS | {k.lower() for k in wm.STOP_TONE_KEYS})
RECORD_RESPONSE: Schema = {
    "type": "object",
    "description": "No body means all defaults (5 s timeouts, beep).",
    "properties": {
        "prompts": nullable({"type": "array", "maxItems": 1, "items": ref("prompt")}),
        "bargeInAllowed": BOOL,
        "initialSilenceTimeoutInSeconds": integer(1, 120),
        "maxSilenceTimeoutInSeconds": integer(1, 120),
        "maxRecordDurationInSeconds": integer(1, 120),
        "playBeep": BOOL,
        "stopTones": nullable({"type": "array", "maxItems": 16, "items": {"type": "string", "enum": STOP_TONES}}),
        "clientContext": CLIENT_CONTEXT,
    },
    "examples": [{"maxRecordDurationInSeconds": 10, "playBeep": True, "stopTones": ["#"]}],
}
SEND_DTMF_TONES: Schema = {
    "type": "object",
    "required": ["tones"],
    "description": CASE_NOTE,
    "properties": {
        "tones": {"type": "array", "minItems": 1, "maxItems": 64, "items": {"type": "string", "enum": list(wm.TONES)}},
        "delayBetweenTonesMs": integer(0, 5000),
        "clientContext": CLIENT_CONTEXT,
    },
    "examples": [{"tones": ["tone1", "tone2", "pound"], "delayBetweenTonesMs": 100}],
}
CLIENT_CONTEXT_ONLY: Schema = {
    "type": "object",
    "description": "No body is accepted too.",
    "properties": {"clientContext": CLIENT_CONTEXT},
    "examples": [{"clientContext": "ctx"}, {}],
}
START_HOLD_MUSIC: Schema = {
    "type": "object",
    "description": "No body is accepted too. " + CASE_NOTE,
    "properties": {"customPrompt": nullable(ref("prompt")), "clientContext": CLIENT_CONTEXT},
    "examples": [{"clientContext": "ctx"}, {}],
}
UPDATE_RECORDING_STATUS: Schema = {
    "type": "object",
    "required": ["status"],
    "description": CASE_NOTE,
    "properties": {
        "status": {"type": "string", "enum": ["notRecording", "recording", "failed"]},
        "clientContext": CLIENT_CONTEXT,
    },
    "examples": [{"status": "recording", "clientContext": "ctx"}],
}
TOKEN_REQUEST: Schema = {
    "type": "object",
    "required": ["grant_type"],
    "description": "client_id and client_secret go in the form, or in an 'Authorization: Basic' header (public "
    "clients send no secret). client_credentials needs scope; authorization_code needs code, redirect_uri and "
    "code_verifier; refresh_token needs refresh_token; the device_code grant needs device_code.",
    "properties": {
        "grant_type": {
            "enum": [
                "client_credentials",
                "authorization_code",
                "refresh_token",
                "urn:ietf:params:oauth:grant-type:device_code",
            ]
        },
        "scope": {"type": "string", "description": "<audience>/.default, or delegated scopes"},
        "client_id": {"type": "string", "maxLength": 64},
        "client_secret": {"type": "string"},
        "code": {"type": "string"},
        "redirect_uri": {"type": "string"},
        "code_verifier": {"type": "string"},
        "refresh_token": {"type": "string"},
        "device_code": {"type": "string"},
    },
}

_NOTIFICATION_URL: Schema = {"type": "string", "maxLength": 2048, "pattern": "^[hH][tT][tT][pP][sS]?://"}

REQUEST_SCHEMAS: dict[str, Schema] = {
    "identity": IDENTITY,
    "identitySet": IDENTITY_SET,
    "participantInfo": PARTICIPANT_INFO,
    "invitationParticipantInfo": INVITATION_PARTICIPANT_INFO,
    "mediaInfo": MEDIA_INFO,
    "serviceHostedMediaConfig": SERVICE_HOSTED,
    "appHostedMediaConfig": APP_HOSTED,
    "mediaConfig": MEDIA_CONFIG,
    "chatInfo": CHAT_INFO,
    "organizerMeetingInfo": ORGANIZER_MEETING_INFO,
    "joinMeetingIdMeetingInfo": JOIN_MEETING_ID_MEETING_INFO,
    "createCall": CREATE_CALL,
    "answer": ANSWER,
    "reject": REJECT,
    "redirect": REDIRECT,
    "transfer": TRANSFER,
    "inviteParticipants": INVITE_PARTICIPANTS,
    "anyObject": ANY_OBJECT,
    "mediaPrompt": MEDIA_PROMPT,
    "textPrompt": TEXT_PROMPT,
    "prompt": PROMPT,
    "playPrompt": PLAY_PROMPT,
    "recordResponse": RECORD_RESPONSE,
    "sendDtmfTones": SEND_DTMF_TONES,
    "clientContext": CLIENT_CONTEXT_ONLY,
    "startHoldMusic": START_HOLD_MUSIC,
    "updateRecordingStatus": UPDATE_RECORDING_STATUS,
    "tokenRequest": TOKEN_REQUEST,
    **meeting_schemas.REQUEST_SCHEMAS,
    **stream_schemas.REQUEST_SCHEMAS,
    "subscriptionCreate": {
        "type": "object",
        "required": ["changeType", "notificationUrl", "resource", "expirationDateTime"],
        "properties": {
            "changeType": {"const": "created"},
            "notificationUrl": _NOTIFICATION_URL,
            "resource": {
                "enum": [
                    f"{slash}communications/{name}"
                    for name in ("callRecords", "onlineMeetings/getAllTranscripts", "onlineMeetings/getAllRecordings")
                    for slash in ("/", "")
                ]
            },
            "expirationDateTime": {
                "type": "string",
                "minLength": 1,
                "format": "date-time",
                "description": "at most 4230 min ahead",
            },
            "clientState": text(128),
        },
        "examples": [
            {
                "changeType": "created",
                "notificationUrl": "https://bot.example/notify",
                "resource": "/communications/callRecords",
                "expirationDateTime": "2030-01-01T00:00:00Z",
                "clientState": "secret",
            }
        ],
    },
    "subscriptionUpdate": {
        "type": "object",
        "properties": {
            "expirationDateTime": {"type": "string", "minLength": 1, "format": "date-time"},
            "notificationUrl": _NOTIFICATION_URL,
        },
        "examples": [{"expirationDateTime": "2030-01-01T00:00:00Z"}],
    },
}
