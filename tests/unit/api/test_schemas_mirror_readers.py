"""The request schemas of /openapi.json mirror the wire readers: hypothesis mutates each schema's examples
(members dropped, nulled or replaced, at the top and one level down) and every body the schema accepts must be
accepted by the reader; bodies missing a required member must be refused by both."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from opencomms.api.openapi import document
from opencomms.api.routes import all_routes
from opencomms.domain.errors import BadRequest
from opencomms.subscriptions import model as subs
from opencomms.wire import calls as wc
from opencomms.wire import invites as wi
from opencomms.wire import media as wm
from opencomms.wire import mediastreams as wms
from opencomms.wire import meeting_control as wmt
from opencomms.wire.meetings import meeting_fields

DOC = document(all_routes(), "http://node")
REGISTRY: Registry = Registry().with_resource(  # type: ignore[call-arg]
    "urn:doc", Resource.from_contents(DOC, default_specification=DRAFT202012)
)
READERS: dict[str, Callable[[Any], Any]] = {
    "createCall": wc.create_call,
    "answer": wc.answer,
    "reject": wc.reject,
    "redirect": wc.redirect,
    "transfer": wc.transfer,
    "inviteParticipants": wi.invite_participants,
    "anyObject": wc.empty_or_object,
    "playPrompt": wm.play_prompt,
    "recordResponse": wm.record_response,
    "sendDtmfTones": wm.send_dtmf_tones,
    "clientContext": wm.context_only,
    "startHoldMusic": wmt.start_hold_music,
    "updateRecordingStatus": wmt.update_recording_status,
    "onlineMeeting": meeting_fields,
    "createOrGetOnlineMeeting": lambda body: meeting_fields(body, require_external_id=True),
    "onlineMeetingPatch": lambda body: meeting_fields(body, patch=True),
    "subscriptionCreate": subs.read_create,
    "subscriptionUpdate": subs.read_update,
    "startMediaStream": wms.start_media_stream,
    "stopMediaStream": lambda body: wms.stop_media_stream(wc.empty_or_object(body)),
}
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 200),
    st.sampled_from(["", "x", "audio", "AUDIO", "busy", "tone1", "#", "http://h/p", "#microsoft.graph.call"]),
    st.builds(list),
    st.builds(dict),
)


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"urn:doc#/components/schemas/{name}"}, registry=REGISTRY)


def test_every_request_schema_has_a_reader_and_examples() -> None:
    used = {
        op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        for item in DOC["paths"].values()
        for op in item.values()
        if "application/json" in op.get("requestBody", {}).get("content", {})
    }
    assert used == set(READERS)
    for name in used:
        assert DOC["components"]["schemas"][name]["examples"], name


@st.composite
def mutated(draw: st.DrawFn, example: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(example)
    for _ in range(draw(st.integers(1, 3))):
        target = body
        nested = [k for k, v in body.items() if isinstance(v, dict)]
        if nested and draw(st.booleans()):
            target = body[draw(st.sampled_from(nested))]
        keys = [*sorted(target), "extra", "clientContext", "callbackUri", "timeout", "reason"]
        key = draw(st.sampled_from(keys))
        if draw(st.booleans()) and key in target:
            del target[key]
        else:
            target[key] = draw(LEAVES)
    return body


@pytest.mark.parametrize("name", sorted(READERS))
def test_schema_valid_bodies_are_read(name: str) -> None:
    schema = DOC["components"]["schemas"][name]
    check = validator(name)
    read = READERS[name]

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.sampled_from(schema["examples"]).flatmap(mutated))
    def prop(body: dict[str, Any]) -> None:
        if not check.is_valid(body):
            return
        try:
            read(body)
        except BadRequest as exc:
            raise AssertionError(f"{name}: schema-valid body refused: {body!r}: {exc.message}") from None

    prop()
    for key in schema.get("required", ()):
        body = {k: v for k, v in schema["examples"][0].items() if k != key}
        assert not check.is_valid(body)
        with pytest.raises(BadRequest):
            read(body)


def test_an_empty_join_meeting_id_is_refused_by_schema_and_reader() -> None:
    """Found by the property above (CI, 2026-12-07): the schema let '' through where the reader refuses it."""
    body = {
        "@odata.type": "#microsoft.graph.call",
        "requestedModalities": ["audio"],
        "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
        "meetingInfo": {
            "@odata.type": "#microsoft.graph.joinMeetingIdMeetingInfo",
            "joinMeetingId": "",
            "passcode": "x",
        },
    }
    assert not validator("createCall").is_valid(body)
    with pytest.raises(BadRequest, match="must not be empty"):
        wc.create_call(body)
