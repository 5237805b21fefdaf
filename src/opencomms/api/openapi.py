"""Builds the OpenAPI 3.1 document from the very route table the server dispatches on (api/routing.py).

Nothing is listed by hand: every (path, method) the router serves is an operation, and nothing else; each
operation lists every status it can answer, those of its handler (`Route.errors`) and those of the pipeline in
api/app.py (bad correlation header 400, body over the limit 413; on Graph routes missing or bad token 401 and
throttling 429), each with its error schema and headers. A method a path does not declare answers 405 with
Allow, described once at the top (`x-opencomms-undeclared-methods`). Request schemas come from api/schemas.py,
which mirrors the wire readers; the response schemas below describe Graph's JSON as we emit it.
"""

from __future__ import annotations

import re
from typing import Any

from opencomms import __version__
from opencomms.api import meeting_schemas
from opencomms.api.routing import ALIASED, APP_ALIAS, VERSIONS, Kind, Route
from opencomms.api.schemas import REQUEST_SCHEMAS, nullable, ref
from opencomms.domain.calls import CallState

_ID = {"type": "string", "description": "GUID"}
_RESULT_INFO = {
    "type": "object",
    "properties": {
        "code": {"type": "integer"},
        "subcode": {"type": "integer"},
        "message": {"type": "string"},
    },
}
_CALL_STATES = [state.value for state in CallState]
_OBJECT = {"type": "object"}

RESPONSE_SCHEMAS: dict[str, Any] = {
    "prometheusText": {
        "type": "string",
        "description": "Prometheus text exposition format 0.0.4 (Content-Type text/plain; version=0.0.4)",
    },
    "resultInfo": _RESULT_INFO,
    "call": {
        "type": "object",
        "properties": {
            "id": _ID,
            "state": {"type": "string", "enum": _CALL_STATES},
            "direction": {"type": "string", "enum": ["incoming", "outgoing"]},
            "callbackUri": {"type": "string"},
            "callChainId": _ID,
            "myParticipantId": _ID,
            "tenantId": _ID,
            "subject": nullable({"type": "string"}),
            "source": _OBJECT,
            "targets": {"type": "array", "items": _OBJECT},
            "requestedModalities": {"type": "array", "items": {"type": "string"}},
            "mediaConfig": _OBJECT,
            "resultInfo": nullable(ref("resultInfo")),
        },
    },
    "participant": {
        "type": "object",
        "properties": {
            "id": _ID,
            "info": _OBJECT,
            "isMuted": {"type": "boolean"},
            "isInLobby": {"type": "boolean"},
            "mediaStreams": {"type": "array", "items": _OBJECT},
        },
    },
    "participantCollection": {
        "type": "object",
        "properties": {"value": {"type": "array", "items": ref("participant")}},
    },
    "commsOperation": {
        "type": "object",
        "properties": {
            "id": _ID,
            "status": {"type": "string"},
            "clientContext": nullable({"type": "string"}),
            "resultInfo": nullable(ref("resultInfo")),
            "recordingLocation": nullable({"type": "string"}),
            "recordingAccessToken": nullable({"type": "string"}),
            "completionReason": nullable({"type": "string"}),
        },
    },
    "callRecord": {"type": "object", "properties": {"id": _ID, "sessions": {"type": "array", "items": _OBJECT}}},
    "subscription": {
        "type": "object",
        "properties": {
            "id": _ID,
            "resource": {"type": "string"},
            "changeType": {"type": "string"},
            "notificationUrl": {"type": "string"},
            "expirationDateTime": {"type": "string", "format": "date-time"},
            "clientState": nullable({"type": "string"}),
        },
    },
    "subscriptionCollection": {
        "type": "object",
        "required": ["value"],
        "properties": {"value": {"type": "array", "items": ref("subscription")}},
    },
    "callRecordCollection": {
        "type": "object",
        "required": ["value"],
        "properties": {"value": {"type": "array", "items": ref("callRecord")}, "@odata.nextLink": {"type": "string"}},
    },
    "tokenResponse": {
        "type": "object",
        "required": ["token_type", "expires_in", "access_token"],
        "properties": {
            "token_type": {"const": "Bearer"},
            "expires_in": {"type": "integer"},
            "ext_expires_in": {"type": "integer"},
            "access_token": {"type": "string"},
        },
    },
    "error": {
        "type": "object",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "innerError"],
                "additionalProperties": False,
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "innerError": {
                        "type": "object",
                        "required": ["request-id", "date", "client-request-id"],
                        "additionalProperties": False,
                        "properties": {
                            "request-id": _ID,
                            "date": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}$"},
                            "client-request-id": nullable(_ID),
                        },
                    },
                },
            }
        },
    },
    "readiness": {
        "type": "object",
        "required": ["status", "checks", "failing"],
        "properties": {
            "status": {"type": "string", "enum": ["ready", "notReady"]},
            "checks": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "required": ["ok", "detail"],
                    "properties": {"ok": {"type": "boolean"}, "detail": {"type": "string"}},
                },
            },
            "failing": {"type": "array", "items": {"type": "string"}},
        },
    },
    "oauthError": {
        "type": "object",
        "required": ["error", "error_description", "error_codes", "timestamp", "trace_id", "correlation_id"],
        "properties": {
            "error": {"type": "string"},
            "error_description": {"type": "string"},
            "error_codes": {"type": "array", "items": {"type": "integer"}},
            "timestamp": {"type": "string"},
            "trace_id": _ID,
            "correlation_id": _ID,
        },
    },
}
RESPONSE_SCHEMAS.update(meeting_schemas.RESPONSE_SCHEMAS)
SCHEMAS: dict[str, Any] = {**REQUEST_SCHEMAS, **RESPONSE_SCHEMAS}
assert not set(REQUEST_SCHEMAS) & set(RESPONSE_SCHEMAS)

