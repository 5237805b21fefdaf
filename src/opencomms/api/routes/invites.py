"""participants/invite: ring more parties into a meeting or group call (Graph's inviteParticipantsOperation)."""

from __future__ import annotations

from opencomms.api.app import ApiContext
from opencomms.api.http import Request, Response
from opencomms.api.routes.call_actions import operation_response
from opencomms.api.routing import Kind, Route
from opencomms.domain.errors import ServiceUnavailable
from opencomms.wire import invites as wire


async def invite(ctx: ApiContext, req: Request) -> Response:
    if ctx.invites is None:
        raise ServiceUnavailable("This node runs without participant invitations.")
    body = wire.invite_participants(req.json())
    op = await ctx.invites.invite(req.who, req.params["id"], body)
    return operation_response(ctx, req, op)


ROUTES = [
    Route(
        "POST",
        "communications/calls/{id}/participants/invite",
        invite,
        Kind.GRAPH,
        "Invite up to 5 participants into a meeting or group call (a phone, a softphone user, a bot)",
        permission="Calls.InitiateGroupCall.All",
        request_schema="inviteParticipants",
        response_schema="commsOperation",
        errors=(400, 403, 404, 503),
    ),
]
