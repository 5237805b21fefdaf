"""Typed domain errors. Each carries the Graph error code and HTTP status it maps to.

The mapping to Graph's error body happens in exactly one place (api/errors.py); nothing here knows HTTP.
"""

from __future__ import annotations


class OpenCommsError(Exception):
    """Base of every error that a client may see. `code` is Graph's top-level error code."""

    status: int = 400
    code: str = "invalidRequest"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(OpenCommsError):
    """Malformed or invalid input."""

    status = 400
    code = "invalidRequest"


class InvalidState(OpenCommsError):
    """The action is not valid in the resource's current state."""

    status = 400
    code = "invalidRequest"


class Unauthenticated(OpenCommsError):
    """Missing or invalid credentials or token."""

    status = 401
    code = "InvalidAuthenticationToken"


class AccessDenied(OpenCommsError):
    """Valid token, missing permission, or a resource of another application or tenant."""

    status = 403
    code = "accessDenied"


class QuotaExceeded(OpenCommsError):
    """A concurrency or size quota of the application, tenant or call is used up (the message names it). Graph
    answers some limits with 403; `quotaLimitReached` is Graph's documented code for a used-up quota."""

    status = 403
    code = "quotaLimitReached"


class NotFound(OpenCommsError):
    """Unknown id (or an id the caller may not see: tenant isolation answers 404, never 403)."""

    status = 404
    code = "itemNotFound"


class MethodNotAllowed(OpenCommsError):
    """The path exists, the method is not one it declares; `allow` lists those (the Allow header)."""

    status = 405
    code = "notAllowed"

    def __init__(self, message: str, allow: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.allow = allow


class Conflict(OpenCommsError):
    status = 409
    code = "nameAlreadyExists"


class PayloadTooLarge(OpenCommsError):
    status = 413
    code = "invalidRequest"


class UnsupportedMediaType(OpenCommsError):
    status = 415
    code = "invalidRequest"


class Throttled(OpenCommsError):
    """Too many requests; `retry_after` seconds to wait."""

    status = 429
    code = "activityLimitReached"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServiceUnavailable(OpenCommsError):
    status = 503
    code = "serviceNotAvailable"

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
