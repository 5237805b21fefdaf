"""G.722 in offer/answer: a wideband offer (G722 first, as rtpengine sends for a browser and as wideband phones
send) is answered with G722 and the stream is told to code it; G.711 offerers are unchanged; `prefer_ours` puts our
order first; our own G.722 offer is read back from an answer; codec names from configuration are checked."""

from __future__ import annotations

import pytest

from opencomms.rtp import ALL_CODECS, G722, PCMA, PCMU, LocalSdp, SessionDescription, codecs_named
from opencomms.rtp.stream import StreamParams

RTPENGINE = """v=0
o=- 1 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 40000 RTP/AVP 9 0 101
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
a=rtcp:40001
a=ptime:20
"""

TRUNK = RTPENGINE.replace("RTP/AVP 9 0 101", "RTP/AVP 0 8 9 101").replace("a=rtpmap:9 G722/8000\n", "")


def test_a_g722_first_offer_is_answered_with_g722() -> None:
    answer = LocalSdp("127.0.0.1", 20000, ALL_CODECS).answer(SessionDescription.parse(RTPENGINE))
    m = answer.sdp.media[0]
    assert m.formats == ("9", "101") and m.rtpmaps[9].encoding == "G722" and m.rtpmaps[9].clock_rate == 8000
    assert m.rtpmaps[101].clock_rate == 8000  # telephone-event at the G.722 RTP clock
    params = StreamParams.from_media(answer.media)
    assert params.g722 and not params.alaw and params.payload_type == 9 and params.telephone_event == 101
    assert params.receive_payload_types[9] == "G722"


def test_g711_first_offers_keep_g711_unless_we_prefer_otherwise() -> None:
    trunk = SessionDescription.parse(TRUNK)  # "0 8 9": static G722 without an rtpmap line
    plain = LocalSdp("127.0.0.1", 20000, ALL_CODECS).answer(trunk)
    assert plain.media.codec == PCMU and not StreamParams.from_media(plain.media).g722
    ours = LocalSdp("127.0.0.1", 20000, (G722, PCMU), prefer_ours=True).answer(trunk)
    assert ours.media.codec == G722 and ours.sdp.media[0].formats == ("9", "101")
    narrow = LocalSdp("127.0.0.1", 20000, (PCMU, PCMA), prefer_ours=True).answer(SessionDescription.parse(RTPENGINE))
    assert narrow.media.codec == PCMU  # a node configured without G722 narrows browsers to PCMU


def test_our_g722_offer_and_the_peers_answer() -> None:
    local = LocalSdp("127.0.0.1", 20000, (PCMU, PCMA, G722))
    offer = local.offer()
    assert offer.media[0].formats == ("0", "8", "9", "101")
    peer = SessionDescription.parse(RTPENGINE.replace("RTP/AVP 9 0 101", "RTP/AVP 9 101"))
    media = local.accept_answer(peer)
    assert media.codec == G722 and media.telephone_event == 101 and StreamParams.from_media(media).g722


def test_codec_names() -> None:
    assert codecs_named(["g722", "PCMU", "G722"]) == (G722, PCMU)
    with pytest.raises(ValueError, match="OPUS"):
        codecs_named(["OPUS"])
