"""`GET /metrics`: the node's Prometheus metrics, for loopback scrapers by default.

Access ([metrics] config): disabled -> 404; a scrape from an address other than loopback, or through a proxy
(a Forwarded, X-Forwarded-For or X-Real-IP header), is refused with 403 unless `allow_remote`; with a `token`,
every scrape must send it as a bearer token (401 otherwise). The body comes from `ctx.metrics.render()`.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Protocol

from opencomms.api.app import ApiContext
from opencomms.api.http import Request, Response
from opencomms.api.routing import Kind, Route
from opencomms.config import MetricsConfig
from opencomms.domain.errors import AccessDenied, NotFound, Unauthenticated

PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


class MetricsEndpoint(Protocol):
    config: MetricsConfig

    def render(self) -> bytes: ...


def is_loopback(source: str) -> bool:
    try:
        address = ipaddress.ip_address(source.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def check_access(config: MetricsConfig, source: str, headers: dict[str, str]) -> None:
    """Raise the Graph error the scrape deserves, or return if it may read the metrics."""
    if not config.enabled:
        raise NotFound("No resource at '/metrics': metrics are disabled ([metrics] enabled = false).")
    local = is_loopback(source) and not any(name in headers for name in PROXY_HEADERS)
    if not local and not config.allow_remote:
        raise AccessDenied("Metrics are served to loopback only; set [metrics] allow_remote (with a token).")
    if config.token:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), config.token.encode()):
            raise Unauthenticated("Send the metrics token: 'Authorization: Bearer <[metrics] token>'.")


def metrics(ctx: ApiContext, req: Request) -> Response:
    endpoint: MetricsEndpoint | None = ctx.metrics
    if endpoint is None:
        raise NotFound("No resource at '/metrics': metrics are disabled ([metrics] enabled = false).")
    check_access(endpoint.config, req.source, req.headers)
    return Response(200, raw=endpoint.render(), content_type=CONTENT_TYPE)


ROUTES = [
    Route(
        "GET",
        "metrics",
        metrics,
        Kind.PUBLIC,
        "Prometheus metrics (loopback only unless [metrics] allow_remote; bearer token if [metrics] token)",
        response_schema="prometheusText",
        response_media="text/plain",
        errors=(401, 403, 404),
    ),
]
