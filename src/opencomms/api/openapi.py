"""Builds the OpenAPI 3.1 document of the implemented surface from the route table and a few schemas.

Schemas describe Graph's JSON as we emit it; they are documentation, the wire readers do the validating.
"""

from __future__ import annotations

from typing import Any

from opencomms import __version__
from opencomms.api.routing import VERSIONS, Kind, Route
from opencomms.domain.calls import CallState

_ID = {"type": "string", "description": "GUID"}
_IDENTITY = {"type": "object", "properties": {"id": _ID, "displayName": {"type": "string"}}}
_IDENTITY_SET = {
    "type": "object",
    "description": "identitySet: application, applicationInstance, user, phone, guest, …",
    "additionalProperties": {"$ref": "#/components/schemas/identity"},
}
_RESULT_INFO = {
    "type": "object",
    "properties": {
        "code": {"type": "integer"},
        "subcode": {"type": "integer"},
        "message": {"type": "string"},
    },
}
_MEDIA_CONFIG = {
    "type": "object",
    "description": "serviceHostedMediaConfig {preFetchMedia} or appHostedMediaConfig {blob}",
    "properties": {
        "@odata.type": {"type": "string"},
        "blob": {"type": "string"},
        "preFetchMedia": {"type": "array"},
    },
}
_PARTICIPANT_INFO = {
    "type": "object",
    "required": ["identity"],
    "properties": {
        "identity": {"$ref": "#/components/schemas/identitySet"},
        "participantId": {"type": "string"},
    },
}
_CALL_STATES = [state.value for state in CallState]

SCHEMAS: dict[str, Any] = {
    "identity": _IDENTITY,
    "identitySet": _IDENTITY_SET,
    "resultInfo": _RESULT_INFO,
    "mediaConfig": _MEDIA_CONFIG,
    "participantInfo": _PARTICIPANT_INFO,
    "invitationParticipantInfo": _PARTICIPANT_INFO,
    "call": {
        "type": "object",
        "required": ["mediaConfig"],
        "properties": {
            "id": _ID,
            "state": {"type": "string", "enum": _CALL_STATES},
            "direction": {"type": "string", "enum": ["incoming", "outgoing"]},
            "callbackUri": {"type": "string", "format": "uri"},
            "callChainId": _ID,
            "myParticipantId": _ID,
            "tenantId": _ID,
            "subject": {"type": "string"},
            "source": {"$ref": "#/components/schemas/participantInfo"},
            "targets": {"type": "array", "items": {"$ref": "#/components/schemas/invitationParticipantInfo"}},
            "requestedModalities": {"type": "array", "items": {"type": "string"}},
            "mediaConfig": {"$ref": "#/components/schemas/mediaConfig"},
            "resultInfo": {"$ref": "#/components/schemas/resultInfo"},
        },
    },
    "answer": {
        "type": "object",
        "required": ["mediaConfig"],
        "properties": {
            "callbackUri": {"type": "string"},
            "mediaConfig": {"$ref": "#/components/schemas/mediaConfig"},
            "acceptedModalities": {"type": "array", "items": {"type": "string"}},
            "participantCapacity": {"type": "integer"},
        },
    },
    "reject": {
        "type": "object",
        "properties": {
            "reason": {"type": "string", "enum": ["none", "busy", "forbidden"]},
            "callbackUri": {"type": "string"},
        },
    },
    "redirect": {
        "type": "object",
        "required": ["targets"],
        "properties": {
            "targets": {"type": "array", "items": {"$ref": "#/components/schemas/invitationParticipantInfo"}},
            "timeout": {"type": "integer", "minimum": 15, "maximum": 90},
            "callbackUri": {"type": "string"},
        },
    },
    "transfer": {
        "type": "object",
        "required": ["transferTarget"],
        "properties": {
            "transferTarget": {"$ref": "#/components/schemas/invitationParticipantInfo"},
            "transferee": {"$ref": "#/components/schemas/participantInfo"},
        },
    },
    "participant": {
        "type": "object",
        "properties": {
            "id": _ID,
            "info": {"$ref": "#/components/schemas/participantInfo"},
            "isMuted": {"type": "boolean"},
            "isInLobby": {"type": "boolean"},
            "mediaStreams": {"type": "array", "items": {"type": "object"}},
        },
    },
    "participantCollection": {
        "type": "object",
        "properties": {"value": {"type": "array", "items": {"$ref": "#/components/schemas/participant"}}},
    },
    "prompt": {
        "type": "object",
        "description": "#microsoft.graph.mediaPrompt {mediaInfo: {uri, resourceId}} or, as an opencomms extension, "
        "#opencomms.textPrompt {text, voice, language} spoken by the node's text-to-speech engine",
        "properties": {
            "@odata.type": {"type": "string", "enum": ["#microsoft.graph.mediaPrompt", "#opencomms.textPrompt"]},
            "mediaInfo": {
                "type": "object",
                "properties": {"uri": {"type": "string", "format": "uri"}, "resourceId": {"type": "string"}},
            },
            "text": {"type": "string", "maxLength": 2000},
            "voice": {"type": "string"},
            "language": {"type": "string"},
        },
    },
    "playPrompt": {
        "type": "object",
        "required": ["prompts"],
        "properties": {
            "prompts": {
                "type": "array",
                "minItems": 1,
                "maxItems": 20,
                "items": {"$ref": "#/components/schemas/prompt"},
            },
            "clientContext": {"type": "string", "maxLength": 256},
        },
    },
    "recordResponse": {
        "type": "object",
        "properties": {
            "prompts": {"type": "array", "maxItems": 1, "items": {"$ref": "#/components/schemas/prompt"}},
            "bargeInAllowed": {"type": "boolean"},
            "initialSilenceTimeoutInSeconds": {"type": "integer", "minimum": 1, "maximum": 120},
            "maxSilenceTimeoutInSeconds": {"type": "integer", "minimum": 1, "maximum": 120},
            "maxRecordDurationInSeconds": {"type": "integer", "minimum": 1, "maximum": 120},
            "playBeep": {"type": "boolean"},
            "stopTones": {"type": "array", "items": {"type": "string"}},
            "clientContext": {"type": "string", "maxLength": 256},
        },
    },
    "sendDtmfTones": {
        "type": "object",
        "required": ["tones"],
        "properties": {
            "tones": {"type": "array", "items": {"type": "string"}},
            "delayBetweenTonesMs": {"type": "integer"},
            "clientContext": {"type": "string", "maxLength": 256},
        },
    },
    "clientContext": {
        "type": "object",
        "properties": {"clientContext": {"type": "string", "maxLength": 256}},
    },
    "commsOperation": {
        "type": "object",
        "properties": {
            "id": _ID,
            "status": {"type": "string"},
            "clientContext": {"type": "string"},
            "resultInfo": {"$ref": "#/components/schemas/resultInfo"},
            "recordingLocation": {"type": "string"},
            "recordingAccessToken": {"type": "string"},
            "completionReason": {"type": "string"},
        },
    },
    "error": {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "innerError": {
                        "type": "object",
                        "properties": {
                            "request-id": _ID,
                            "date": {"type": "string"},
                            "client-request-id": _ID,
                        },
                    },
                },
            }
        },
    },
}

