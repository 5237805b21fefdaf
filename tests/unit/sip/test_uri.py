"""SIP/SIPS/tel URIs: components, text round trip, RFC 3261 §19.1.4 comparison, and what is refused."""

from __future__ import annotations

import pytest

from opencomms.sip.uri import (
    AbsoluteUri,
    SipUri,
    TelUri,
    UriError,
    format_params,
    get_param,
    has_param,
    parse_sip_uri,
    parse_uri,
    remove_param,
    set_param,
)


def test_components() -> None:
    uri = parse_sip_uri("sips:alice:secret@Atlanta.example.com:5061;transport=tcp;lr;maddr=10.0.0.1?subject=hi&x=")
    assert uri.scheme == "sips" and uri.secure
    assert (uri.user, uri.password, uri.host, uri.port) == ("alice", "secret", "Atlanta.example.com", 5061)
    assert uri.params == (("transport", "tcp"), ("lr", None), ("maddr", "10.0.0.1"))
    assert uri.transport == "tcp" and uri.has_param("LR") and uri.param("lr") == "" and uri.param("ttl") is None
    assert uri.headers == (("subject", "hi"), ("x", ""))


def test_ipv6_references() -> None:
    uri = parse_sip_uri("sip:[2001:db8::10]:5070;transport=udp")
    assert uri.host == "[2001:db8::10]" and uri.host_unbracketed == "2001:db8::10" and uri.port == 5070
    assert parse_sip_uri("sip:bob@[::1]").port is None
    assert parse_sip_uri("sip:[2001:db8::10]").equivalent(parse_sip_uri("sip:[2001:0db8:0:0:0:0:0:10]"))
    for bad in ("sip:[2001:db8::10", "sip:[nothex::1]", "sip:[::1]x"):
        with pytest.raises(UriError):
            parse_uri(bad)


@pytest.mark.parametrize(
    "text",
    [
        "sip:alice@atlanta.com",
        "sips:bob@biloxi.com:5061;transport=tcp",
        "sip:+12125551212@server.phone2net.com;user=phone",
        "sip:%61lice@atlanta.com;transport=TCP",
        "sip:alice;day=tuesday@atlanta.com",
        "sip:192.0.2.4",
        "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
        "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:[2001:db8::1]:5060;maddr=[2001:db8::2]",
        "tel:+1-201-555-0123",
        "tel:7042;phone-context=example.com",
        "urn:service:sos",
        "http://www.example.com/a?b",
    ],
)
def test_text_round_trip(text: str) -> None:
    assert str(parse_uri(text)) == text


# RFC 3261 §19.1.4: pairs that are equivalent, and pairs that are not
EQUIVALENT = [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
    (
        "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
        "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
    ),
    (
        "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
    ),
]
NOT_EQUIVALENT = [
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
    ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
    ("sip:alice@atlanta.com", "sips:alice@atlanta.com"),
    ("sip:alice@atlanta.com", "tel:+1234"),
]


@pytest.mark.parametrize(("a", "b"), EQUIVALENT)
def test_equivalent(a: str, b: str) -> None:
    assert parse_uri(a).equivalent(parse_uri(b))
    assert parse_uri(b).equivalent(parse_uri(a))


@pytest.mark.parametrize(("a", "b"), NOT_EQUIVALENT)
def test_not_equivalent(a: str, b: str) -> None:
    assert not parse_uri(a).equivalent(parse_uri(b))
    assert not parse_uri(b).equivalent(parse_uri(a))


def test_tel_and_absolute() -> None:
    tel = parse_uri("tel:+1-201-555-0123;ext=42")
    assert isinstance(tel, TelUri) and tel.is_global and tel.digits == "+12015550123" and tel.param("ext") == "42"
    assert tel.equivalent(parse_uri("tel:+1(201)5550123;EXT=42"))
    other = parse_uri("isbn:2983792873")
    assert isinstance(other, AbsoluteUri) and other.scheme == "isbn" and other.opaque == "2983792873"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "sip:",
        "<sip:a@b>",
        "sip:a@b c",
        "sip:user@example.com; lr",
        "sip:a@b@c",
        "sip:@host",
        "sip:host:99999",
        "sip:host:",
        "sip:host:5x",
        "sip:ho$t",
        "sip:300.1.1.1",
        "sip:host;;lr",
        "sip:host;a=",
        "sip:host?x",
        "sip:host?",
        "sip:a\x00b@host",
        "sip:host;p=%zz",
        "tel:",
        "tel:12 34",
        "9sip:x",
        "nocolon",
        'mailto:"x"',
    ],
)
def test_refused(bad: str) -> None:
    with pytest.raises(UriError):
        parse_uri(bad)


def test_parse_sip_uri_refuses_other_schemes() -> None:
    with pytest.raises(UriError):
        parse_sip_uri("tel:+123")


def test_builders_do_not_mutate() -> None:
    uri = SipUri("example.com", "bob")
    with_lr = uri.with_param("lr")
    assert str(with_lr) == "sip:bob@example.com;lr" and str(uri) == "sip:bob@example.com"
    assert str(with_lr.with_param("transport", "tcp").without_param("lr")) == "sip:bob@example.com;transport=tcp"
    assert str(SipUri("h", headers=(("a", "b"),)).without_headers()) == "sip:h"


def test_param_helpers() -> None:
    params = (("A", "1"), ("b", None), ("a", "2"))
    assert get_param(params, "a") == "1" and get_param(params, "B") == "" and get_param(params, "c") is None
    assert has_param(params, "B") and not has_param(params, "c")
    assert set_param(params, "a", "9") == (("a", "9"), ("b", None))
    assert set_param(params, "c", None) == (*params, ("c", None))
    assert remove_param(params, "a") == (("b", None),)
    assert format_params(params) == ";A=1;b;a=2"
