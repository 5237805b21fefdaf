"""Call records: `GET /communications/callRecords/{id}` (id = callChainId), guarded by CallRecords.Read.All.

Records of SIP calls carry the RTP/RTCP quality of each phone leg (see calling/records.py). `$expand` follows
Graph: `sessions`, or `sessions($expand=segments)`; without it the record comes without sessions.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from opencomms.api.app import ApiContext
from opencomms.api.http import Request, Response
from opencomms.api.routing import Kind, Route
from opencomms.auth.permissions import Permission
from opencomms.calling import records
from opencomms.calling.service import CallService
from opencomms.domain.errors import NotFound
from opencomms.domain.ids import normalize_id

READ_ALL = Permission.CALLS_RECORDS_READ_ALL.value


def get_call_record(ctx: ApiContext, req: Request) -> Response:
    caller = req.who
    CallService.require(caller, READ_ALL)
    query = parse_qs(req.query, keep_blank_values=True)
    expand = (query.get("$expand") or query.get("expand") or [""])[0]
    record = records.view(ctx.calls.store, caller.tenant_id, normalize_id(req.params["id"]), expand)
    if record is None:
        raise NotFound(f"No call record with id {req.params['id']!r}.")
    context = f"{ctx.public_url}/{req.version}/$metadata#communications/callRecords/$entity"
    return Response(200, {"@odata.context": context, **record})


ROUTES = [
    Route(
        "GET",
        "communications/callRecords/{id}",
        get_call_record,
        Kind.GRAPH,
        "Get a call record (media quality of SIP legs)",
        permission=READ_ALL,
        response_schema="callRecord",
        errors=(403, 404),
        query=(("$expand", "'sessions' or 'sessions($expand=segments)'; without it, no sessions"),),
    ),
]
