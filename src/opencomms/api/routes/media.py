"""Service-hosted media routes: the media actions on a call, and the download of recordings (ours).

Media actions answer 200 with the operation and a Location header naming it, as Graph does.
`GET /media/recordings/{id}` is an opencomms route (Graph leaves recordingLocation's host open): it takes the
recordingAccessToken as a bearer token and returns the WAV bytes.
"""

from __future__ import annotations

from opencomms.api.app import ApiContext
from opencomms.api.http import Request, Response
from opencomms.api.routes.call_actions import load_call, operation_response
from opencomms.api.routing import Kind, Route
from opencomms.calling.media import MediaService
from opencomms.calling.recordings import DENIED
from opencomms.domain.errors import NotFound, ServiceUnavailable, Unauthenticated
from opencomms.wire import media as wire
from opencomms.wire.calls import empty_or_object

CALL = "communications/calls/{id}"


def _media(ctx: ApiContext) -> MediaService:
    if ctx.media is None:
        raise ServiceUnavailable("This node runs without a media engine.")
    return ctx.media


async def play_prompt(ctx: ApiContext, req: Request) -> Response:
    await load_call(ctx, req)
    op = _media(ctx).play_prompt(req.who, req.params["id"], wire.play_prompt(req.json()))
    return operation_response(ctx, req, op)


async def record_response(ctx: ApiContext, req: Request) -> Response:
    await load_call(ctx, req)
    parsed = wire.record_response(empty_or_object(req.json()))
    if ctx.live_meetings is not None:  # in a meeting: only once its recording status is 'recording' (Graph's rule)
        await ctx.live_meetings.check_persist(req.who, req.params["id"])
    op = _media(ctx).record_response(req.who, req.params["id"], parsed)
    return operation_response(ctx, req, op)


async def cancel_media_processing(ctx: ApiContext, req: Request) -> Response:
    await load_call(ctx, req)
    op = _media(ctx).cancel_media_processing(req.who, req.params["id"], wire.context_only(req.json()))
    return operation_response(ctx, req, op)


async def subscribe_to_tone(ctx: ApiContext, req: Request) -> Response:
    await load_call(ctx, req)
    op = _media(ctx).subscribe_to_tone(req.who, req.params["id"], wire.context_only(req.json()))
    return operation_response(ctx, req, op)


async def send_dtmf_tones(ctx: ApiContext, req: Request) -> Response:
    await load_call(ctx, req)
    op = _media(ctx).send_dtmf_tones(req.who, req.params["id"], wire.send_dtmf_tones(req.json()))
    return operation_response(ctx, req, op)


async def mute(ctx: ApiContext, req: Request) -> Response:
    await load_call(ctx, req)
    op = await _media(ctx).set_muted(req.who, req.params["id"], wire.context_only(req.json()), True)
    return operation_response(ctx, req, op)


async def unmute(ctx: ApiContext, req: Request) -> Response:
    await load_call(ctx, req)
    op = await _media(ctx).set_muted(req.who, req.params["id"], wire.context_only(req.json()), False)
    return operation_response(ctx, req, op)


def get_recording(ctx: ApiContext, req: Request) -> Response:
    """Unknown id, wrong, expired or absent-from-store token, deleted recording: one 404, same body (no oracle).
    A request without a bearer token at all is told so (401) without looking anything up."""
    scheme, _, token = req.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Send the recordingAccessToken as 'Authorization: Bearer <token>'.")
    if ctx.recordings is None:
        raise NotFound(DENIED)
    data = ctx.recordings.open(req.params["rid"], token.strip(), req.source)
    headers = [(b"content-disposition", f'attachment; filename="{req.params["rid"]}.wav"'.encode())]
    return Response(200, raw=data, headers=headers, content_type=b"application/octet-stream")


def _action(name: str, handler: object, summary: str, schema: str, permission: str | None = None) -> Route:
    return Route(
        "POST",
        f"{CALL}/{name}",
        handler,  # type: ignore[arg-type]
        Kind.GRAPH,
        summary,
        permission=permission,
        request_schema=schema,
        response_schema="commsOperation",
        errors=(400, 403, 404, 503) if permission else (400, 404, 503),
        request_required=schema in ("playPrompt", "sendDtmfTones"),
    )


ROUTES = [
    _action("playPrompt", play_prompt, "Play prompts (WAV, or text-to-speech: #opencomms.textPrompt)", "playPrompt"),
    _action(
        "recordResponse",
        record_response,
        "Record what the caller says",
        "recordResponse",
        permission="Calls.AccessMedia.All",
    ),
    _action(
        "record", record_response, "Record (beta name of recordResponse)", "recordResponse", "Calls.AccessMedia.All"
    ),
    _action("cancelMediaProcessing", cancel_media_processing, "Cancel queued and running media", "clientContext"),
    _action("subscribeToTone", subscribe_to_tone, "Receive DTMF tones", "clientContext", "Calls.AccessMedia.All"),
    _action("sendDtmfTones", send_dtmf_tones, "Send DTMF tones", "sendDtmfTones"),
    _action("mute", mute, "Mute the bot itself", "clientContext"),
    _action("unmute", unmute, "Unmute the bot itself", "clientContext"),
    Route(
        "GET",
        "media/recordings/{rid}",
        get_recording,
        Kind.PUBLIC,
        "Download a recording (opencomms); Authorization: Bearer <recordingAccessToken>. Unknown id, wrong or "
        "expired token and deleted recording all answer the same 404; failures are throttled (429) per address "
        "and per recording",
        errors=(401, 404, 429),
        response_media="application/octet-stream",
    ),
]
