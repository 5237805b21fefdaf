"""Graph call-control routes: /communications/calls and its participants and operations."""

from __future__ import annotations

from opencomms.api.app import ApiContext
from opencomms.api.callbacks import check_callback
from opencomms.api.http import Request, Response
from opencomms.api.routing import Kind, Route
from opencomms.domain.errors import NotFound, ServiceUnavailable
from opencomms.wire import calls as wire

CALLS = "communications/calls"


def _base(ctx: ApiContext, req: Request) -> str:
    return f"{ctx.public_url}/{req.version}"


async def create_call(ctx: ApiContext, req: Request) -> Response:
    body = wire.create_call(req.json())
    if ctx.quotas is not None:  # 403 past a concurrency quota, 429 + Retry-After past a rate (calling/quotas.py)
        ctx.quotas.admit_create(req.who.app_id, req.who.tenant_id, ctx.clock())
    await check_callback(ctx, body.callback_uri)
    if body.meeting_info is not None:  # a bot joins a meeting (calling/meetings.py)
        if ctx.live_meetings is None:
            raise ServiceUnavailable("This node runs without live meetings.")
        call = await ctx.live_meetings.join(req.who, body)
    else:
        call = await ctx.calls.create(req.who, body)
    base = _base(ctx, req)
    call = {"@odata.context": f"{base}/$metadata#communications/calls/$entity", **call}
    return Response(201, call, [(b"location", f"{base}/{CALLS}/{call['id']}".encode())])


async def get_call(ctx: ApiContext, req: Request) -> Response:
    call = await ctx.calls.get(req.who, req.params["id"])
    body = {"@odata.context": f"{_base(ctx, req)}/$metadata#communications/calls/$entity", **call.to_wire()}
    return Response(200, body)


async def delete_call(ctx: ApiContext, req: Request) -> Response:
    await ctx.calls.hang_up(req.who, req.params["id"])
    return Response(204)


async def answer(ctx: ApiContext, req: Request) -> Response:
    body = wire.answer(req.json())
    await check_callback(ctx, body.callback_uri)
    await ctx.calls.answer(req.who, req.params["id"], body)
    return Response(202)


async def reject(ctx: ApiContext, req: Request) -> Response:
    body = req.json()  # no body means "reason: none"; `[]`, `0` or `""` are still refused by the reader
    parsed = wire.reject({} if body is None else body)
    await check_callback(ctx, parsed.callback_uri)
    await ctx.calls.reject(req.who, req.params["id"], parsed)
    return Response(202)


async def redirect(ctx: ApiContext, req: Request) -> Response:
    body = wire.redirect(req.json())
    await check_callback(ctx, body.callback_uri)
    await ctx.calls.redirect(req.who, req.params["id"], body)
    return Response(202)


async def transfer(ctx: ApiContext, req: Request) -> Response:
    await ctx.calls.transfer(req.who, req.params["id"], wire.transfer(req.json()))
    return Response(202)


async def keep_alive(ctx: ApiContext, req: Request) -> Response:
    wire.empty_or_object(req.json())
    await ctx.calls.keep_alive(req.who, req.params["id"])
    return Response(200)


async def list_participants(ctx: ApiContext, req: Request) -> Response:
    items = await ctx.calls.participants(req.who, req.params["id"])
    context = f"{_base(ctx, req)}/$metadata#communications/calls('{req.params['id']}')/participants"
    return Response(200, {"@odata.context": context, "value": items})


async def get_participant(ctx: ApiContext, req: Request) -> Response:
    item = await ctx.calls.participant(req.who, req.params["id"], req.params["pid"])
    context = f"{_base(ctx, req)}/$metadata#communications/calls('{req.params['id']}')/participants/$entity"
    return Response(200, {"@odata.context": context, **item})


async def get_operation(ctx: ApiContext, req: Request) -> Response:
    op = await ctx.calls.operation(req.who, req.params["id"], req.params["opId"])
    if op is None:
        raise NotFound(f"No operation {req.params['opId']!r} in this call.")
    return Response(200, op)


ROUTES = [
    Route(
        "POST",
        CALLS,
        create_call,
        Kind.GRAPH,
        "Create a call (peer-to-peer, bot-to-bot or group), or join a meeting (meetingInfo)",
        permission="Calls.Initiate.All | Calls.InitiateGroupCall.All | Calls.JoinGroupCall.All | "
        "Calls.JoinGroupCallAsGuest.All (+Calls.AccessMedia.All for app-hosted media)",
        request_schema="createCall",
        response_status=201,
        response_schema="call",
        errors=(400, 403, 404, 503),
    ),
    Route("GET", f"{CALLS}/{{id}}", get_call, Kind.GRAPH, "Get a call", response_schema="call", errors=(404,)),
    Route(
        "DELETE", f"{CALLS}/{{id}}", delete_call, Kind.GRAPH, "Hang up a call", response_status=204, errors=(400, 404)
    ),
    Route(
        "POST",
        f"{CALLS}/{{id}}/answer",
        answer,
        Kind.GRAPH,
        "Answer an incoming call",
        request_schema="answer",
        response_status=202,
        errors=(400, 403, 404),
    ),
    Route(
        "POST",
        f"{CALLS}/{{id}}/reject",
        reject,
        Kind.GRAPH,
        "Reject an incoming call",
        request_schema="reject",
        request_required=False,
        response_status=202,
        errors=(400, 404),
    ),
    Route(
        "POST",
        f"{CALLS}/{{id}}/redirect",
        redirect,
        Kind.GRAPH,
        "Redirect an incoming call",
        permission="Calls.Initiate.All",
        request_schema="redirect",
        response_status=202,
        errors=(400, 403, 404),
    ),
    Route(
        "POST",
        f"{CALLS}/{{id}}/transfer",
        transfer,
        Kind.GRAPH,
        "Transfer an established call",
        permission="Calls.Initiate.All",
        request_schema="transfer",
        response_status=202,
        errors=(400, 403, 404),
    ),
    Route(
        "POST",
        f"{CALLS}/{{id}}/keepAlive",
        keep_alive,
        Kind.GRAPH,
        "Keep a call alive (at least every 45 min)",
        request_schema="anyObject",
        request_required=False,
        errors=(400, 404),
    ),
    Route(
        "GET",
        f"{CALLS}/{{id}}/participants",
        list_participants,
        Kind.GRAPH,
        "List participants",
        response_schema="participantCollection",
        errors=(404,),
    ),
    Route(
        "GET",
        f"{CALLS}/{{id}}/participants/{{pid}}",
        get_participant,
        Kind.GRAPH,
        "Get a participant",
        response_schema="participant",
        errors=(404,),
    ),
    Route(
        "GET",
        f"{CALLS}/{{id}}/operations/{{opId}}",
        get_operation,
        Kind.GRAPH,
        "Get an operation",
        response_schema="commsOperation",
        errors=(404,),
    ),
]
