"""All HTTP routes of the node, one module per resource family."""

from __future__ import annotations

from opencomms.api.routes import calls, identity, media, meta, metrics, records, subscriptions
from opencomms.api.routing import Route


def all_routes() -> list[Route]:
    return [
        *calls.ROUTES,
        *media.ROUTES,
        *records.ROUTES,
        *subscriptions.ROUTES,
        *identity.ROUTES,
        *meta.ROUTES,
        *metrics.ROUTES,
    ]
