"""#opencomms media streams: `POST /communications/calls/{id}/startMediaStream` and `.../stopMediaStream` (Twilio
Media Streams' WebSocket format; calling/mediastreams.py). Graph has no such action: both are opencomms extensions,
named like Graph's call actions, answering 200 with an operation (`streamSid` on the start operation)."""

from __future__ import annotations

from opencomms.api.app import ApiContext
from opencomms.api.http import Request, Response
from opencomms.api.routes.call_actions import load_call, operation_response
from opencomms.api.routing import Kind, Route
from opencomms.calling.mediastreams import MediaStreams
from opencomms.domain.errors import ServiceUnavailable
from opencomms.wire import mediastreams as wire
from opencomms.wire.calls import empty_or_object

CALL = "communications/calls/{id}"


def _streams(ctx: ApiContext) -> MediaStreams:
    streams = ctx.media_streams
    if not isinstance(streams, MediaStreams):
        raise ServiceUnavailable("This node runs without media streams.")
    return streams


async def start_media_stream(ctx: ApiContext, req: Request) -> Response:
    await load_call(ctx, req)
    body = wire.start_media_stream(req.json())
    return operation_response(ctx, req, await _streams(ctx).start(req.who, req.params["id"], body))


async def stop_media_stream(ctx: ApiContext, req: Request) -> Response:
    await load_call(ctx, req)
    body = wire.stop_media_stream(empty_or_object(req.json()))
    return operation_response(ctx, req, _streams(ctx).stop(req.who, req.params["id"], body))


ROUTES = [
    Route(
        "POST",
        f"{CALL}/startMediaStream",
        start_media_stream,
        Kind.GRAPH,
        "#opencomms: stream the call's (or a meeting participant's) audio to a WebSocket in Twilio Media Streams' "
        "format, and play the audio the WebSocket sends back into the call",
        permission="Calls.AccessMedia.All",
        request_schema="startMediaStream",
        response_schema="commsOperation",
        errors=(400, 403, 404, 503),
        request_required=True,
    ),
    Route(
        "POST",
        f"{CALL}/stopMediaStream",
        stop_media_stream,
        Kind.GRAPH,
        "#opencomms: stop a media stream (`stop` is sent, the WebSocket closes); without streamSid, every stream",
        request_schema="stopMediaStream",
        response_schema="commsOperation",
        errors=(400, 404, 503),
    ),
]
