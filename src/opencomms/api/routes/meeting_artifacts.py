"""Graph's meeting transcripts and recordings: `/users/{userId}/onlineMeetings/{meetingId}/transcripts` (and
`/recordings`), one of them, and its `content` (`text/vtt` with speaker voice tags; a recording as `audio/wav`).

Who may read (Graph's rules): an application token with OnlineMeetingTranscript.Read.All
(OnlineMeetingRecording.Read.All for recordings) and an application access policy on the organizer, or a
delegated token of the organizer with that scope at `/me/onlineMeetings/...`. The meeting must be the organizer's
(404 otherwise). The artifacts themselves: meetings/artifacts.py.
"""

from __future__ import annotations

from typing import Any

from opencomms.api.app import ApiContext
from opencomms.api.http import Request, Response
from opencomms.api.routing import Kind, Route
from opencomms.auth.permissions import DelegatedScope, Permission
from opencomms.domain.errors import NotFound, ServiceUnavailable
from opencomms.meetings.artifacts import RECORDING, TRANSCRIPT, Artifact, ArtifactStore
from opencomms.meetings.service import ME, MeetingService

USERS = "users/{userId}/onlineMeetings/{meetingId}"
MINE = "me/onlineMeetings/{meetingId}"
_COLLECTION = {TRANSCRIPT: "transcripts", RECORDING: "recordings"}
_ROLE = {
    TRANSCRIPT: Permission.ONLINE_MEETING_TRANSCRIPT_READ_ALL.value,
    RECORDING: Permission.ONLINE_MEETING_RECORDING_READ_ALL.value,
}
_SCOPE = {
    TRANSCRIPT: DelegatedScope.ONLINE_MEETING_TRANSCRIPT_READ_ALL.value,
    RECORDING: DelegatedScope.ONLINE_MEETING_RECORDING_READ_ALL.value,
}
_MEDIA = {TRANSCRIPT: b"text/vtt", RECORDING: b"audio/wav"}


def _services(ctx: ApiContext) -> tuple[MeetingService, ArtifactStore]:
    if ctx.meetings is None or ctx.meeting_artifacts is None:
        raise ServiceUnavailable("Online meetings are not enabled on this node.", retry_after=60)
    return ctx.meetings, ctx.meeting_artifacts


def _kind(req: Request) -> str:
    return TRANSCRIPT if "/transcripts" in req.path else RECORDING


def _meeting(ctx: ApiContext, req: Request, kind: str) -> tuple[str, ArtifactStore, str]:
    """(meeting id, store, the collection's base URL) after Graph's checks."""
    service, artifacts = _services(ctx)
    user = service.organizer(
        req.who, req.params.get("userId", ME), write=False, roles=(_ROLE[kind],), scopes=(_SCOPE[kind],)
    )
    meeting = service.get(user, req.params["meetingId"])
    owner = f"users/{req.params['userId']}" if "userId" in req.params else "me"
    return meeting.id, artifacts, f"{ctx.public_url}/{req.version}/{owner}"


def _context(ctx: ApiContext, req: Request, kind: str, meeting_id: str, *, entity: bool) -> str:
    owner = f"users('{req.params['userId']}')" if "userId" in req.params else "me"
    tail = "/$entity" if entity else ""
    return f"{ctx.public_url}/{req.version}/$metadata#{owner}/onlineMeetings('{meeting_id}')/{_COLLECTION[kind]}{tail}"


def _one(ctx: ApiContext, req: Request) -> tuple[Artifact, ArtifactStore, str]:
    kind = _kind(req)
    meeting_id, artifacts, base = _meeting(ctx, req, kind)
    found = artifacts.get(meeting_id, kind, req.params["artifactId"])
    if found is None:
        raise NotFound(f"The {kind} was not found.")
    return found, artifacts, base


async def list_artifacts(ctx: ApiContext, req: Request) -> Response:
    kind = _kind(req)
    meeting_id, artifacts, base = _meeting(ctx, req, kind)
    body: dict[str, Any] = {
        "@odata.context": _context(ctx, req, kind, meeting_id, entity=False),
        "value": [a.graph(base) for a in artifacts.list(meeting_id, kind)],
    }
    return Response(200, body)


async def get_artifact(ctx: ApiContext, req: Request) -> Response:
    found, _, base = _one(ctx, req)
    body = {"@odata.context": _context(ctx, req, found.kind, found.meeting_id, entity=True), **found.graph(base)}
    return Response(200, body)


async def get_content(ctx: ApiContext, req: Request) -> Response:
    found, artifacts, _ = _one(ctx, req)
    data = artifacts.content(found)
    if data is None:
        raise NotFound(f"The {found.kind}'s content is gone.")
    return Response(200, raw=data, content_type=_MEDIA[found.kind])


def _routes(base: str, who: str) -> list[Route]:
    routes = []
    for kind, name in _COLLECTION.items():
        permission = f"{_ROLE[kind]} (+ application access policy); delegated {_SCOPE[kind]}"
        one = f"{base}/{name}/{{artifactId}}"
        schema = "callTranscript" if kind == TRANSCRIPT else "callRecording"
        common: dict[str, Any] = {"permission": permission, "errors": (403, 404), "delegated": True}
        routes += [
            Route("GET", f"{base}/{name}", list_artifacts, Kind.GRAPH, f"List a meeting's {name} ({who})", **common),
            Route("GET", one, get_artifact, Kind.GRAPH, f"Get a meeting's {kind} ({who})", **common),
            Route(
                "GET",
                f"{one}/content",
                get_content,
                Kind.GRAPH,
                f"The {kind}'s content ({_MEDIA[kind].decode()}) ({who}): {schema}",
                response_media=_MEDIA[kind].decode(),
                **common,
            ),
        ]
    return routes


ROUTES = [*_routes(USERS, "application or signed-in user"), *_routes(MINE, "signed-in user")]
