"""The one place where errors become Graph error bodies (and OAuth error bodies for the token endpoint).

Clients never see a stack trace: unexpected exceptions are logged here and answered as a generic 500.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from opencomms.domain.errors import MethodNotAllowed, OpenCommsError, ServiceUnavailable, Throttled

log = logging.getLogger("opencomms.api")


def graph_error_body(code: str, message: str, request_id: str, client_request_id: str | None) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "request-id": request_id,
                "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "client-request-id": client_request_id,
            },
        }
    }


def error_response(
    exc: BaseException, request_id: str, client_request_id: str | None
) -> tuple[int, dict[str, Any], list[tuple[bytes, bytes]]]:
    """(status, body, extra headers) for any exception raised while handling a Graph request."""
    headers: list[tuple[bytes, bytes]] = []
    if isinstance(exc, OpenCommsError):
        if isinstance(exc, (Throttled, ServiceUnavailable)) and exc.retry_after is not None:
            headers.append((b"retry-after", str(exc.retry_after).encode()))
        if isinstance(exc, MethodNotAllowed) and exc.allow:
            headers.append((b"allow", ", ".join(exc.allow).encode()))
        if exc.status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="opencomms", error="invalid_token"'))
        return exc.status, graph_error_body(exc.code, exc.message, request_id, client_request_id), headers
    log.error("unhandled error", exc_info=exc, extra={"request_id": request_id})
    body = graph_error_body("generalException", "An internal error occurred.", request_id, client_request_id)
    return 500, body, headers


class OAuthError(Exception):
    """An OAuth 2.0 token endpoint error (RFC 6749 §5.2), answered in Microsoft identity platform shape."""

    def __init__(self, status: int, error: str, description: str, code: int, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.retry_after = retry_after
        self.status = status
        self.error = error
        self.description = description
        self.code = code

    def body(self, request_id: str, client_request_id: str | None) -> dict[str, Any]:
        return {
            "error": self.error,
            "error_description": self.description,
            "error_codes": [self.code],
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
            "trace_id": request_id,
            "correlation_id": client_request_id or request_id,
        }
