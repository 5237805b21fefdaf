"""Negotiating a relayed browser's Opus (`webrtc.opus_in_node`): the node answers `opus/48000/2` under the offer's
payload type with the telephone-event of the same 48 kHz clock, the stream is set up for Opus, and a node without
OPUS in its list (every phone leg) still answers G.711."""

from __future__ import annotations

from opencomms.rtp.offer_answer import OPUS, PCMU, answer
from opencomms.rtp.sdp import SessionDescription
from opencomms.rtp.stream import StreamParams

OFFER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 111 0 8 110 126\r\n"
    "a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n"
    "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:110 telephone-event/48000\r\na=rtpmap:126 telephone-event/8000\r\na=sendrecv\r\n"
)


def test_a_relayed_browser_gets_opus_at_its_payload_type() -> None:
    result = answer(SessionDescription.parse(OFFER), "127.0.0.1", 30000, (OPUS, PCMU))
    media = result.media
    assert media.codec.name == "opus" and media.codec.payload_type == 111 and media.codec.clock_rate == 48000
    assert media.telephone_event == 110  # RFC 4733 at the codec's clock
    assert "a=rtpmap:111 opus/48000/2" in str(result.sdp)
    assert media.receive_payload_types[111] == "opus"
    params = StreamParams.from_media(media)
    assert params.opus and not params.g722 and params.payload_type == 111


def test_without_opus_in_its_list_the_node_answers_g711() -> None:
    result = answer(SessionDescription.parse(OFFER), "127.0.0.1", 30000, (PCMU,))
    assert result.media.codec.name == "PCMU" and not StreamParams.from_media(result.media).opus


def test_the_relay_flags_keep_the_browsers_opus_and_the_knobs_are_checked() -> None:
    import pytest

    from opencomms.config import WebRtcConfig
    from opencomms.gateway.rtpengine import WEBRTC_TO_PLAIN_OPUS

    codec = WEBRTC_TO_PLAIN_OPUS["codec"]
    assert codec["strip"] == ["all"] and "opus" in codec["except"] and "transcode" not in codec
    assert WEBRTC_TO_PLAIN_OPUS["transport-protocol"] == "RTP/AVP"
    assert WebRtcConfig().opus_in_node is True  # the default since 2026-12-07
    for bad in ({"node_opus_complexity": 11}, {"node_opus_bitrate": 64000}):
        with pytest.raises(ValueError):
            WebRtcConfig(**bad)  # type: ignore[arg-type]
