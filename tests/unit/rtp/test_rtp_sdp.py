"""SDP parse/serialize and RFC 3264 offer/answer against offers from Linphone, baresip, Asterisk and a Cisco trunk;
hold (sendonly, inactive, c=0.0.0.0), no common codec (488), our own offers and their answers, versions."""

from __future__ import annotations

import dataclasses

import pytest

from opencomms.rtp import (
    PCMA,
    PCMU,
    Codec,
    Direction,
    LocalSdp,
    NegotiatedAudio,
    NegotiationError,
    SdpError,
    SessionDescription,
    accept_answer,
    answer,
    make_offer,
)
from opencomms.rtp.sdp import Connection, format_events, parse_events

from .sdp_samples import ASTERISK, BARESIP, CISCO, G729_ONLY, LINPHONE, SRTP_ONLY

ME = "203.0.113.1"


def answer_of(
    text: str, *, direction: Direction = Direction.SENDRECV, telephone_event: bool = True
) -> tuple[SessionDescription, NegotiatedAudio]:
    offer = SessionDescription.parse(text)
    result = answer(offer, ME, 20000, session_id=42, version=1, direction=direction, telephone_event=telephone_event)
    return result.sdp, result.media


@pytest.mark.parametrize("text", [LINPHONE, BARESIP, ASTERISK, CISCO, G729_ONLY, SRTP_ONLY])
def test_real_offers_round_trip(text: str) -> None:
    sdp = SessionDescription.parse(text)
    assert SessionDescription.parse(str(sdp)) == sdp
    assert str(SessionDescription.parse(str(sdp))) == str(sdp)
    assert str(sdp).endswith("\r\n") and "\n" not in str(sdp).replace("\r\n", "")


def test_parse_linphone_fields() -> None:
    sdp = SessionDescription.parse(LINPHONE)
    assert sdp.origin.username == "alice" and sdp.origin.session_id == 3043 and sdp.origin.version == 2813
    assert sdp.session_name == "Talk" and sdp.connection == Connection("192.0.2.20")
    assert ("record", "off") in sdp.attributes
    audio, video = sdp.media
    assert audio.payload_types == (96, 97, 98, 0, 8, 18, 101, 99, 100)
    assert audio.rtpmaps[96].encoding == "opus" and audio.rtpmaps[96].channels == 2
    assert audio.rtpmaps[100].clock_rate == 8000 and audio.fmtps[18] == "annexb=yes"
    assert audio.rtcp_port == 7079 and audio.attribute("rtcp-fb") == "* trr-int 5000"
    assert video.media == "video" and video.port == 9078
    assert sdp.media_direction(audio) is Direction.SENDRECV


def test_answer_linphone_picks_pcmu_and_its_8k_telephone_event_and_rejects_video() -> None:
    sdp, media = answer_of(LINPHONE)
    audio, video = sdp.media
    assert audio.port == 20000 and audio.payload_types == (0, 100)
    assert audio.rtpmaps[100].encoding == "telephone-event" and audio.fmtps[100] == "0-15"  # no fmtp offered
    assert audio.direction is Direction.SENDRECV and audio.ptime == 20
    assert video.port == 0 and video.formats == ("96",)  # rejected, same format list
    assert media.codec == PCMU
    assert media.telephone_event == 100
    assert media.remote_rtp == ("192.0.2.20", 7078)
    assert media.remote_rtcp == ("192.0.2.20", 7079)
    assert media.events == frozenset(range(16))  # no fmtp: 0-15 implied


def test_answer_baresip_and_asterisk_follow_the_offerers_order() -> None:
    sdp, media = answer_of(BARESIP)
    assert media.codec == PCMU and media.telephone_event == 101
    assert sdp.media[0].fmtps[101] == "0-15"
    assert media.remote_rtcp == ("198.51.100.5", 10351)
    sdp, media = answer_of(ASTERISK)
    assert media.codec == PCMA and sdp.media[0].payload_types == (8, 101)
    assert media.remote_maxptime == 150
    assert media.receive_payload_types == {0: "PCMU", 8: "PCMA", 101: "telephone-event"}


def test_answer_cisco_trunk_with_0_16_events_skips_g729_and_cn() -> None:
    sdp, media = answer_of(CISCO)
    assert media.codec == PCMU and media.telephone_event == 101
    assert media.events == frozenset(range(17))
    assert sdp.media[0].fmtps == {101: "0-16"}
    text = str(sdp)
    assert "m=audio 20000 RTP/AVP 0 101\r\n" in text and "c=IN IP4 203.0.113.1\r\n" in text
    assert "o=- 42 1 IN IP4 203.0.113.1\r\n" in text


