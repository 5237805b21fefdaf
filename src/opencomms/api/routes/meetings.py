"""Graph `onlineMeeting` routes: /users/{userId}/onlineMeetings and /me/onlineMeetings (create, get, $filter,
PATCH, DELETE, createOrGet), and the public pages behind a meeting's joinWebUrl and dialinUrl.

Bodies are read before anything is authorized, so a malformed body is 400 whoever sends it.
"""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from opencomms.api.app import ApiContext
from opencomms.api.http import Request, Response
from opencomms.api.routing import Kind, Route
from opencomms.domain.errors import BadRequest, NotFound, ServiceUnavailable
from opencomms.domain.meeting_resource import OnlineMeeting
from opencomms.meetings.service import ME, MeetingService
from opencomms.wire.meetings import meeting_fields

USERS = "users/{userId}/onlineMeetings"
MINE = "me/onlineMeetings"
_FILTER = re.compile(r"^\s*(joinweburl|joinmeetingidsettings/joinmeetingid)\s+eq\s+'((?:[^']|'')*)'\s*$", re.I)
_JOIN_PATH = re.compile(r"/l/meetup-join/([^/?#]+)/")
_SHORT_PATH = re.compile(r"/meet/(\d{1,32})/?$")


def _service(ctx: ApiContext) -> MeetingService:
    if ctx.meetings is None:
        raise ServiceUnavailable("Online meetings are not enabled on this node.", retry_after=60)
    return ctx.meetings


def _user_param(req: Request) -> str:
    return req.params.get("userId", ME)


def _context(ctx: ApiContext, req: Request, *, entity: bool) -> str:
    owner = "me" if "userId" not in req.params else f"users('{req.params['userId']}')"
    return f"{ctx.public_url}/{req.version}/$metadata#{owner}/onlineMeetings" + ("/$entity" if entity else "")


def _one(ctx: ApiContext, req: Request, meeting: OnlineMeeting, status: int = 200) -> Response:
    body: dict[str, Any] = {"@odata.context": _context(ctx, req, entity=True), **_service(ctx).to_wire(meeting)}
    headers = []
    if status == 201:
        base = f"{ctx.public_url}/{req.version}"
        path = f"users/{meeting.organizer_id}" if "userId" in req.params else "me"
        headers.append((b"location", f"{base}/{path}/onlineMeetings/{meeting.id}".encode()))
    return Response(status, body, headers)


async def create_meeting(ctx: ApiContext, req: Request) -> Response:
    fields = meeting_fields(req.json())
    service = _service(ctx)
    user = service.organizer(req.who, _user_param(req), write=True)
    return _one(ctx, req, service.create(req.who, user, fields), 201)


async def create_or_get(ctx: ApiContext, req: Request) -> Response:
    fields = meeting_fields(req.json(), require_external_id=True)
    service = _service(ctx)
    user = service.organizer(req.who, _user_param(req), write=True)
    meeting, created = service.create_or_get(req.who, user, fields)
    return _one(ctx, req, meeting, 201 if created else 200)


async def get_meeting(ctx: ApiContext, req: Request) -> Response:
    service = _service(ctx)
    user = service.organizer(req.who, _user_param(req), write=False)
    return _one(ctx, req, service.get(user, req.params["meetingId"]))


async def list_meetings(ctx: ApiContext, req: Request) -> Response:
    values = parse_qs(req.query, keep_blank_values=True).get("$filter")
    if not values:
        raise BadRequest(f"A $filter is required: {_FILTER_DOC[0][1]}.")
    match = _FILTER.match(values[0])
    if match is None or len(values) > 1:
        raise BadRequest("Unsupported $filter: use JoinWebUrl eq '…' or joinMeetingIdSettings/joinMeetingId eq '…'.")
    field, value = match.group(1).lower(), match.group(2).replace("''", "'")
    service = _service(ctx)
    user = service.organizer(req.who, _user_param(req), write=False)
    if field == "joinweburl":
        key = _thread_key(value)
        found = [] if key is None else service.find(user, key)
    else:
        found = service.find(user, f"join:{value.replace(' ', '')}") if len(value) <= 32 else []
    body = {"@odata.context": _context(ctx, req, entity=False), "value": [service.to_wire(m) for m in found]}
    return Response(200, body)


def _thread_key(join_url: str) -> str | None:
    """The thread key of a joinWebUrl, whether the client sent it encoded once (as Teams writes it) or twice; the
    join id key of a short link (`/meet/{joinMeetingId}?p=…`)."""
    path = urlsplit(join_url.strip()).path if len(join_url) <= 2048 else ""
    short = _SHORT_PATH.search(path)
    if short is not None:
        return f"join:{short.group(1)}"
    match = _JOIN_PATH.search(path + "/") if path else None
    if match is None:
        return None
    thread = unquote(unquote(match.group(1)))
    return f"thread:{thread}"


async def update_meeting(ctx: ApiContext, req: Request) -> Response:
    fields = meeting_fields(req.json(), patch=True)
    service = _service(ctx)
    user = service.organizer(req.who, _user_param(req), write=True)
    return _one(ctx, req, await service.update(user, req.params["meetingId"], fields))


async def delete_meeting(ctx: ApiContext, req: Request) -> Response:
    service = _service(ctx)
    user = service.organizer(req.who, _user_param(req), write=True)
    await service.delete(user, req.params["meetingId"])
    return Response(204)


# -- public pages ----------------------------------------------------------------------------------------------
_PAGE_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'"),
    (b"referrer-policy", b"no-referrer"),
]