_RETRY_AFTER = {"description": "Seconds to wait", "schema": {"type": "integer", "minimum": 1}}


def _error_response(text: str, schema: dict[str, Any], **headers: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"description": text, "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = {name.replace("_", "-"): value for name, value in headers.items()}
    return out


GRAPH_ERROR = ref("error")
RESPONSES: dict[str, Any] = {
    "badRequest": _error_response("Malformed body or header, invalid value, or an action not allowed now", GRAPH_ERROR),
    "unauthorized": _error_response(
        "Missing or invalid token",
        GRAPH_ERROR,
        WWW_Authenticate={"description": "Bearer challenge", "schema": {"type": "string"}},
    ),
    "forbidden": _error_response(
        "The application lacks a permission, the identity is not its own, or a quota is used up (quotaLimitReached)",
        GRAPH_ERROR,
    ),
    "notFound": _error_response("Unknown (or another application's) resource", GRAPH_ERROR),
    "methodNotAllowed": _error_response(
        "The path does not declare this method",
        GRAPH_ERROR,
        Allow={"description": "The methods the path declares", "schema": {"type": "string"}},
    ),
    "payloadTooLarge": _error_response("Body over the node's limit", GRAPH_ERROR),
    "tooManyRequests": _error_response(
        "Throttled, or past a per-minute quota (activityLimitReached)", GRAPH_ERROR, Retry_After=_RETRY_AFTER
    ),
    "serviceUnavailable": _error_response(
        "The store cannot take the change now (disk full, locked), or this node has no media for the call",
        GRAPH_ERROR,
        Retry_After=_RETRY_AFTER,
    ),
    "notReady": _error_response("Not ready: the body names the failing checks", ref("readiness")),
    "oauthBadRequest": _error_response(
        "OAuth error (or a Graph error for a bad correlation header)", {"anyOf": [ref("oauthError"), GRAPH_ERROR]}
    ),
    "badRequestPage": {
        "description": "The sign-in page says what went wrong (HTML), or a Graph error for a bad correlation header",
        "content": {"text/html": {"schema": {"type": "string"}}, "application/json": {"schema": GRAPH_ERROR}},
    },
    "tooManyPages": {
        "description": "Too many sign-in pages opened from this address (HTML)",
        "headers": {"Retry-After": _RETRY_AFTER},
        "content": {"text/html": {"schema": {"type": "string"}}},
    },
    "oauthUnauthorized": _error_response("Invalid client credentials", ref("oauthError")),
    "oauthTooManyRequests": _error_response("Too many token requests", ref("oauthError"), Retry_After=_RETRY_AFTER),
}
_BY_STATUS = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "notFound",
    405: "methodNotAllowed",
    413: "payloadTooLarge",
    429: "tooManyRequests",
    503: "serviceUnavailable",
}
_OAUTH = {400: "oauthBadRequest", 401: "oauthUnauthorized", 429: "oauthTooManyRequests"}
PIPELINE_ERRORS = (400, 413)
"""Any route: a non-GUID client-request-id or scenario-id header (400), a body over the limit (413)."""
GRAPH_PIPELINE_ERRORS = (401, 403, 429, 503)
"""Graph routes: missing or invalid token (401), a signed-in user's token on an application-only API (403),
throttled application (429), store unavailable (503)."""
UNDECLARED_METHOD_STATUS = 405


