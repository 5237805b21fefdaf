"""Call records: `GET /communications/callRecords` (a page, `$filter` on startDateTime, `$top`, `@odata.nextLink`)
and `GET /communications/callRecords/{id}` (id = callChainId), guarded by CallRecords.Read.All.

Records of SIP calls carry the RTP/RTCP quality of each phone leg (see calling/records.py); bot-to-bot, group and
meeting calls get sessions too (calling/record_writer.py). `$expand` follows Graph: `sessions`, or
`sessions($expand=segments)`; without it the records come without sessions.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode

from opencomms.api.app import ApiContext
from opencomms.api.http import Request, Response
from opencomms.api.routing import Kind, Route
from opencomms.auth.permissions import Permission
from opencomms.calling import record_query, records
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


def list_call_records(ctx: ApiContext, req: Request) -> Response:
    caller = req.who
    CallService.require(caller, READ_ALL)
    query = parse_qs(req.query, keep_blank_values=True)
    page = record_query.list_records(ctx.calls.store, caller.tenant_id, record_query.parse_query(query))
    base = f"{ctx.public_url}/{req.version}"
    body = {"@odata.context": f"{base}/$metadata#communications/callRecords", "value": page.items}
    if page.next_token is not None:
        kept = [(k, v[0]) for k, v in query.items() if k.lstrip("$").lower() in ("filter", "top", "expand")]
        body["@odata.nextLink"] = f"{base}/communications/callRecords?" + urlencode(
            [*kept, ("$skiptoken", page.next_token)]
        )
    return Response(200, body)


ROUTES = [
    Route(
        "GET",
        "communications/callRecords",
        list_call_records,
        Kind.GRAPH,
        "List call records (newest last), filtered on startDateTime, paged with @odata.nextLink",
        permission=READ_ALL,
        response_schema="callRecordCollection",
        errors=(400, 403),
        query=(
            ("$filter", "startDateTime ge|gt|le|lt|eq <date-time>, joined by 'and'"),
            ("$top", f"page size, 1 to {record_query.MAX_PAGE} (default {record_query.DEFAULT_PAGE})"),
            ("$skiptoken", "from @odata.nextLink"),
            ("$expand", "'sessions' or 'sessions($expand=segments)'; without it, no sessions"),
        ),
    ),
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
