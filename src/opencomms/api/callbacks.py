"""The API's judgement of a URL a bot gives for the node to post to (`callbackUri`), by the node's egress policy.

IP literals, encoded numeric hosts and `localhost` names are judged at once; other host names are resolved (off the
loop, within `egress.resolve_timeout`) and refused when they resolve to an address the policy refuses. A name that
does not resolve in time is accepted: the dispatcher checks every connection again (connect time, no rebinding).
Must not store or send anything.
"""

from __future__ import annotations

from opencomms.api.app import ApiContext
from opencomms.domain.errors import BadRequest
from opencomms.net.egress import EgressRefused

__all__ = ["check_callback"]


async def check_callback(ctx: ApiContext, uri: str | None, field: str = "callbackUri") -> None:
    """Raise `BadRequest` ("callbackUri: loopback address 127.0.0.1 is not allowed") unless `uri` may be posted to."""
    if uri is None or ctx.egress is None:
        return
    try:
        await ctx.egress.check_url_resolved(uri)
    except EgressRefused as exc:
        raise BadRequest(f"{field}: {exc.reason}") from None