def test_supported_order_does_not_override_the_offerer() -> None:
    offer = SessionDescription.parse(CISCO)
    assert answer(offer, ME, 20000, [PCMA, PCMU], session_id=1, version=1).media.codec == PCMU
    assert answer(offer, ME, 20000, [PCMA], session_id=1, version=1).media.codec == PCMA


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("a=sendonly", Direction.RECVONLY),
        ("a=inactive", Direction.INACTIVE),
        ("a=recvonly", Direction.SENDONLY),
        ("a=sendrecv", Direction.SENDRECV),
    ],
)
def test_hold_directions(change: str, expected: Direction) -> None:
    sdp, media = answer_of(ASTERISK.replace("a=sendrecv", change))
    assert sdp.media[0].direction is expected
    assert media.direction is expected


def test_old_style_hold_with_null_connection() -> None:
    text = CISCO.replace("c=IN IP4 192.0.2.44", "c=IN IP4 0.0.0.0")
    sdp, media = answer_of(text)
    assert sdp.media[0].direction is Direction.RECVONLY  # they still send; we must not
    assert media.remote_rtp is None and media.remote_rtcp is None
    sdp, media = answer_of(text.replace("a=ptime:20", "a=ptime:20\na=inactive"))
    assert media.direction is Direction.INACTIVE


def test_our_own_hold_wish_is_limited_by_the_offer() -> None:
    _, media = answer_of(ASTERISK, direction=Direction.SENDONLY)
    assert media.direction is Direction.SENDONLY
    _, media = answer_of(ASTERISK.replace("a=sendrecv", "a=sendonly"), direction=Direction.SENDONLY)
    assert media.direction is Direction.INACTIVE


def test_session_level_direction_applies_to_media() -> None:
    text = BARESIP.replace("a=sendrecv\n", "").replace("t=0 0\n", "t=0 0\na=sendonly\n")
    sdp = SessionDescription.parse(text)
    assert sdp.direction is Direction.SENDONLY and sdp.media[0].direction is None
    _, media = answer_of(text)
    assert media.direction is Direction.RECVONLY


def test_no_common_codec_is_a_488() -> None:
    with pytest.raises(NegotiationError) as info:
        answer_of(G729_ONLY)
    assert info.value.sip_status == 488 and info.value.warning_code == 305
    assert "G729/8000" in str(info.value) and "PCMU" in str(info.value)
    with pytest.raises(NegotiationError, match="RTP/SAVP"):
        answer_of(SRTP_ONLY)
    no_audio = LINPHONE.split("m=audio")[0] + "m=video" + LINPHONE.split("m=video")[1]
    with pytest.raises(NegotiationError) as info:
        answer_of(no_audio)
    assert info.value.warning_code == 304
    assert isinstance(info.value, SdpError)


def test_answer_without_telephone_event_when_not_offered_or_not_wanted() -> None:
    text = "\n".join(line for line in ASTERISK.replace(" 3 101", " 3").splitlines() if "101" not in line)
    sdp, media = answer_of(text)
    assert media.telephone_event is None and sdp.media[0].payload_types == (8,)
    sdp, media = answer_of(ASTERISK, telephone_event=False)
    assert media.telephone_event is None and sdp.media[0].payload_types == (8,)


def test_second_audio_line_is_rejected_and_a_dynamic_pcmu_is_recognised() -> None:
    text = BARESIP + "m=audio 10352 RTP/AVP 0\na=rtpmap:0 PCMU/8000\n"
    sdp, _ = answer_of(text)
    assert sdp.media[0].port == 20000 and sdp.media[1].port == 0
    dyn = BARESIP.replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:0 PCMU/8000\na=rtpmap:97 PCMU/8000").replace(
        "RTP/AVP 96 0", "RTP/AVP 96 97 0"
    )
    _, media = answer_of(dyn)
    assert media.codec == Codec("PCMU", 97)


def test_offer_and_accept_answer() -> None:
    offer = make_offer(ME, 20000, session_id=9, version=9)
    text = str(offer)
    assert "m=audio 20000 RTP/AVP 0 8 101\r\n" in text and "a=fmtp:101 0-16\r\n" in text
    assert "a=rtpmap:8 PCMA/8000\r\n" in text and "a=sendrecv\r\n" in text
    peer = SessionDescription.parse(ASTERISK.replace("17354 RTP/AVP 8 0 3 101", "17354 RTP/AVP 8 96"))
    peer = dataclasses.replace(
        peer,
        media=(
            dataclasses.replace(
                peer.media[0],
                rtpmaps={
                    8: peer.media[0].rtpmaps[8],
                    96: dataclasses.replace(peer.media[0].rtpmaps[101], payload_type=96),
                },
                fmtps={96: "0-15"},
            ),
        ),
    )
    media = accept_answer(offer, peer)
    assert media.codec == PCMA and media.telephone_event == 96 and media.events == frozenset(range(16))
    assert media.receive_payload_types[101] == "telephone-event"  # what we offered is what we receive
    assert media.remote_rtp == ("198.51.100.7", 17354)
    with pytest.raises(NegotiationError):
        accept_answer(offer, SessionDescription.parse(ASTERISK.replace("m=audio 17354", "m=audio 0")))
    with pytest.raises(NegotiationError):
        accept_answer(offer, SessionDescription.parse(G729_ONLY))


