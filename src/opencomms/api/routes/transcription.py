"""#opencomms live transcription of a call: `POST communications/calls/{id}/startTranscription` and
`.../stopTranscription` (Graph v1.0 has no such action; its `call.transcription` property reports the state).
The captions arrive as call notifications carrying an `#opencomms.transcript` (calling/transcription.py)."""

from __future__ import annotations

from opencomms.api.app import ApiContext
from opencomms.api.http import Request, Response
from opencomms.api.routes.call_actions import load_call, operation_response
from opencomms.api.routing import Kind, Route
from opencomms.calling.transcription import CallTranscription
from opencomms.domain.errors import ServiceUnavailable
from opencomms.wire.media import context_only

CALL = "communications/calls/{id}"


def _transcription(ctx: ApiContext) -> CallTranscription:
    if ctx.transcription is None:
        raise ServiceUnavailable("This node runs without transcription ([speech] enabled = false).")
    return ctx.transcription


async def start_transcription(ctx: ApiContext, req: Request) -> Response:
    context = context_only(req.json())
    await load_call(ctx, req)
    op = await _transcription(ctx).start(req.who, req.params["id"], context)
    return operation_response(ctx, req, op)


async def stop_transcription(ctx: ApiContext, req: Request) -> Response:
    context = context_only(req.json())
    await load_call(ctx, req)
    op = await _transcription(ctx).stop(req.who, req.params["id"], context)
    return operation_response(ctx, req, op)


def _post(path: str, handler: object, summary: str) -> Route:
    return Route(
        "POST",
        path,
        handler,  # type: ignore[arg-type]
        Kind.GRAPH,
        summary,
        request_schema="clientContext",
        request_required=False,
        response_status=200,
        response_schema="commsOperation",
        errors=(400, 403, 404, 503),
        permission="Calls.AccessMedia.All",
    )


ROUTES = [
    _post(
        f"{CALL}/startTranscription",
        start_transcription,
        "#opencomms: transcribe what the other participants say (captions as call notifications; in a meeting only "
        "while its recording status is 'recording')",
    ),
    _post(f"{CALL}/stopTranscription", stop_transcription, "#opencomms: stop transcribing the call"),
]
