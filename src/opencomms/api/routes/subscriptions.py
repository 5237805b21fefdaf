"""Change-notification subscriptions, as Graph's `/subscriptions`: create (with the validation handshake), list,
get, renew (PATCH expirationDateTime) and delete. Only changeType `created`, on `/communications/callRecords` (needs
CallRecords.Read.All, like reading the records) and on the tenant's meeting transcripts and recordings
(`/communications/onlineMeetings/getAllTranscripts`: OnlineMeetingTranscript.Read.All; `.../getAllRecordings`:
OnlineMeetingRecording.Read.All). Listing and managing them takes any of the three. See subscriptions/service.py.
"""

from __future__ import annotations

from opencomms.api.app import ApiContext
from opencomms.api.http import Request, Response
from opencomms.api.routing import Kind, Route
from opencomms.auth.permissions import Permission
from opencomms.calling.service import CallService
from opencomms.domain.errors import NotFound
from opencomms.subscriptions import model
from opencomms.subscriptions.service import SubscriptionService

READ_ALL = Permission.CALLS_RECORDS_READ_ALL.value
SUBS = "subscriptions"


def _service(ctx: ApiContext, req: Request, needed: str | None = None) -> SubscriptionService:
    if needed is not None:
        CallService.require(req.who, needed)
    elif not req.who.roles & set(model.RESOURCES.values()):
        CallService.require(req.who, READ_ALL)  # the same 403 as before
    service: SubscriptionService | None = ctx.subscriptions
    if service is None:
        raise NotFound("This node has no change-notification subscriptions.")
    return service


def _entity(ctx: ApiContext, req: Request) -> str:
    return f"{ctx.public_url}/{req.version}/$metadata#subscriptions/$entity"


async def create_subscription(ctx: ApiContext, req: Request) -> Response:
    body = req.json()
    read = model.read_create(body)  # a malformed body is 400 before anything else is judged
    service = _service(ctx, req, model.RESOURCES[read["resource"]])
    sub = await service.create(req.who.tenant_id, req.who.app_id, body)
    location = f"{ctx.public_url}/{req.version}/{SUBS}/{sub.id}".encode()
    return Response(201, {"@odata.context": _entity(ctx, req), **sub.graph()}, [(b"location", location)])


def list_subscriptions(ctx: ApiContext, req: Request) -> Response:
    subs = _service(ctx, req).list(req.who.tenant_id, req.who.app_id)
    context = f"{ctx.public_url}/{req.version}/$metadata#subscriptions"
    return Response(200, {"@odata.context": context, "value": [s.graph() for s in subs]})


def get_subscription(ctx: ApiContext, req: Request) -> Response:
    sub = _service(ctx, req).get(req.who.tenant_id, req.who.app_id, req.params["id"])
    return Response(200, {"@odata.context": _entity(ctx, req), **sub.graph()})


async def update_subscription(ctx: ApiContext, req: Request) -> Response:
    body = req.json()
    model.read_update(body)
    service = _service(ctx, req)
    sub = await service.update(req.who.tenant_id, req.who.app_id, req.params["id"], body)
    return Response(200, {"@odata.context": _entity(ctx, req), **sub.graph()})


def delete_subscription(ctx: ApiContext, req: Request) -> Response:
    _service(ctx, req).delete(req.who.tenant_id, req.who.app_id, req.params["id"])
    return Response(204, None)


ROUTES = [
    Route(
        "POST",
        SUBS,
        create_subscription,
        Kind.GRAPH,
        "Subscribe to change notifications (created callRecords); the notificationUrl must pass the validation",
        permission=READ_ALL,
        request_schema="subscriptionCreate",
        response_status=201,
        response_schema="subscription",
        errors=(400, 403),
    ),
    Route(
        "GET",
        SUBS,
        list_subscriptions,
        Kind.GRAPH,
        "List this application's subscriptions",
        permission=READ_ALL,
        response_schema="subscriptionCollection",
        errors=(403,),
    ),
    Route(
        "GET",
        f"{SUBS}/{{id}}",
        get_subscription,
        Kind.GRAPH,
        "Get a subscription",
        permission=READ_ALL,
        response_schema="subscription",
        errors=(403, 404),
    ),
    Route(
        "PATCH",
        f"{SUBS}/{{id}}",
        update_subscription,
        Kind.GRAPH,
        "Renew a subscription (expirationDateTime, at most 4230 minutes ahead)",
        permission=READ_ALL,
        request_schema="subscriptionUpdate",
        response_schema="subscription",
        errors=(400, 403, 404),
    ),
    Route(
        "DELETE",
        f"{SUBS}/{{id}}",
        delete_subscription,
        Kind.GRAPH,
        "Delete a subscription",
        permission=READ_ALL,
        response_status=204,
        errors=(403, 404),
    ),
]
