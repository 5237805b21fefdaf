"""Request readers: tolerant where Graph's material is inconsistent (enum case, `@odata.type` spelling, abstract
types without a discriminator), strict on types and limits, and every refusal a BadRequest naming the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from opencomms.domain.errors import BadRequest
from opencomms.wire import calls as wire
from opencomms.wire import reader as r

APP = "9a0c1d7e-3b2f-4c5d-8e6f-7a8b9c0d1e2f"


def target(app_id: str = APP, **extra: Any) -> dict[str, Any]:
    return {"identity": {"application": {"id": app_id}}, **extra}


def create_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "@odata.type": "#microsoft.graph.call",
        "callbackUri": "https://bot.example.com/api/calls",
        "targets": [target()],
        "requestedModalities": ["audio"],
        "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not _DROP}


_DROP = object()


def refused(fn: Any, body: Any, *fragments: str) -> str:
    """Call the reader, expect BadRequest, and check the message contains every fragment."""
    with pytest.raises(BadRequest) as info:
        fn(body)
    err = info.value
    assert (err.status, err.code) == (400, "invalidRequest")
    for fragment in fragments:
        assert fragment in err.message, (fragment, err.message)
    return err.message


# -- primitives ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw",
    [
        "#microsoft.graph.call",
        "microsoft.graph.call",
        "#Microsoft.Graph.Call",
        "#MICROSOFT.GRAPH.CALL",
        "call",
        "#call",
        "CALL",
    ],
)
def test_odata_type_is_matched_case_insensitively_with_or_without_prefix(raw: str) -> None:
    assert r.odata_type({"@odata.type": raw}, "", ("call",)) == "#microsoft.graph.call"


def test_odata_type_absent_is_none() -> None:
    assert r.odata_type({}, "x", ("call",)) is None
    assert r.odata_type({"@odata.type": None}, "x", ("call",)) is None


def test_odata_type_unknown_names_the_field_and_the_choices() -> None:
    with pytest.raises(BadRequest) as info:
        r.odata_type({"@odata.type": "#microsoft.graph.user"}, "mediaConfig", ("a", "b"))
    msg = info.value.message
    assert "'mediaConfig'" in msg and "#microsoft.graph.user" in msg
    assert "#microsoft.graph.a" in msg and "#microsoft.graph.b" in msg


@pytest.mark.parametrize("raw", [1, True, [], {}, 2.5])
def test_odata_type_must_be_a_string(raw: Any) -> None:
    with pytest.raises(BadRequest, match=r"'mediaConfig\.@odata\.type' must be a string"):
        r.odata_type({"@odata.type": raw}, "mediaConfig", ("x",))
    with pytest.raises(BadRequest, match=r"^'@odata\.type' must be a string"):
        r.odata_type({"@odata.type": raw}, "", ("x",))


@pytest.mark.parametrize(
    ("value", "members", "expected"),
    [
        ("AUDIO", wire.MODALITIES, "audio"),
        ("Audio", wire.MODALITIES, "audio"),
        ("videobasedscreensharing", wire.MODALITIES, "videoBasedScreenSharing"),
        ("VIDEOBASEDSCREENSHARING", wire.MODALITIES, "videoBasedScreenSharing"),
        ("UnknownFutureValue", wire.MODALITIES, "unknownFutureValue"),
        ("unknownfuturevalue", wire.REJECT_REASONS, "unknownFutureValue"),
        ("None", wire.REJECT_REASONS, "none"),
        ("BUSY", wire.REJECT_REASONS, "busy"),
        ("Forbidden", wire.REJECT_REASONS, "forbidden"),
    ],
)
def test_enums_parse_case_insensitively_to_camel_case(value: str, members: tuple[str, ...], expected: str) -> None:
    assert r.enum_value(value, "f", members) == expected


@pytest.mark.parametrize("value", ["smell", "", " audio", "audio ", "aud", "audio,video"])
def test_enum_unknown_value_is_refused_listing_members(value: str) -> None:
    with pytest.raises(BadRequest) as info:
        r.enum_value(value, "requestedModalities[0]", wire.MODALITIES)
    assert "'requestedModalities[0]'" in info.value.message and "audio" in info.value.message


@pytest.mark.parametrize("value", [1, None, True, ["audio"], {"audio": 1}])
def test_enum_must_be_a_string(value: Any) -> None:
    with pytest.raises(BadRequest, match=r"'reason' must be a string"):
        r.enum_value(value, "reason", wire.REJECT_REASONS)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(20, 20), ("20", 20), (" 20 ", 20), ("-3", -3), (0, 0), (None, None)],
)
def test_integer_accepts_ints_and_numeric_strings(value: Any, expected: int | None) -> None:
    assert r.integer({"n": value}, "n", "") == expected


@pytest.mark.parametrize(
    "value",
    [
        True,
        False,
        20.0,
        20.5,
        "20.0",
        "1e3",
        "abc",
        "",
        " ",
        "--5",  # used to pass the digit check and crash int() (500)
        "-",
        "²",  # str.isdigit() is true for superscripts, int() is not: used to be a 500
        "١٢",  # Arabic-Indic digits
        "1" * 5000,  # beyond int()'s digit limit: used to be a 500
        [],
        {},
    ],
)
def test_integer_refuses_everything_else(value: Any) -> None:
    with pytest.raises(BadRequest, match=r"'timeout' must be an integer"):
        r.integer({"timeout": value}, "timeout", "")


def test_integer_range_names_bounds() -> None:
    with pytest.raises(BadRequest, match=r"'x.n' must be between 1 and 5"):
        r.integer({"n": 6}, "n", "x.", lo=1, hi=5)
    with pytest.raises(BadRequest, match=r"between 1 and 5"):
        r.integer({"n": "0"}, "n", "x.", lo=1, hi=5)


def test_string_rules() -> None:
    assert r.string({"s": "x"}, "s", "") == "x"
    assert r.string({}, "s", "") is None
    assert r.string({"s": ""}, "s", "") == ""
    with pytest.raises(BadRequest, match=r"'p.s' is required"):
        r.string({}, "s", "p.", required=True)
    with pytest.raises(BadRequest, match=r"'p.s' must not be empty"):
        r.string({"s": ""}, "s", "p.", required=True)
    with pytest.raises(BadRequest, match=r"'p.s' must be a string"):
        r.string({"s": 5}, "s", "p.")
    with pytest.raises(BadRequest, match=r"'p.s' is longer than 3 characters"):
        r.string({"s": "abcd"}, "s", "p.", max_len=3)


def test_boolean_rules() -> None:
    assert r.boolean({"b": False}, "b", "") is False
    assert r.boolean({}, "b", "") is None
    for value in (0, 1, "true", "false", [], {}):
        with pytest.raises(BadRequest, match=r"'o.b' must be true or false"):
            r.boolean({"b": value}, "b", "o.")


def test_array_rules() -> None:
    assert r.array({"a": [1]}, "a", "") == [1]
    assert r.array({}, "a", "") is None
    with pytest.raises(BadRequest, match=r"'a' is required"):
        r.array({}, "a", "", required=True)
    for value in ("x", {"0": 1}, 1, True):
        with pytest.raises(BadRequest, match=r"'a' must be an array"):
            r.array({"a": value}, "a", "")
    with pytest.raises(BadRequest, match=r"at least 2"):
        r.array({"a": [1]}, "a", "", min_items=2)
    with pytest.raises(BadRequest, match=r"at most 2"):
        r.array({"a": [1, 2, 3]}, "a", "", max_items=2)


@pytest.mark.parametrize(
    "value",
    ["https://bot.example.com/cb", "http://127.0.0.1:8080/x?y=1", "HTTPS://BOT.EXAMPLE.COM", "http://[::1]:80/a"],
)
def test_url_accepts_absolute_http_urls(value: str) -> None:
    assert r.url({"u": value}, "u", "") == value


@pytest.mark.parametrize(
    "value",
    [
        "ftp://bot.example.com/x",
        "bot.example.com/x",
        "/relative",
        "https://",
        "https:///path",
        "javascript:alert(1)",
        "http://[::1",  # unclosed IPv6 bracket: urlsplit raises ValueError (used to be a 500)
        "http://[not-an-ip]/",
        "http://exa\uff03mple.com/",  # fullwidth '#' NFKC-normalises into a delimiter: ValueError (was a 500)
        "",
    ],
)
def test_url_refuses_anything_else(value: str) -> None:
    with pytest.raises(BadRequest, match=r"'callbackUri' must be an absolute http\(s\) URL|must not be empty"):
        r.url({"callbackUri": value}, "callbackUri", "")


def test_url_length_limit() -> None:
    with pytest.raises(BadRequest, match=r"longer than 2048"):
        r.url({"u": "https://x.example/" + "a" * 2048}, "u", "")


@pytest.mark.parametrize("value", [None, [], "x", 1, True])
def test_as_object(value: Any) -> None:
    with pytest.raises(BadRequest, match=r"^The body must be a JSON object"):
        r.as_object(value, "")
    with pytest.raises(BadRequest, match=r"^'source' must be a JSON object"):
        r.as_object(value, "source")


# -- media configuration -----------------------------------------------------------------------------
def test_media_config_without_type_and_with_blob_is_app_hosted() -> None:
    out = wire.media_config({"blob": "<media config blob>"}, "mediaConfig")
    assert out["@odata.type"] == "#microsoft.graph.appHostedMediaConfig"
    assert wire.is_app_hosted(out)


@pytest.mark.parametrize("body", [{}, {"preFetchMedia": []}, {"removeFromDefaultAudioGroup": False}])
def test_media_config_without_type_or_blob_is_service_hosted(body: dict[str, Any]) -> None:
    out = wire.media_config(body, "mediaConfig")
    assert out["@odata.type"] == "#microsoft.graph.serviceHostedMediaConfig"
    assert out["preFetchMedia"] == []
    assert not wire.is_app_hosted(out)
    for key, value in body.items():  # unknown members (§14 row 6) are echoed
        if key != "preFetchMedia":
            assert out[key] == value


def test_media_config_explicit_type_wins_over_inference() -> None:
    out = wire.media_config({"@odata.type": "#Microsoft.Graph.AppHostedMediaConfig", "blob": "b"}, "m")
    assert out["@odata.type"] == "#microsoft.graph.appHostedMediaConfig"
    with pytest.raises(BadRequest, match=r"'m.blob' is required"):
        wire.media_config({"@odata.type": "appHostedMediaConfig"}, "m")
    out = wire.media_config({"@odata.type": "serviceHostedMediaConfig", "blob": "ignored"}, "m")
    assert out["@odata.type"] == "#microsoft.graph.serviceHostedMediaConfig"


def test_media_config_refusals_name_the_field() -> None:
    with pytest.raises(BadRequest, match=r"'mediaConfig'.*#microsoft.graph.serviceHostedMediaConfig"):
        wire.media_config({"@odata.type": "#microsoft.graph.mediaConfig"}, "mediaConfig")
    with pytest.raises(BadRequest, match=r"'mediaConfig.blob' must be a string"):
        wire.media_config({"blob": 5}, "mediaConfig")
    with pytest.raises(BadRequest, match=r"'mediaConfig.blob' must not be empty"):
        wire.media_config({"blob": ""}, "mediaConfig")
    with pytest.raises(BadRequest, match=r"'mediaConfig.preFetchMedia' must be an array"):
        wire.media_config({"preFetchMedia": {}}, "mediaConfig")
    with pytest.raises(BadRequest, match=r"'mediaConfig.preFetchMedia\[1\].uri' is required"):
        wire.media_config({"preFetchMedia": [{"uri": "https://x.example/a.wav"}, {}]}, "mediaConfig")
    with pytest.raises(BadRequest, match=r"'mediaConfig.preFetchMedia\[0\]'"):
        wire.media_config(
            {"preFetchMedia": [{"@odata.type": "#microsoft.graph.prompt", "uri": "https://x/a"}]}, "mediaConfig"
        )
    with pytest.raises(BadRequest, match=r"'mediaConfig' must be a JSON object"):
        wire.media_config("serviceHosted", "mediaConfig")


def test_pre_fetch_media_is_normalised() -> None:
    out = wire.media_config({"preFetchMedia": [{"uri": "https://x.example/a.wav", "resourceId": "r1"}]}, "m")
    assert out["preFetchMedia"] == [
        {"@odata.type": "#microsoft.graph.mediaInfo", "uri": "https://x.example/a.wav", "resourceId": "r1"}
    ]


# -- identities ----------------------------------------------------------------------------------------
def test_identity_set_normalises_and_echoes_unknown_members() -> None:
    out = wire.identity_set(
        {"application": {"id": APP}, "user": None, "endpointType": "default", "x-extra": [1]}, "identity"
    )
    assert out == {
        "@odata.type": "#microsoft.graph.identitySet",
        "application": {"@odata.type": "#microsoft.graph.identity", "id": APP},
        "endpointType": "default",
        "x-extra": [1],
    }


def test_identity_set_needs_one_identity() -> None:
    with pytest.raises(BadRequest, match=r"'targets\[0\].identity' must name at least one of: application"):
        wire.identity_set({"user": None, "foo": {}}, "targets[0].identity")


@pytest.mark.parametrize(
    ("identity", "fragment"),
    [
        ({"application": "app"}, "'t.application' must be a JSON object"),
        ({"application": {"id": 5}}, "'t.application.id' must be a string"),
        ({"application": {"id": "x" * 257}}, "'t.application.id' is longer than 256"),
        ({"user": {"displayName": ["a"]}}, "'t.user.displayName' must be a string"),
        ({"user": {"@odata.type": "#microsoft.graph.call"}}, "'t.user'"),
        ({"@odata.type": "#microsoft.graph.identity", "user": {}}, "Unknown @odata.type"),
        ({"phone": {"id": "+1425"}, "endpointType": 3}, "'t.endpointType' must be a string"),
    ],
)
def test_identity_refusals_name_the_field(identity: dict[str, Any], fragment: str) -> None:
    refused(lambda b: wire.identity_set(b, "t"), identity, fragment)


def test_identity_subtypes_are_accepted() -> None:
    out = wire.identity_set({"user": {"@odata.type": "communicationsUserIdentity", "id": "u"}}, "t")
    assert out["user"]["@odata.type"] == "#microsoft.graph.communicationsUserIdentity"
    out = wire.identity_set({"@odata.type": "#microsoft.graph.communicationsIdentitySet", "guest": {}}, "t")
    assert out["@odata.type"] == "#microsoft.graph.communicationsIdentitySet"


def test_invitation_participant_info() -> None:
    out = wire.invitation_participant_info(target(hidden=True, replacesCallId="c"), "targets[0]")
    assert out["@odata.type"] == "#microsoft.graph.invitationParticipantInfo"
    assert out["hidden"] is True and out["replacesCallId"] == "c"
    for bad, fragment in [
        ({}, "'targets[0].identity' is required"),
        ({"identity": None}, "'targets[0].identity' is required"),
        (target(hidden="yes"), "'targets[0].hidden' must be true or false"),
        (target(removeFromDefaultAudioRoutingGroup=1), "'targets[0].removeFromDefaultAudioRoutingGroup'"),
        (target(participantId=1), "'targets[0].participantId' must be a string"),
        (target(**{"@odata.type": "#microsoft.graph.participantInfo"}), "Unknown @odata.type"),
        ("app", "'targets[0]' must be a JSON object"),
    ]:
        refused(lambda b: wire.invitation_participant_info(b, "targets[0]"), bad, fragment)


def test_participant_info() -> None:
    out = wire.participant_info({"identity": {"applicationInstance": {"id": "i"}}, "countryCode": "us"}, "source")
    assert out["@odata.type"] == "#microsoft.graph.participantInfo"
    refused(lambda b: wire.participant_info(b, "source"), {}, "'source.identity' is required")
    refused(
        lambda b: wire.participant_info(b, "source"),
        {"identity": {"user": {}}, "languageId": 1},
        "'source.languageId' must be a string",
    )


# -- create call ---------------------------------------------------------------------------------------
def test_create_call_minimal_and_defaults() -> None:
    req = wire.create_call({"targets": [target()], "mediaConfig": {}})
    assert req.callback_uri is None
    assert req.requested_modalities == ["audio"]
    assert req.media_config["@odata.type"] == "#microsoft.graph.serviceHostedMediaConfig"
    assert req.targets[0]["identity"]["application"]["id"] == APP
    assert req.source is None and req.call_options is None and req.tenant_id is None and req.subject is None


def test_create_call_normalises_and_keeps_open_members() -> None:
    body = create_body(
        requestedModalities=["AUDIO", "Video"],
        callOptions={"isContentSharingNotificationEnabled": True},
        subject="hello",
        tenantId="t",
        answeredBy="beta-only",
        id="client-chosen",
        state="established",
    )
    req = wire.create_call(body)
    assert req.requested_modalities == ["audio", "video"]
    assert req.call_options == {
        "@odata.type": "#microsoft.graph.outgoingCallOptions",
        "isContentSharingNotificationEnabled": True,
    }
    assert req.subject == "hello" and req.tenant_id == "t"
    assert req.extra == {"answeredBy": "beta-only"}  # read-only members are dropped, unknown ones echoed


def test_create_call_does_not_mutate_its_input() -> None:
    body = create_body(mediaConfig={"blob": "b"})
    before = copy.deepcopy(body)
    wire.create_call(body)
    assert body == before


def test_create_call_accepts_max_25_targets() -> None:
    assert len(wire.create_call(create_body(targets=[target()] * 25)).targets) == 25
    refused(wire.create_call, create_body(targets=[target()] * 26), "'targets' accepts at most 25 items")


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"@odata.type": "#microsoft.graph.participant"}, "Unknown @odata.type"),
        ({"@odata.type": 7}, "'@odata.type' must be a string"),
        ({"mediaConfig": _DROP}, "'mediaConfig' is required"),
        ({"mediaConfig": None}, "'mediaConfig' is required"),
        ({"mediaConfig": {"@odata.type": "#microsoft.graph.foo"}}, "at 'mediaConfig'"),
        ({"mediaConfig": []}, "'mediaConfig' must be a JSON object"),
        ({"targets": _DROP}, "'targets' is required"),
        ({"targets": []}, "'targets' needs at least 1"),
        ({"targets": target()}, "'targets' must be an array"),
        ({"targets": [target(), "bob"]}, "'targets[1]' must be a JSON object"),
        ({"targets": [{"identity": {"x": {}}}]}, "'targets[0].identity' must name at least one"),
        ({"targets": [{"@odata.type": "#microsoft.graph.identitySet", **target()}]}, "at 'targets[0]'"),
        ({"callbackUri": 12}, "'callbackUri' must be a string"),
        ({"callbackUri": "ftp://x.example"}, "'callbackUri' must be an absolute http(s) URL"),
        ({"callbackUri": "http://[::1"}, "'callbackUri' must be an absolute http(s) URL"),
        ({"requestedModalities": "audio"}, "'requestedModalities' must be an array"),
        ({"requestedModalities": []}, "'requestedModalities' needs at least 1"),
        ({"requestedModalities": ["audio"] * 9}, "'requestedModalities' accepts at most 8"),
        ({"requestedModalities": ["smell"]}, "'requestedModalities[0]' has unknown value 'smell'"),
        ({"requestedModalities": [1]}, "'requestedModalities[0]' must be a string"),
        ({"source": "me"}, "'source' must be a JSON object"),
        ({"source": {}}, "'source.identity' is required"),
        ({"tenantId": 1}, "'tenantId' must be a string"),
        ({"tenantId": "t" * 65}, "'tenantId' is longer than 64"),
        ({"subject": 1}, "'subject' must be a string"),
        ({"subject": "s" * 1025}, "'subject' is longer than 1024"),
        ({"callOptions": True}, "'callOptions' must be a JSON object"),
        ({"callOptions": {"hideBotAfterEscalation": "yes"}}, "'callOptions.hideBotAfterEscalation' must be true"),
        ({"callOptions": {"@odata.type": "#microsoft.graph.callOptions"}}, "at 'callOptions'"),
        ({"chatInfo": {"threadId": "19:x"}}, "'chatInfo' joins a meeting together with 'meetingInfo'"),
        ({"meetingInfo": {"joinMeetingId": "1"}}, "'targets' accepts at most 0 items"),
        ({"meetingInfo": {"token": "t"}, "targets": None}, "'meetingInfo' needs an '@odata.type'"),
        ({"meetingInfo": {"organizer": {"user": {"id": "u"}}}, "targets": None}, "'chatInfo' with the meeting's"),
    ],
)
def test_create_call_refusals_name_the_field(changes: dict[str, Any], fragment: str) -> None:
    refused(wire.create_call, create_body(**changes), fragment)


@pytest.mark.parametrize("body", [None, [], "call", 1, True, 1.5])
def test_create_call_needs_an_object(body: Any) -> None:
    refused(wire.create_call, body, "The body must be a JSON object")


# -- answer / reject / redirect / transfer / keepAlive ---------------------------------------------------
def test_answer_defaults_and_inference() -> None:
    req = wire.answer({"mediaConfig": {"blob": "b"}})
    assert wire.is_app_hosted(req.media_config)
    assert req.accepted_modalities == ["audio"]  # §14 row 2
    assert req.callback_uri is None and req.call_options is None and req.participant_capacity is None
    req = wire.answer({"mediaConfig": {}, "callOptions": {}, "acceptedModalities": ["Audio"], "participantCapacity": 5})
    assert req.call_options == {"@odata.type": "#microsoft.graph.incomingCallOptions"}
    assert req.accepted_modalities == ["audio"] and req.participant_capacity == 5


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "'mediaConfig' is required"),
        ({"mediaConfig": {}, "acceptedModalities": ["audio", "hologram"]}, "'acceptedModalities[1]'"),
        ({"mediaConfig": {}, "participantCapacity": -1}, "'participantCapacity' must be between 0 and 1000"),
        ({"mediaConfig": {}, "participantCapacity": 1001}, "'participantCapacity' must be between 0 and 1000"),
        ({"mediaConfig": {}, "participantCapacity": "many"}, "'participantCapacity' must be an integer"),
        ({"mediaConfig": {}, "callbackUri": "mailto:bot@example.com"}, "'callbackUri' must be an absolute"),
        ({"mediaConfig": {"@odata.type": "#microsoft.graph.call"}}, "at 'mediaConfig'"),
    ],
)
def test_answer_refusals(body: dict[str, Any], fragment: str) -> None:
    refused(wire.answer, body, fragment)


@pytest.mark.parametrize(("raw", "expected"), [(None, "none"), ("Busy", "busy"), ("FORBIDDEN", "forbidden")])
def test_reject_reason_case_insensitive(raw: str | None, expected: str) -> None:
    body = {} if raw is None else {"reason": raw}
    assert wire.reject(body).reason == expected


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"reason": "maybe"}, "'reason' has unknown value"),
        ({"reason": 486}, "'reason' must be a string"),
        ({"callbackUri": "nope"}, "'callbackUri' must be an absolute"),
        ([], "The body must be a JSON object"),
        (0, "The body must be a JSON object"),
    ],
)
def test_reject_refusals(body: Any, fragment: str) -> None:
    refused(wire.reject, body, fragment)


@pytest.mark.parametrize("timeout", [15, 55, 90, "15", "90"])
def test_redirect_timeout_in_range(timeout: Any) -> None:
    assert wire.redirect({"targets": [target()], "timeout": timeout}).timeout == int(timeout)


@pytest.mark.parametrize("timeout", [14, 91, 0, -15, "14", "91", 1000])
def test_redirect_timeout_out_of_range(timeout: Any) -> None:
    refused(wire.redirect, {"targets": [target()], "timeout": timeout}, "'timeout' must be between 15 and 90")


@pytest.mark.parametrize("timeout", [20.5, 30.0, True, "thirty", [20], {"s": 20}])
def test_redirect_timeout_must_be_integer(timeout: Any) -> None:
    refused(wire.redirect, {"targets": [target()], "timeout": timeout}, "'timeout' must be an integer")


def test_redirect_targets() -> None:
    assert wire.redirect({"targets": [target()]}).timeout is None
    assert len(wire.redirect({"targets": [target()] * 25}).targets) == 25
    refused(wire.redirect, {"targets": [target()] * 26}, "'targets' accepts at most 25 items")
    refused(wire.redirect, {}, "'targets' is required")
    refused(wire.redirect, {"targets": []}, "'targets' needs at least 1")
    refused(wire.redirect, {"targets": [{"identity": {}}]}, "'targets[0].identity' must name at least one")


def test_transfer() -> None:
    req = wire.transfer({"transferTarget": target(), "transferee": {"identity": {"user": {"id": "u"}}}})
    assert req.transfer_target["@odata.type"] == "#microsoft.graph.invitationParticipantInfo"
    assert req.transferee is not None and req.transferee["@odata.type"] == "#microsoft.graph.participantInfo"
    assert wire.transfer({"transferTarget": target()}).transferee is None
    refused(wire.transfer, {}, "'transferTarget' is required")
    refused(wire.transfer, {"transferTarget": []}, "'transferTarget' must be a JSON object")
    refused(wire.transfer, {"transferTarget": target(replacesCallId="c")}, "Consultative transfer")
    refused(wire.transfer, {"transferTarget": target(), "transferee": {}}, "'transferee.identity' is required")
    refused(
        wire.transfer,
        {"transferTarget": target(), "transferee": {"identity": {"user": {}}, "participantId": 3}},
        "'transferee.participantId' must be a string",
    )


def test_empty_or_object() -> None:
    assert wire.empty_or_object(None) == {}
    assert wire.empty_or_object({"clientContext": "c"}) == {"clientContext": "c"}
    for body in ([], "", 0, False):
        refused(wire.empty_or_object, body, "The body must be a JSON object")


def test_refusals_do_not_reflect_huge_values() -> None:
    huge = "#microsoft.graph." + "x" * 100_000
    with pytest.raises(BadRequest) as info:
        r.odata_type({"@odata.type": huge}, "mediaConfig", ("serviceHostedMediaConfig",))
    assert len(info.value.message) < 300 and "'mediaConfig'" in info.value.message
    with pytest.raises(BadRequest) as info:
        r.enum_value("y" * 100_000, "reason", wire.REJECT_REASONS)
    assert len(info.value.message) < 300 and "'reason'" in info.value.message
    with pytest.raises(BadRequest, match=r"unknown value 'maybe';"):  # short values are quoted whole
        r.enum_value("maybe", "reason", wire.REJECT_REASONS)