_ERRORS = {
    "400": "Malformed body, invalid value or an action not allowed in the call's state",
    "401": "Missing or invalid access token",
    "403": "The application lacks the permission, or a quota is used up (quotaLimitReached)",
    "404": "Unknown (or another application's) resource",
    "413": "Body too large",
    "429": "Throttled or past a rate quota; see Retry-After",
}


def _operation(route: Route, version: str) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": route.summary,
        "operationId": f"{route.method.lower()}_{version}_{route.template}",
    }
    params = [s[1:-1] for s in route.segments if s.startswith("{")]
    if params:
        op["parameters"] = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params]
    if route.permission:
        op["description"] = f"Application permission: {route.permission}"
    if route.request_schema:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{route.request_schema}"}}},
        }
    ok: dict[str, Any] = {"description": "Success"}
    if route.response_schema:
        ok["content"] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{route.response_schema}"}}}
    responses: dict[str, Any] = {str(route.response_status): ok}
    if route.kind is Kind.GRAPH:
        for status, text in _ERRORS.items():
            responses[status] = {
                "description": text,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/error"}}},
            }
        op["security"] = [{"bearer": []}]
    op["responses"] = responses
    return op


def document(routes: list[Route], server_url: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        versions = VERSIONS if route.kind is Kind.GRAPH else ("",)
        for version in versions:
            path = f"/{version}/{route.template}" if version else f"/{route.template}"
            paths.setdefault(path, {})[route.method.lower()] = _operation(route, version or "root")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "opencomms",
            "version": __version__,
            "description": "Cloud communications API compatible with Microsoft Graph v1.0 (calls), "
            "plus a client-credentials token service. Extensions beyond Graph are typed #opencomms.*.",
        },
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }
