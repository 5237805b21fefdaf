"""What the routes of a call's actions share (media, media streams, transcription, meeting control, invites):
bringing the call into this node's memory, and the 200 answer with the operation and a Location header naming it,
as Graph answers its call actions."""

from __future__ import annotations

from opencomms.api.app import ApiContext
from opencomms.api.http import Request, Response
from opencomms.domain.ids import normalize_id

__all__ = ["load_call", "operation_response"]


async def load_call(ctx: ApiContext, req: Request) -> None:
    """Bring the call's conversation into this node's memory if the store has it (the services read views);
    whether the caller may act on it is the service's question, asked after the body is read."""
    if ctx.calls.leg(req.params["id"]) is None:
        await ctx.calls.find(normalize_id(req.params["id"]))


def operation_response(ctx: ApiContext, req: Request, op: dict[str, object], status: int = 200) -> Response:
    """The operation, with its URL in the Location header."""
    location = f"{ctx.public_url}/{req.version}/communications/calls/{req.params['id']}/operations/{op['id']}"
    return Response(status, op, [(b"location", location.encode())])
