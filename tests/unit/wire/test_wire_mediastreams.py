"""Twilio Media Streams messages: the node's messages are numbered and shaped as Twilio's, the bot's are read or
refused, and the REST bodies are checked."""

from __future__ import annotations

import base64
import json

import pytest

from opencomms.domain.errors import BadRequest
from opencomms.wire import mediastreams as wire


def test_messages_are_numbered_and_shaped_like_twilios() -> None:
    enc = wire.StreamEncoder("MZ1", "call-1", "tenant-1", ("inbound", "outbound"), {"a": "b"})
    assert json.loads(enc.connected()) == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    start = json.loads(enc.start())
    assert start["sequenceNumber"] == "1" and start["streamSid"] == "MZ1"
    assert start["start"]["tracks"] == ["inbound", "outbound"] and start["start"]["customParameters"] == {"a": "b"}
    first = json.loads(enc.media("inbound", b"\xff" * 160, 0))
    other = json.loads(enc.media("outbound", b"\x7f" * 160, 0))
    second = json.loads(enc.media("inbound", b"\xff" * 160, 20))
    assert [m["sequenceNumber"] for m in (first, other, second)] == ["2", "3", "4"]
    assert [m["media"]["chunk"] for m in (first, other, second)] == ["1", "1", "2"]  # per track
    assert second["media"]["timestamp"] == "20" and base64.b64decode(second["media"]["payload"]) == b"\xff" * 160
    assert json.loads(enc.dtmf("#"))["dtmf"] == {"track": "inbound_track", "digit": "#"}
    assert json.loads(enc.mark("m"))["mark"] == {"name": "m"}
    assert json.loads(enc.stop())["stop"] == {"accountSid": "tenant-1", "callSid": "call-1"}
    assert wire.new_stream_sid().startswith("MZ") and len(wire.new_stream_sid()) == 34


def test_bot_messages_are_read_or_refused() -> None:
    payload = base64.b64encode(b"\x00\x01").decode()
    assert wire.parse_inbound(json.dumps({"event": "media", "media": {"payload": payload}})) == wire.Media(b"\x00\x01")
    assert wire.parse_inbound('{"event":"mark","streamSid":"MZ1","mark":{"name":"x"}}') == wire.Mark("x")
    assert wire.parse_inbound('{"event":"clear","streamSid":"MZ1"}') == wire.Clear()
    assert wire.parse_inbound('{"event":"something-new"}') is None
    for bad in ("not json", "[]", '{"event":"media"}', '{"event":"media","media":{"payload":"!!"}}', "{}"):
        with pytest.raises(wire.StreamError):
            wire.parse_inbound(bad)
    with pytest.raises(wire.StreamError):
        wire.parse_inbound(json.dumps({"event": "mark", "mark": {"name": "x" * 300}}))


def test_start_and_stop_bodies() -> None:
    req = wire.start_media_stream({"url": "wss://bot/s", "track": "both", "customParameters": {"k": "v"}})
    assert (req.url, req.track, req.custom_parameters, req.participant_id) == ("wss://bot/s", "both", {"k": "v"}, None)
    assert wire.start_media_stream({"url": "ws://bot/s"}).track == "inbound"
    for body in (
        {},
        {"url": "https://bot/s"},
        {"url": "ws://bot/s", "track": "sideways"},
        {"url": "ws://bot/s", "customParameters": {"k": 1}},
        {"url": "ws://bot/s", "customParameters": {str(i): "v" for i in range(17)}},
    ):
        with pytest.raises(BadRequest):
            wire.start_media_stream(body)
    assert wire.stop_media_stream(None) == wire.StopMediaStream(None, None)
    assert wire.stop_media_stream({"streamSid": "MZ1"}).stream_sid == "MZ1"
