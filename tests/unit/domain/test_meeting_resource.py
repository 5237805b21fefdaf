"""The onlineMeeting model and its readers: Teams' joinWebUrl anatomy (parsed the way Microsoft's samples parse it),
Graph's date-times, store round trip, MeetingInfo, and body errors that name the field; the router prefers a
literal segment (`createOrGet`) over a capture."""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import unquote

import pytest

from opencomms.api.routing import Kind, Route, Router
from opencomms.domain.errors import BadRequest, MethodNotAllowed
from opencomms.domain.meeting_resource import Attendee, OnlineMeeting, meeting_id_for, thread_id_for
from opencomms.domain.meetings import LobbyScope, MeetingRole
from opencomms.wire.meetings import meeting_fields, parse_time

GUID = "3b3c7352-bf78-409f-bc35-bab23e9680a3"


def _meeting() -> OnlineMeeting:
    thread = thread_id_for(GUID)
    return OnlineMeeting(
        id=meeting_id_for("org", thread),
        tenant_id="tid",
        organizer_id="org",
        organizer_name="Heidi",
        thread_id=thread,
        join_meeting_id="123456789012",
        passcode="123456",
        conference_id="987654321",
        created_at=0.0,
        start=1.0,
        end=3601.0,
        app_id="app",
        attendees=(Attendee(user_id="u2", role=MeetingRole.PRESENTER), Attendee(upn="x@y.example")),
    )


def test_thread_id_is_teams_form_and_join_url_parses_like_the_csharp_samples() -> None:
    m = _meeting()
    assert m.thread_id == "19:meeting_M2IzYzczNTItYmY3OC00MDlmLWJjMzUtYmFiMjNlOTY4MGEz@thread.v2"
    wire = m.to_wire("https://node.example:8443", "+14255550100")
    decoded = unquote(wire["joinWebUrl"])
    found = re.match(
        r"https://node\.example.*/(?P<thread>[^/]+)/(?P<message>[^/]+)\?context=(?P<context>{.*})", decoded
    )
    assert found is not None and found["thread"] == m.thread_id and found["message"] == "0"
    assert json.loads(found["context"]) == {"Tid": "tid", "Oid": "org"}
    assert "/" not in m.id and base64.urlsafe_b64decode(m.id + "==").decode() == f"1*org*0**{m.thread_id}"
    assert wire["startDateTime"] == "1970-01-01T00:00:01.0000000Z"
    assert wire["audioConferencing"]["tollNumber"] == "+14255550100"
    assert wire["participants"]["attendees"][0]["role"] == "presenter"


def test_store_round_trip_and_live_view() -> None:
    m = _meeting()
    assert OnlineMeeting.from_doc(json.loads(json.dumps(m.to_doc()))) == m
    info = m.info()
    assert info.roles == (("u2", MeetingRole.PRESENTER),) and info.role_of("u2") is MeetingRole.PRESENTER
    assert info.conference_id == "987654321" and info.lobby_scope is LobbyScope.ORGANIZATION and info.end == 3601.0


def test_graph_date_times() -> None:
    assert parse_time("2019-07-12T14:30:34.2444915-07:00", "x") == pytest.approx(1562967034.244491)
    assert parse_time("2019-07-12T21:30:34Z", "x") == parse_time("2019-07-12T21:30:34", "x")
    with pytest.raises(BadRequest, match="'startDateTime'"):
        parse_time("tomorrow", "startDateTime")


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"subject": 5}, "'subject'"),
        ({"lobbyBypassSettings": {"scope": "friends"}}, "'lobbyBypassSettings.scope'"),
        ({"participants": {"attendees": [{"role": "attendee"}]}}, "'participants.attendees[0]'"),
        ({"participants": {"attendees": [{"upn": "a@b.c", "role": "boss"}]}}, "'participants.attendees[0].role'"),
        ({"joinMeetingIdSettings": {"joinMeetingId": "1"}}, "'joinMeetingIdSettings.joinMeetingId'"),
        ({"startDateTime": "2030-01-02T00:00:00Z", "endDateTime": "2030-01-01T00:00:00Z"}, "'endDateTime'"),
        ([], "JSON object"),
    ],
)
def test_bad_bodies_name_the_field(body: object, needle: str) -> None:
    with pytest.raises(BadRequest, match=re.escape(needle)):
        meeting_fields(body)


def test_patch_refuses_what_cannot_change_and_create_or_get_needs_external_id() -> None:
    with pytest.raises(BadRequest, match="'joinMeetingIdSettings' cannot be changed"):
        meeting_fields({"joinMeetingIdSettings": {"isPasscodeRequired": False}}, patch=True)
    with pytest.raises(BadRequest, match="'externalId' is required"):
        meeting_fields({}, require_external_id=True)
    fields = meeting_fields({"lobbyBypassSettings": {"scope": "EVERYONE"}, "allowMeetingChat": "enabled"})
    assert fields.lobby_scope is LobbyScope.EVERYONE and fields.extra == {"allowMeetingChat": "enabled"}


def test_router_prefers_a_literal_segment_over_a_capture() -> None:
    def handler(ctx: object, req: object) -> None:
        return None

    router = Router(
        [
            Route("GET", "m/{id}", handler, Kind.GRAPH, "get"),
            Route("DELETE", "m/{id}", handler, Kind.GRAPH, "delete"),
            Route("POST", "m/createOrGet", handler, Kind.GRAPH, "createOrGet"),
        ]
    )
    assert router.match("POST", "/v1.0/m/createOrGet")[0].summary == "createOrGet"
    assert router.match("GET", "/v1.0/m/abc")[1] == {"id": "abc"}
    with pytest.raises(MethodNotAllowed) as caught:
        router.match("GET", "/v1.0/m/createorget")
    assert caught.value.allow == ("POST",)
    with pytest.raises(MethodNotAllowed) as caught:
        router.match("POST", "/v1.0/m/abc")
    assert caught.value.allow == ("DELETE", "GET")
