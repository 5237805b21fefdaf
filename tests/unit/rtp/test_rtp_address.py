"""Peer media addresses (rtp/address.py) and their use in offer/answer: what a c= line may name, what the node may
send to, and host names found and replaced; pure, no sockets or resolvers."""

from __future__ import annotations

import pytest

from opencomms.rtp.address import (
    AddressError,
    check_destination,
    hostnames,
    is_literal,
    media_host,
    with_addresses,
)
from opencomms.rtp.offer_answer import LocalSdp, NegotiationError, answer
from opencomms.rtp.sdp import SessionDescription


def offer(c: str = "IN IP4 192.0.2.10", extra: str = "", port: int = 4000) -> SessionDescription:
    return SessionDescription.parse(
        f"v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc={c}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n{extra}"
    )


@pytest.mark.parametrize(
    ("address", "kind", "expected"),
    [
        ("192.0.2.10", "IP4", "192.0.2.10"),
        ("2001:DB8::1", "IP6", "2001:db8::1"),
        ("0.0.0.0", "IP4", "0.0.0.0"),  # hold
        ("::", "IP6", "::"),
        ("Media.Example.COM.", "IP4", "media.example.com"),
        ("some.name.invalid", "IP4", "some.name.invalid"),
        ("localhost", "IP4", "localhost"),
    ],
)
def test_acceptable_connection_addresses_are_normalised(address: str, kind: str, expected: str) -> None:
    assert media_host(address, kind) == expected


@pytest.mark.parametrize(
    "address",
    [
        "224.2.1.1/127",  # multicast with TTL
        "224.2.1.1",
        "ff02::1",
        "255.255.255.255",
        "999.1.1.1",  # neither an IPv4 address nor a name
        "1.2.3",
        "na\x00me.example",
        "bad\ufffdname.example",  # undecodable bytes, as the SDP parser replaces them
        "-leading.example",
        "a" * 64 + ".example",  # label too long
        "x." * 130 + "com",  # name too long
        "under_score.example",
        "fe80::1%eth0",
        "",
        "2001:db8::1",  # IPv6 in an IP4 line
    ],
)
def test_unusable_connection_addresses_are_refused(address: str) -> None:
    with pytest.raises(AddressError) as info:
        media_host(address, "IP4")
    assert info.value.sip_status == 488 and info.value.warning_code == 301


def test_an_ipv4_address_in_an_ip6_line_is_refused() -> None:
    with pytest.raises(AddressError, match="IPv4"):
        media_host("192.0.2.1", "IP6")


def test_destinations_are_unicast_literals_of_the_sockets_family() -> None:
    check_destination("192.0.2.10", 4000, version=4, allow_loopback=False)
    check_destination("127.0.0.1", 4000, version=4, allow_loopback=True)
    for host, port, version, loopback in [
        ("127.0.0.1", 4000, 4, False),
        ("::1", 4000, 6, False),
        ("2001:db8::1", 4000, 4, True),
        ("192.0.2.10", 4000, 6, True),
        ("0.0.0.0", 4000, 4, True),
        ("239.1.1.1", 4000, 4, True),
        ("media.example.com", 4000, 4, True),
        ("192.0.2.10", 0, 4, True),
        ("192.0.2.10", 65536, 4, True),
    ]:
        with pytest.raises(AddressError):
            check_destination(host, port, version=version, allow_loopback=loopback)


def test_host_names_are_found_at_every_level_and_replaced() -> None:
    sdp = offer("IN IP4 Media.Example.com", "a=rtcp:4001 IN IP4 rtcp.example.com\r\nm=video 0 RTP/AVP 31\r\n")
    assert hostnames(sdp) == {("media.example.com", "IP4"), ("rtcp.example.com", "IP4")}
    fixed = with_addresses(sdp, {"media.example.com": "192.0.2.7", "rtcp.example.com": "192.0.2.8"})
    assert hostnames(fixed) == set()
    assert fixed.connection is not None and fixed.connection.address == "192.0.2.7"
    assert fixed.media[0].rtcp_connection is not None and fixed.media[0].rtcp_connection.address == "192.0.2.8"
    assert is_literal("192.0.2.7") and not is_literal("media.example.com")


def test_rejected_and_held_streams_need_no_address() -> None:
    assert hostnames(offer("IN IP4 0.0.0.0")) == set()
    assert hostnames(offer("IN IP4 garbage!", port=0)) == set()  # port 0: never sent to
    with pytest.raises(AddressError):
        hostnames(offer("IN IP4 garbage!"))


def test_answering_an_offer_with_a_bad_address_is_a_488_not_a_crash() -> None:
    for c in ("IN IP4 224.0.0.1/32", "IN IP4 bad\ufffd", "IN IP6 10.0.0.1"):
        with pytest.raises(AddressError):
            answer(offer(c), "127.0.0.1", 20000)
    with pytest.raises(AddressError, match="RTCP port"):
        answer(offer(extra="a=rtcp:70000\r\n"), "127.0.0.1", 20000)
    with pytest.raises(AddressError, match="RTCP port"):
        answer(offer(port=65535), "127.0.0.1", 20000)  # RTCP would be 65536
    local = LocalSdp("127.0.0.1", 20000)
    version = local.version
    with pytest.raises(AddressError):
        local.answer(offer("IN IP4 239.1.1.1/3"))
    assert local.version == version  # a refused offer does not use up a version of our SDP
    with pytest.raises(NegotiationError):  # the codec check still says 305 for what it refuses
        local.answer(SessionDescription.parse(str(offer()).replace("RTP/AVP 0 101", "RTP/AVP 18")))


def test_hold_and_ipv6_literals_negotiate() -> None:
    held = answer(offer("IN IP4 0.0.0.0"), "127.0.0.1", 20000).media
    assert held.remote_rtp is None and not held.direction.sends
    v6 = answer(offer("IN IP6 2001:DB8::5"), "::1", 20000).media
    assert v6.remote_rtp == ("2001:db8::5", 4000) and v6.remote_rtcp == ("2001:db8::5", 4001)
