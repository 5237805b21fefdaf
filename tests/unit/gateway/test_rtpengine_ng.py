"""rtpengine's ng protocol without rtpengine: bencode round trips and bounds, requests matched to responses by
cookie (strays, duplicates and garbage ignored), "error" results raised with rtpengine's reason, the generated
daemon configuration."""

from __future__ import annotations

import pytest

from opencomms.gateway.rtpengine import (
    WEBRTC_TO_PLAIN,
    BencodeError,
    NgProtocol,
    NgRejected,
    bdecode,
    bencode,
    result_of,
)
from opencomms.gateway.rtpengine_daemon import RtpEngineSettings, render_config


def test_bencode_round_trip_sorts_keys_and_keeps_bytes() -> None:
    value = {"sdp": b"v=0\r\n", "command": "offer", "flags": ["a", "b"], "n": -3, "codec": {"mask": ["all"]}}
    raw = bencode(value)
    assert raw.startswith(b"d5:codecd4:maskl3:allee7:command5:offer")
    assert bdecode(raw) == {
        "sdp": b"v=0\r\n",
        "command": b"offer",
        "flags": [b"a", b"b"],
        "n": -3,
        "codec": {"mask": [b"all"]},
    }


@pytest.mark.parametrize(
    "raw",
    [b"", b"i12", b"ixe", b"5:abc", b"d3:keyi1e", b"l" * 40 + b"e" * 40, b"di1ei2ee", b"i1ei2e", b"99999999999:a"],
)
def test_bdecode_refuses_malformed_or_unbounded_input(raw: bytes) -> None:
    with pytest.raises(BencodeError):
        bdecode(raw)


def test_bencode_refuses_what_it_cannot_encode() -> None:
    with pytest.raises(BencodeError):
        bencode({"ok": True})  # type: ignore[dict-item]


def test_responses_match_requests_by_cookie_once() -> None:
    ng = NgProtocol()
    cookie, datagram = ng.request("offer", {"call-id": "c1", **WEBRTC_TO_PLAIN})
    assert datagram.startswith(cookie.encode() + b" d")
    assert bdecode(datagram.split(b" ", 1)[1])["ICE"] == b"remove"
    assert ng.receive(b"other d6:result2:oke") is None  # not ours
    assert ng.receive(cookie.encode() + b" not-bencode") is None  # garbage keeps the request pending
    response = ng.receive(cookie.encode() + b" d6:result2:ok3:sdp3:v=0e")
    assert response is not None and response.body["sdp"] == b"v=0"
    assert ng.receive(cookie.encode() + b" d6:result2:oke") is None  # a duplicate
    assert not ng.pending


def test_an_error_result_carries_rtpengine_reason() -> None:
    assert result_of({"result": b"pong"}) == {"result": b"pong"}
    with pytest.raises(NgRejected, match="Incomplete SDP"):
        result_of({"result": b"error", "error-reason": b"Incomplete SDP specification"})


def test_generated_config_is_userspace_on_the_given_ports() -> None:
    text = render_config(RtpEngineSettings(ng_port=4321, port_min=50000, port_max=50099))
    assert "listen-ng = 127.0.0.1:4321" in text and "table = -1" in text
    assert "port-min = 50000" in text and "port-max = 50099" in text and "delete-delay = 0" in text
