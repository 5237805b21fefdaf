"""Route table and matcher: literal segments match case-insensitively, `{name}` segments capture ids.

Graph routes live under /v1.0 and /beta; `/app/calls` is served as an alias of `/communications/calls`.
A method that a matched path does not declare answers 405 `notAllowed` with an `Allow` header naming the declared
ones (HEAD and OPTIONS included: nothing is served implicitly), before authentication. The OpenAPI document is
generated from this same table (api/openapi.py), so the two cannot drift.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from opencomms.api.http import Request, Response
from opencomms.domain.errors import MethodNotAllowed, NotFound

Handler = Callable[[Any, Request], "Response | Awaitable[Response]"]
VERSIONS = ("v1.0", "beta")
ALIASED = "communications/calls"
APP_ALIAS = "app/calls"
"""`/{version}/app/calls...` is served as `/{version}/communications/calls...`."""


class Kind(StrEnum):
    GRAPH = "graph"
    """Graph API under /v1.0 and /beta: bearer token required, throttled, Graph error bodies."""
    PUBLIC = "public"
    """Identity platform and operational endpoints at the root: no token."""


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    template: str
    handler: Handler
    kind: Kind
    summary: str
    permission: str | None = None
    """Documented permission, for the OpenAPI document (the service enforces it)."""
    request_schema: str | None = None
    response_status: int = 200
    response_schema: str | None = None
    errors: tuple[int, ...] = ()
    """Error statuses the handler itself can answer; the OpenAPI document adds those of the pipeline
    (400 for bad correlation headers, 413 for a body over the limit; 401 and 429 on Graph routes)."""
    error_responses: tuple[tuple[int, str], ...] = ()
    """(status, components.responses entry) for an error status whose body is not the usual one (/readyz's 503)."""
    request_media: str = "application/json"
    request_required: bool = True
    """False: the body may be left out (the action then takes its defaults)."""
    response_media: str = "application/json"
    oauth_errors: bool = False
    """Errors in OAuth 2.0 shape (the token service), not Graph's."""
    query: tuple[tuple[str, str], ...] = ()
    """Optional query parameters the handler reads: (name, description)."""
    delegated: bool = False
    """Graph routes: also served to a signed-in user's (delegated) token; otherwise such a token is refused (403),
    as Graph's calling APIs are application-only."""

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(s for s in self.template.split("/") if s)


class Router:
    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes
        self._by_len: dict[tuple[Kind, int], list[tuple[Route, tuple[str, ...]]]] = {}
        for route in routes:
            segs = tuple(s if s.startswith("{") else s.lower() for s in route.segments)
            self._by_len.setdefault((route.kind, len(segs)), []).append((route, segs))
        for entries in self._by_len.values():  # literal segments win over captures (`…/createOrGet` over `…/{id}`)
            entries.sort(key=lambda entry: tuple(not s.startswith("{") for s in entry[1]), reverse=True)

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str], str]:
        """(route, params, version). Raises NotFound or MethodNotAllowed."""
        parts = [p for p in path.split("/") if p]
        kind, version = Kind.PUBLIC, ""
        if parts and parts[0].lower() in VERSIONS:
            kind, version = Kind.GRAPH, parts[0].lower()
            parts = parts[1:]
            if len(parts) >= 2 and parts[0].lower() == "app" and parts[1].lower() == "calls":
                parts = ["communications", *parts[1:]]
        allowed: list[str] = []
        best: tuple[bool, ...] | None = None
        for route, segs in self._by_len.get((kind, len(parts)), ()):
            params: dict[str, str] = {}
            for seg, part in zip(segs, parts, strict=True):
                if seg.startswith("{"):
                    params[seg[1:-1]] = part
                elif seg != part.lower():
                    break
            else:
                shape = tuple(not s.startswith("{") for s in segs)
                if best is not None and shape != best:
                    break  # sorted most literal first: a less specific template never serves this path
                best = shape
                if route.method == method:
                    return route, params, version
                allowed.append(route.method)
        if allowed:
            allow = tuple(sorted(set(allowed)))
            raise MethodNotAllowed(f"{method} is not supported on this resource; use {', '.join(allow)}.", allow)
        raise NotFound(f"No resource at {path!r}." if kind is Kind.PUBLIC else "Resource not found for the segment.")
