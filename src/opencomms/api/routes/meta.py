"""Operational routes: /healthz and the OpenAPI document of the implemented surface."""

from __future__ import annotations

from opencomms.api.app import ApiContext
from opencomms.api.http import Request, Response
from opencomms.api.routing import Kind, Route


def healthz(ctx: ApiContext, req: Request) -> Response:
    return Response(200, ctx.health())


def openapi(ctx: ApiContext, req: Request) -> Response:
    from opencomms.api.openapi import document
    from opencomms.api.routes import all_routes

    return Response(200, document(all_routes(), ctx.public_url))


ROUTES = [
    Route("GET", "healthz", healthz, Kind.PUBLIC, "Liveness and basic counters"),
    Route("GET", "openapi.json", openapi, Kind.PUBLIC, "This OpenAPI document"),
]
