"""Operational routes: /healthz (liveness and counters), /readyz (readiness, see opencomms.readiness) and the
OpenAPI document of the implemented surface."""

from __future__ import annotations

from opencomms.api.app import ApiContext
from opencomms.api.http import Request, Response
from opencomms.api.routing import Kind, Route


def healthz(ctx: ApiContext, req: Request) -> Response:
    return Response(200, ctx.health())


async def readyz(ctx: ApiContext, req: Request) -> Response:
    if ctx.ready is None:
        return Response(200, {"status": "ready", "checks": {}, "failing": []})
    ok, body = await ctx.ready()
    return Response(200 if ok else 503, body, [(b"cache-control", b"no-store")])


def openapi(ctx: ApiContext, req: Request) -> Response:
    from opencomms.api.openapi import document
    from opencomms.api.routes import all_routes

    return Response(200, document(all_routes(), ctx.public_url))


ROUTES = [
    Route("GET", "healthz", healthz, Kind.PUBLIC, "Liveness and basic counters"),
    Route(
        "GET",
        "readyz",
        readyz,
        Kind.PUBLIC,
        "Readiness: store answering, media engine ticking, SIP listening",
        response_schema="readiness",
        errors=(503,),
        error_responses=((503, "notReady"),),
    ),
    Route("GET", "openapi.json", openapi, Kind.PUBLIC, "This OpenAPI document"),
]
