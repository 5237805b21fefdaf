"""Participant control in meetings: server mute, remove, hold music, recording status, and the lobby's
#opencomms admit/admitAll extensions (Graph v1.0 has no action to admit lobby participants).

The meeting join itself is `POST /communications/calls` with meetingInfo (api/routes/calls.py sends it here).
"""

from __future__ import annotations

from opencomms.api.app import ApiContext
from opencomms.api.http import Request, Response
from opencomms.api.routes.call_actions import operation_response
from opencomms.api.routing import Kind, Route
from opencomms.calling.meetings import LiveMeetingService
from opencomms.domain.errors import ServiceUnavailable
from opencomms.wire import meeting_control as wire
from opencomms.wire.media import context_only

CALL = "communications/calls/{id}"
PARTICIPANT = CALL + "/participants/{pid}"


def _meetings(ctx: ApiContext) -> LiveMeetingService:
    if ctx.live_meetings is None:
        raise ServiceUnavailable("This node runs without live meetings.")
    return ctx.live_meetings


async def mute_participant(ctx: ApiContext, req: Request) -> Response:
    context = context_only(req.json())
    op = await _meetings(ctx).mute(req.who, req.params["id"], req.params["pid"], context)
    return operation_response(ctx, req, op)


async def remove_participant(ctx: ApiContext, req: Request) -> Response:
    await _meetings(ctx).remove(req.who, req.params["id"], req.params["pid"])
    return Response(204)


async def start_hold_music(ctx: ApiContext, req: Request) -> Response:
    body = wire.start_hold_music(req.json())
    meetings = _meetings(ctx)
    op = await meetings.hold_music(
        req.who, req.params["id"], req.params["pid"], True, body.client_context, body.custom_prompt
    )
    return operation_response(ctx, req, op, 202)


async def stop_hold_music(ctx: ApiContext, req: Request) -> Response:
    context = context_only(req.json())
    op = await _meetings(ctx).hold_music(req.who, req.params["id"], req.params["pid"], False, context)
    return operation_response(ctx, req, op, 202)


async def admit(ctx: ApiContext, req: Request) -> Response:
    context = context_only(req.json())
    op = await _meetings(ctx).admit(req.who, req.params["id"], (req.params["pid"],), context)
    return operation_response(ctx, req, op)


async def admit_all(ctx: ApiContext, req: Request) -> Response:
    context = context_only(req.json())
    op = await _meetings(ctx).admit(req.who, req.params["id"], (), context)
    return operation_response(ctx, req, op)


async def update_recording_status(ctx: ApiContext, req: Request) -> Response:
    body = wire.update_recording_status(req.json())
    op = await _meetings(ctx).update_recording_status(req.who, req.params["id"], body.status, body.client_context)
    return operation_response(ctx, req, op)


def _post(path: str, handler: object, summary: str, schema: str, *, status: int = 200, **kw: object) -> Route:
    return Route(
        "POST",
        path,
        handler,  # type: ignore[arg-type]
        Kind.GRAPH,
        summary,
        request_schema=schema,
        request_required=schema not in ("clientContext", "startHoldMusic"),
        response_status=status,
        response_schema="commsOperation",
        errors=(400, 403, 404, 503),
        **kw,  # type: ignore[arg-type]
    )


ROUTES = [
    _post(f"{PARTICIPANT}/mute", mute_participant, "Mute a participant of a meeting (server mute)", "clientContext"),
    Route(
        "DELETE",
        PARTICIPANT,
        remove_participant,
        Kind.GRAPH,
        "Remove a participant (apps named in meetings.remove_participant_apps, as AllowRemoveParticipantAppIds)",
        response_status=204,
        errors=(400, 403, 404, 503),
    ),
    _post(
        f"{PARTICIPANT}/startHoldMusic",
        start_hold_music,
        "Put a participant on hold with music",
        "startHoldMusic",
        status=202,
    ),
    _post(f"{PARTICIPANT}/stopHoldMusic", stop_hold_music, "Take a participant off hold", "clientContext", status=202),
    _post(
        f"{PARTICIPANT}/admit",
        admit,
        "#opencomms: admit a lobby participant (bots that joined with Calls.JoinGroupCall.All)",
        "clientContext",
    ),
    _post(
        f"{CALL}/participants/admitAll",
        admit_all,
        "#opencomms: admit every lobby participant (bots that joined with Calls.JoinGroupCall.All)",
        "clientContext",
    ),
    _post(
        f"{CALL}/updateRecordingStatus",
        update_recording_status,
        "Update the recording status every participant sees (meetings)",
        "updateRecordingStatus",
        permission="Calls.JoinGroupCall.All + Calls.AccessMedia.All",
    ),
]