def page(status: int, title: str, body_html: str, extra: list[tuple[bytes, bytes]] | None = None) -> Response:
    """A small self-contained HTML page (no scripts, no outside resources)."""
    doc = (
        "<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' content='width=device-width'>"
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;max-width:32em;margin:3em auto}}"
        f"</style></head><body><h1>{html.escape(title)}</h1>{body_html}</body></html>"
    )
    return Response(
        status, raw=doc.encode(), content_type=b"text/html; charset=utf-8", headers=[*_PAGE_HEADERS, *(extra or [])]
    )


def join_page(ctx: ApiContext, req: Request) -> Response:
    """What a browser sees at a joinWebUrl (browsers join in a later issue): the meeting exists, or 404."""
    found = None if ctx.meetings is None else ctx.meetings.meetings.find(f"thread:{req.params['thread'][:256]}")
    if found is None:
        raise NotFound("No such meeting.")
    number = "" if ctx.meetings is None else ctx.meetings.config.dial_in_number
    phone = (
        f"<p>Join by phone: call <b>{html.escape(number)}</b> and enter conference id "
        f"<b>{html.escape(found.conference_id)}</b>.</p>"
        if number
        else ""
    )
    return page(200, "Online meeting", f"<p>This meeting exists. Bots join it with its join link.</p>{phone}")


def short_link(ctx: ApiContext, req: Request) -> Response:
    """Teams' newer short join link, `/meet/{joinMeetingId}?p={passcode}`: a redirect to the meeting's joinWebUrl
    (which stays in the /l/meetup-join anatomy every parser expects)."""
    passcode = (parse_qs(req.query).get("p") or [""])[0][:64]
    found = _service(ctx).by_short_link(req.params["joinMeetingId"][:64], passcode, req.source)
    location = str(_service(ctx).to_wire(found)["joinWebUrl"])
    return Response(302, headers=[*_PAGE_HEADERS, (b"location", location.encode())])


def dialin_page(ctx: ApiContext, req: Request) -> Response:
    """The meeting's dialinUrl: the node's number and the conference id given (no lookup: no oracle)."""
    conference = req.params["conferenceId"]
    if not conference.isdigit() or len(conference) > 16:
        raise NotFound("No such conference id.")
    number = "" if ctx.meetings is None else ctx.meetings.config.dial_in_number
    if not number:
        return page(200, "Dial-in", "<p>This node has no dial-in number.</p>")
    return page(200, "Dial-in", f"<p>Call <b>{html.escape(number)}</b> and enter <b>{conference}</b>#.</p>")


_READ = (
    "OnlineMeetings.Read.All | OnlineMeetings.ReadWrite.All (+ application access policy); "
    "delegated OnlineMeetings.Read"
)
_WRITE = "OnlineMeetings.ReadWrite.All (+ application access policy); delegated OnlineMeetings.ReadWrite"
_FILTER_DOC = (("$filter", "JoinWebUrl eq '{joinWebUrl}' or joinMeetingIdSettings/joinMeetingId eq '{id}'"),)


def _routes(base: str, who: str) -> list[Route]:
    one = f"{base}/{{meetingId}}"
    return [
        Route(
            "POST",
            base,
            create_meeting,
            Kind.GRAPH,
            f"Create an online meeting ({who})",
            permission=_WRITE,
            request_schema="onlineMeeting",
            response_status=201,
            response_schema="onlineMeetingResource",
            errors=(400, 403, 404),
            delegated=True,
        ),
        Route(
            "GET",
            base,
            list_meetings,
            Kind.GRAPH,
            f"Find online meetings by join URL or id ({who})",
            permission=_READ,
            response_schema="onlineMeetingCollection",
            errors=(400, 403, 404),
            query=_FILTER_DOC,
            delegated=True,
        ),
        Route(
            "POST",
            f"{base}/createOrGet",
            create_or_get,
            Kind.GRAPH,
            f"Create an online meeting, or get the one with this externalId ({who})",
            permission=_WRITE,
            request_schema="createOrGetOnlineMeeting",
            response_status=201,
            response_schema="onlineMeetingResource",
            errors=(400, 403, 404),
            delegated=True,
        ),
        Route(
            "GET",
            one,
            get_meeting,
            Kind.GRAPH,
            f"Get an online meeting ({who})",
            permission=_READ,
            response_schema="onlineMeetingResource",
            errors=(403, 404),
            delegated=True,
        ),
        Route(
            "PATCH",
            one,
            update_meeting,
            Kind.GRAPH,
            f"Update an online meeting ({who})",
            permission=_WRITE,
            request_schema="onlineMeetingPatch",
            response_schema="onlineMeetingResource",
            errors=(400, 403, 404),
            delegated=True,
        ),
        Route(
            "DELETE",
            one,
            delete_meeting,
            Kind.GRAPH,
            f"Delete an online meeting; a live meeting ends for everyone ({who})",
            permission=_WRITE,
            response_status=204,
            errors=(403, 404),
            delegated=True,
        ),
    ]


ROUTES = [
    *_routes(USERS, "application or signed-in user"),
    *_routes(MINE, "signed-in user"),
    Route(
        "GET",
        "l/meetup-join/{thread}/{message}",
        join_page,
        Kind.PUBLIC,
        "A meeting's join link (HTML)",
        response_media="text/html",
        errors=(404,),
    ),
    Route(
        "GET",
        "meet/{joinMeetingId}",
        short_link,
        Kind.PUBLIC,
        "A meeting's short join link (Teams' /meet/{joinMeetingId}?p={passcode}): redirects to its joinWebUrl",
        response_status=302,
        errors=(404, 429),
        query=(("p", "The meeting's passcode (required when the meeting requires one)"),),
    ),
    Route(
        "GET",
        "l/dialin/{conferenceId}",
        dialin_page,
        Kind.PUBLIC,
        "A meeting's dial-in page (HTML)",
        response_media="text/html",
        errors=(404,),
    ),
]
