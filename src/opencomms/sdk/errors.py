"""Typed errors raised by the SDK: Graph error responses, token failures, callback authentication failures."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any


class SdkError(Exception):
    """Base of every error the SDK raises on purpose."""


class GraphError(SdkError):
    """The node (or Graph) answered a request with an error status.

    `code` is Graph's top-level error code (`itemNotFound`, `invalidRequest`, `accessDenied`, ...), or the
    OAuth `error` for the token endpoint; `body` is the parsed body (or text) as received.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        body: Any = None,
        *,
        request_id: str | None = None,
        client_request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body = body
        self.request_id = request_id
        self.client_request_id = client_request_id
        self.retry_after = retry_after

    @classmethod
    def from_response(cls, status: int, body: Any, headers: dict[str, str] | None = None) -> GraphError:
        """Read Graph's `{"error": {"code", "message", "innerError"}}` or OAuth's `{"error", "error_description"}`."""
        hdrs = {k.lower(): v for k, v in (headers or {}).items()}
        code, message = f"http{status}", ""
        request_id = hdrs.get("request-id")
        if isinstance(body, dict):
            err = body.get("error")
            if isinstance(err, dict):
                code = str(err.get("code") or code)
                message = str(err.get("message") or "")
                inner = err.get("innerError")
                if isinstance(inner, dict) and isinstance(inner.get("request-id"), str):
                    request_id = inner["request-id"]
            elif isinstance(err, str):
                code, message = err, str(body.get("error_description") or "")
        elif isinstance(body, str):
            message = body[:500]
        return cls(
            status,
            code,
            message,
            body,
            request_id=request_id,
            client_request_id=hdrs.get("client-request-id"),
            retry_after=parse_retry_after(hdrs.get("retry-after")),
        )


class AuthenticationError(GraphError):
    """The token endpoint refused the client credentials (or the API refused the token)."""


class CallbackAuthError(SdkError):
    """A notification's bearer token was refused; `status` is what the receiver answers (401 or 403)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: delta-seconds, or an HTTP-date (RFC 9110 §10.2.3); None if absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    return seconds if seconds >= 0 else None