def test_accept_answer_direction_when_we_hold() -> None:
    offer = make_offer(ME, 20000, session_id=9, version=10, direction=Direction.SENDONLY)
    peer = SessionDescription.parse(ASTERISK.replace("a=sendrecv", "a=recvonly"))
    assert accept_answer(offer, peer).direction is Direction.SENDONLY
    peer = SessionDescription.parse(ASTERISK.replace("a=sendrecv", "a=inactive"))
    assert accept_answer(offer, peer).direction is Direction.INACTIVE


def test_local_sdp_versions_only_go_up_when_the_body_changes() -> None:
    local = LocalSdp(ME, 20000, session_id=500)
    first = local.offer()
    assert first.origin.session_id == 500 and first.origin.version == 500
    assert local.offer().origin.version == 500  # unchanged re-offer (session refresh)
    hold = local.offer(Direction.SENDONLY)
    assert hold.origin.version == 501 and hold.media[0].direction is Direction.SENDONLY
    resumed = local.offer()
    assert resumed.origin.version == 502
    reply = local.answer(SessionDescription.parse(CISCO))
    assert reply.sdp.origin.version == 503  # one codec instead of two: changed
    assert local.answer(SessionDescription.parse(CISCO)).sdp.origin.version == 503
    with pytest.raises(NegotiationError):
        local.answer(SessionDescription.parse(G729_ONLY))
    assert local.version == 503


def test_ipv6_connection() -> None:
    text = ASTERISK.replace("IN IP4 198.51.100.7", "IN IP6 2001:db8::7")
    result = answer(SessionDescription.parse(text), "2001:db8::1", 20000, session_id=1, version=1)
    assert result.media.remote_rtp == ("2001:db8::7", 17354)
    assert "c=IN IP6 2001:db8::1\r\n" in str(result.sdp) and "IN IP6 2001:db8::1\r\n" in str(result.sdp.origin) + "\r\n"


def test_rtcp_attribute_with_address_and_rtcp_mux_noted() -> None:
    text = BARESIP.replace("a=ptime:20", "a=ptime:20\na=rtcp:53020 IN IP4 198.51.100.99\na=rtcp-mux")
    sdp = SessionDescription.parse(text)
    assert sdp.media[0].rtcp_mux and sdp.media[0].rtcp_port == 53020
    result = answer(sdp, ME, 20000, session_id=1, version=1)
    assert result.media.remote_rtcp == ("198.51.100.99", 53020)
    assert not result.sdp.media[0].rtcp_mux  # we answer without mux: RTCP on port + 1


def test_tolerant_parsing() -> None:
    text = "v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\r\nx-garbage\r\n"
    text += "m=audio 4000 RTP/AVP 0\r\na=ptime:20.0 \r\na=foo\r\nq=unknown\r\n"
    sdp = SessionDescription.parse(text.encode())
    m = sdp.media[0]
    assert m.ptime == 20 and m.attributes == (("foo", None),) and m.other == (("q", "unknown"),)
    assert sdp.session_name == ""
    assert SessionDescription.parse(str(sdp)) == sdp


@pytest.mark.parametrize(
    "bad",
    [
        "o=- 1 1 IN IP4 1.2.3.4\r\nv=0\r\n",
        "v=0\r\ns=-\r\n",
        "v=0\r\no=- x 1 IN IP4 1.2.3.4\r\n",
        "v=0\r\no=- 1 1 IN IP4\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IPX 1.2.3.4\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nt=0\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 70000 RTP/AVP 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:x PCMU/8000\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\na=ptime:abc\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp\r\n",
        "",
    ],
)
def test_parse_errors_are_typed(bad: str) -> None:
    with pytest.raises(SdpError):
        SessionDescription.parse(bad)


def test_non_numeric_formats_on_an_rtp_line() -> None:
    sdp = SessionDescription.parse(
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 4000 RTP/AVP x\r\n"
    )
    with pytest.raises(SdpError):
        answer(sdp, ME, 20000, session_id=1, version=1)


def test_event_lists() -> None:
    assert parse_events(None) == frozenset(range(16))
    assert parse_events("0-15,66,70") == frozenset([*range(16), 66, 70])
    assert format_events([*range(17)]) == "0-16" and format_events([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    with pytest.raises(SdpError):
        parse_events("0-x")
    with pytest.raises(SdpError):
        parse_events("9-3")


def test_origin_numbers_default_to_a_random_session_id() -> None:
    result = answer(SessionDescription.parse(ASTERISK), ME, 20000)
    assert result.sdp.origin.version == result.sdp.origin.session_id > 0
    offer = make_offer(ME, 20000, session_id=7)
    assert (offer.origin.session_id, offer.origin.version) == (7, 7)
