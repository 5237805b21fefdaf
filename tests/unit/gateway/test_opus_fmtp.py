"""What the node's answer asks of a browser's Opus: `maxplaybackrate`/`sprop-maxcapturerate` (WebRTC then encodes
wideband at 20 kbit/s, cheaper for rtpengine to decode) and `usedtx=1` (silent browsers send almost nothing),
written into the SDP rtpengine returns, merged with an fmtp line already there, and only for Opus."""

from __future__ import annotations

import pytest

from opencomms.config import WebRtcConfig
from opencomms.gateway.opus_fmtp import BrowserOpus, with_opus_fmtp

ANSWER = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 49015 UDP/TLS/RTP/SAVPF 111 126\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:126 telephone-event/8000\r\n"
    b"a=fmtp:126 0-15\r\na=sendrecv\r\na=rtcp-mux\r\na=setup:active\r\na=ptime:20\r\n"
)


def _lines(sdp: bytes) -> list[str]:
    return sdp.decode().split("\r\n")


def test_the_answer_asks_for_wideband_opus_with_dtx_right_after_its_rtpmap() -> None:
    out = _lines(with_opus_fmtp(ANSWER, BrowserOpus().params()))
    i = out.index("a=rtpmap:111 opus/48000/2")
    assert out[i + 1] == "a=fmtp:111 maxplaybackrate=16000;sprop-maxcapturerate=16000;usedtx=1"
    assert "a=fmtp:126 0-15" in out and len(out) == len(_lines(ANSWER)) + 1


def test_an_existing_opus_fmtp_keeps_its_other_parameters_and_gets_ours() -> None:
    sdp = ANSWER.replace(b"a=fmtp:126 0-15", b"a=fmtp:111 minptime=10;useinbandfec=1;usedtx=0\r\na=fmtp:126 0-15")
    out = _lines(with_opus_fmtp(sdp, BrowserOpus(max_rate=8000, dtx=True).params()))
    fmtp = [line for line in out if line.startswith("a=fmtp:111")]
    assert fmtp == ["a=fmtp:111 minptime=10;useinbandfec=1;maxplaybackrate=8000;sprop-maxcapturerate=8000;usedtx=1"]


def test_nothing_changes_without_opus_or_without_parameters() -> None:
    g711 = ANSWER.replace(b"a=rtpmap:111 opus/48000/2", b"a=rtpmap:0 PCMU/8000")
    assert with_opus_fmtp(g711, BrowserOpus().params()) == g711
    assert with_opus_fmtp(ANSWER, BrowserOpus(max_rate=0, dtx=False).params()) == ANSWER
    assert BrowserOpus(max_rate=0, dtx=True).params() == {"usedtx": "1"}


def test_bare_newlines_stay_bare() -> None:
    sdp = ANSWER.replace(b"\r\n", b"\n")
    assert b"\na=fmtp:111 maxplaybackrate=16000;" in with_opus_fmtp(sdp, BrowserOpus().params())


@pytest.mark.parametrize("rate", [7000, 44100, -1])
def test_a_rate_opus_does_not_know_is_refused(rate: int) -> None:
    with pytest.raises(ValueError, match=r"webrtc\.browser_opus_max_rate"):
        WebRtcConfig(browser_opus_max_rate=rate)
    with pytest.raises(ValueError, match="Opus max rate"):
        BrowserOpus(max_rate=rate)