def error_statuses(route: Route) -> dict[int, str]:
    """Every error status `route` can answer, with the name of its entry in components.responses."""
    found = set(PIPELINE_ERRORS) | set(route.errors)
    if route.kind is Kind.GRAPH:
        found |= set(GRAPH_PIPELINE_ERRORS)
    table = {**_BY_STATUS, **_OAUTH} if route.oauth_errors else _BY_STATUS
    table = {**table, **dict(route.error_responses)}
    return {status: table[status] for status in sorted(found)}


def paths_of(route: Route) -> list[str]:
    """The concrete path templates under which the router serves `route`."""
    if route.kind is not Kind.GRAPH:
        return [f"/{route.template}"]
    templates = [route.template]
    if route.template.startswith(ALIASED):
        templates.append(APP_ALIAS + route.template[len(ALIASED) :])
    return [f"/{version}/{template}" for template in templates for version in VERSIONS]


def _operation(route: Route, path: str) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": route.summary,
        "operationId": re.sub(r"[^A-Za-z0-9]+", "_", f"{route.method.lower()}{path}").strip("_"),
    }
    params = [s[1:-1] for s in route.segments if s.startswith("{")]
    parameters = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params]
    parameters += [
        {"name": name, "in": "query", "required": False, "description": text, "schema": {"type": "string"}}
        for name, text in route.query
    ]
    if parameters:
        op["parameters"] = parameters
    if route.permission:
        op["description"] = f"Application permission: {route.permission}"
    if route.request_schema:
        op["requestBody"] = {
            "required": route.request_required,
            "content": {route.request_media: {"schema": ref(route.request_schema)}},
        }
    ok: dict[str, Any] = {"description": "Success"}
    if route.response_schema:
        ok["content"] = {route.response_media: {"schema": ref(route.response_schema)}}
    elif route.response_status not in (202, 204) and route.response_media != "application/json":
        media = "audio/wav" if route.response_media == "application/octet-stream" else route.response_media
        ok["content"] = {route.response_media: {"schema": {"type": "string", "contentMediaType": media}}}
    responses: dict[str, Any] = {str(route.response_status): ok}
    for status, name in error_statuses(route).items():
        responses[str(status)] = {"$ref": f"#/components/responses/{name}"}
    if route.kind is Kind.GRAPH:
        op["security"] = [{"bearer": []}]
    op["responses"] = responses
    return op


def document(routes: list[Route], server_url: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        for path in paths_of(route):
            paths.setdefault(path, {})[route.method.lower()] = _operation(route, path)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "opencomms",
            "version": __version__,
            "description": "Cloud communications API compatible with Microsoft Graph v1.0 (calls), "
            "plus a client-credentials token service. Extensions beyond Graph are typed #opencomms.*. "
            "Paths match case-insensitively; /{v}/app/calls is an alias of /{v}/communications/calls. "
            "A method that a path does not declare (HEAD and OPTIONS included) answers 405 with an Allow header, "
            "before authentication: see x-opencomms-undeclared-methods.",
        },
        "servers": [{"url": server_url}],
        "paths": paths,
        "x-opencomms-undeclared-methods": {
            "status": UNDECLARED_METHOD_STATUS,
            "response": {"$ref": "#/components/responses/methodNotAllowed"},
        },
        "components": {
            "schemas": SCHEMAS,
            "responses": RESPONSES,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }
