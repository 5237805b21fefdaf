"""All HTTP routes of the node, one module per resource family."""

from __future__ import annotations

from opencomms.api.routes import (
    calls,
    identity,
    invites,
    media,
    meeting_artifacts,
    meeting_control,
    meetings,
    meta,
    metrics,
    records,
    signin,
    streams,
    subscriptions,
    transcription,
)
from opencomms.api.routing import Route


def all_routes() -> list[Route]:
    return [
        *calls.ROUTES,
        *meeting_control.ROUTES,
        *invites.ROUTES,
        *media.ROUTES,
        *streams.ROUTES,
        *records.ROUTES,
        *identity.ROUTES,
        *meta.ROUTES,
        *metrics.ROUTES,
        *meetings.ROUTES,
        *meeting_artifacts.ROUTES,
        *signin.ROUTES,
        *subscriptions.ROUTES,
        *transcription.ROUTES,
    ]
