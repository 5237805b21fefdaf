"""Messages: the header multi-map, typed accessors, parse/serialize round trips, Content-Length and size rules,
and the stateless builders (responses, ACK for non-2xx, CANCEL, error answers)."""

from __future__ import annotations

import pytest

from opencomms.sip.builders import build_ack_for_non2xx, build_cancel, build_request, error_response, make_response
from opencomms.sip.headers import (
    HeaderError,
    Headers,
    NameAddr,
    Via,
    canonical_name,
    parse_cseq,
    parse_name_addr,
    parse_params,
    parse_via,
    quote_string,
    split_list,
    unquote_string,
)
from opencomms.sip.message import SipRequest, SipResponse, reason_phrase
from opencomms.sip.parser import ParseLimits, SipParseError, parse, read_head
from opencomms.sip.uri import SipUri, parse_uri


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


INVITE = crlf(
    "INVITE sip:bob@biloxi.example.com SIP/2.0\n"
    "Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\n"
    "Via: SIP/2.0/TCP proxy.example.com;branch=z9hG4bKproxy1, SIP/2.0/UDP [2001:db8::1]:5070;branch=z9hG4bKv6\n"
    "Max-Forwards: 70\n"
    "To: Bob <sip:bob@biloxi.example.com>\n"
    'From: "Alice A." <sip:alice@atlanta.example.com>;tag=1928301774\n'
    "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\n"
    "CSeq: 314159 INVITE\n"
    "Contact: <sip:alice@pc33.atlanta.example.com>;expires=99999999999, <sip:alice@10.0.0.1>\n"
    "Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\n"
    "Route: <sip:p3.example.com;lr>\n"
    "Require: timer\n"
    "Supported: replaces, 100rel\n"
    "Expires: 30\n"
    "Content-Type: application/sdp\n"
    "Content-Length: 5\n"
    "\n"
    "v=0\n"
)


def invite() -> SipRequest:
    m = parse(INVITE)
    assert isinstance(m, SipRequest)
    return m


# --- Headers ----------------------------------------------------------------------------------------------------


def test_headers_are_ordered_case_insensitive_and_canonical() -> None:
    h = Headers([("v", "a"), ("X-Custom", "1"), ("VIA", "b"), ("cseq", "1 INVITE"), ("x-custom", "2")])
    assert [n for n, _ in h] == ["Via", "X-Custom", "Via", "CSeq", "x-custom"]
    assert h.get("via") == "a" and h.get_all("V") == ["a", "b"] and h.get_all("X-CUSTOM") == ["1", "2"]
    assert "Via" in h and "t" not in h and h.count("x-custom") == 2
    h.add_first("Via", "top")
    assert h.get_all("Via") == ["top", "a", "b"] and h.items()[0] == ("Via", "top")
    h.set("X-Custom", "only")
    assert h.get_all("x-custom") == ["only"]
    h.replace_first("Via", "new-top")
    assert h.get_all("Via") == ["new-top", "a", "b"]
    h.remove_first("Via")
    assert h.remove("via") == 2 and h.get("Via") is None
    h.set_default("To", "x")
    h.set_default("To", "y")
    assert h.get("t") == "x"
    copy = h.copy()
    copy.add("Z", "1")
    assert "Z" not in h and copy != h
    with pytest.raises(KeyError):
        h.replace_first("Nope", "1")
    first = Headers([("Y-A", "1")])
    first.add_first("Y-B", "2")
    assert first.items() == [("Y-B", "2"), ("Y-A", "1")]


def test_compact_forms() -> None:
    expected = {
        "i": "Call-ID",
        "m": "Contact",
        "e": "Content-Encoding",
        "l": "Content-Length",
        "f": "From",
        "t": "To",
        "v": "Via",
        "s": "Subject",
        "k": "Supported",
        "c": "Content-Type",
    }
    for short, long in expected.items():
        assert canonical_name(short) == long
        assert canonical_name(short.upper()) == long
    assert canonical_name("www-authenticate") == "WWW-Authenticate" and canonical_name("X-Foo") == "X-Foo"


# --- value grammars ---------------------------------------------------------------------------------------------


def test_split_list_respects_quotes_and_brackets() -> None:
    assert split_list('"a, b" <sip:x;p=1,2>;q=1 , <sip:y>') == ['"a, b" <sip:x;p=1,2>;q=1', "<sip:y>"]
    assert split_list("a,,b") == ["a", "", "b"]
    with pytest.raises(HeaderError):
        split_list('"unterminated, x')


def test_params_and_quoting() -> None:
    assert parse_params(' ; a = 1 ;b; c="x;y" ;d=[::1]') == (("a", "1"), ("b", None), ("c", '"x;y"'), ("d", "[::1]"))
    for bad in (";", ";;a", "a", ";a=", ";a=1 b"):
        with pytest.raises(HeaderError):
            parse_params(bad)
    assert unquote_string('"a\\"b\\\\c"') == 'a"b\\c' and unquote_string("plain") == "plain"
    assert quote_string('a"b\\c\x00d\r\n') == '"a\\"b\\\\c\\\x00d"'


def test_name_addr_forms() -> None:
    a = parse_name_addr('"Bob \\"B\\"" <sip:bob@example.com;transport=tcp>;tag=xyz;q=0.5')
    assert a.display_name == 'Bob "B"' and a.tag == "xyz" and a.param("q") == "0.5"
    assert isinstance(a.uri, SipUri) and a.uri.transport == "tcp"
    assert str(a) == '"Bob \\"B\\"" <sip:bob@example.com;transport=tcp>;tag=xyz;q=0.5'
    b = parse_name_addr("sip:bob@example.com;tag=1")  # addr-spec: parameters belong to the header
    assert b.tag == "1" and isinstance(b.uri, SipUri) and b.uri.params == ()
    assert parse_name_addr("Bob Smith <tel:+123>").display_name == "Bob Smith"
    assert parse_name_addr("<sip:x@y>").display_name is None
    assert str(a.with_tag("new").without_param("q")) == '"Bob \\"B\\"" <sip:bob@example.com;transport=tcp>;tag=new'
    assert parse_name_addr("<sip:x@y>;expires=99999999999").expires == 2**32 - 1
    assert parse_name_addr("<sip:x@y>;expires=abc").expires is None
    for bad in ("", '"x" sip:y', "<sip:x@y", "a,b <sip:x@y>", "< sip:x@y >", "sip:x@y?h=1", "<sip:x@y> junk"):
        with pytest.raises(HeaderError):
            parse_name_addr(bad)


def test_via() -> None:
    v = parse_via("SIP / 2.0 / udp  [2001:db8::1] : 5070 ; branch=z9hG4bKx ; rport ; received=10.0.0.1")
    assert (v.transport, v.host, v.port, v.branch) == ("UDP", "[2001:db8::1]", 5070, "z9hG4bKx")
    assert v.wants_rport and v.rport is None and v.received == "10.0.0.1" and v.sent_by == "[2001:db8::1]:5070"
    assert parse_via("SIP/2.0/TLS Host.Example.com;branch=z").sent_by == "host.example.com:5061"
    filled = v.with_param("rport", "4000")
    assert filled.rport == 4000 and str(filled).startswith("SIP/2.0/UDP [2001:db8::1]:5070;branch=z9hG4bKx;rport=4000")
    assert str(Via("TCP", "h", None, (("branch", "b"),))) == "SIP/2.0/TCP h;branch=b"
    for bad in ("SIP/2.0 host", "HTTP/1.1/TCP host", "SIP/2.0/UDP", "SIP/2.0/UDP h:99999", "SIP/2.0/UDP h;;"):
        with pytest.raises(HeaderError):
            parse_via(bad)


def test_cseq() -> None:
    assert parse_cseq(" 0009  INVITE ") == parse_cseq("9 INVITE")
    assert str(parse_cseq("1 BYE")) == "1 BYE"
    for bad in ("INVITE", "1", "-1 INVITE", "2147483648 INVITE", "1 IN VITE", "x INVITE"):
        with pytest.raises(HeaderError):
            parse_cseq(bad)


# --- parsing --------------------------------------------------------------------------------------------------


def test_accessors() -> None:
    m = invite()
    assert m.method == "INVITE" and str(m.uri) == "sip:bob@biloxi.example.com"
    assert [v.host for v in m.vias] == ["pc33.atlanta.example.com", "proxy.example.com", "[2001:db8::1]"]
    assert m.top_via.branch == "z9hG4bK776asdhds" and m.top_via.wants_rport
    assert m.headers.count("Via") == 3  # the comma list was split into one field per value
    assert m.from_.tag == "1928301774" and m.from_.display_name == "Alice A." and m.to.tag is None
    assert m.call_id == "a84b4c76e66710@pc33.atlanta.example.com" and m.cseq.number == 314159
    assert [c.expires for c in m.contacts] == [2**32 - 1, None] and not m.contact_star
    assert [str(r.uri) for r in m.record_routes] == ["sip:p1.example.com;lr", "sip:p2.example.com;lr"]
    assert [str(r.uri) for r in m.routes] == ["sip:p3.example.com;lr"]
    assert m.require == ["timer"] and m.supported == ["replaces", "100rel"] and m.expires == 30
    assert m.max_forwards == 70 and m.content_type == "application/sdp" and m.body == b"v=0\r\n"


def test_round_trip_and_serialization() -> None:
    m = invite()
    wire = m.serialize()
    assert parse(wire) == m and bytes(m) == wire
    assert wire.endswith(b"Content-Length: 5\r\n\r\nv=0\r\n")
    m.body = b"longer body"
    assert b"Content-Length: 11\r\n" in m.serialize()
    m.headers.remove("Content-Length")
    assert m.serialize().split(b"\r\n\r\n")[0].endswith(b"Content-Length: 11")
    copy = m.copy()
    copy.headers.add("X", "1")
    assert "X" not in m.headers


def test_set_top_via() -> None:
    m = SipRequest("OPTIONS", parse_uri("sip:x@y"), Headers([("Via", "SIP/2.0/UDP a;branch=1, SIP/2.0/UDP b")]))
    m.set_top_via(m.top_via.with_param("received", "1.2.3.4"))
    assert m.headers.get_all("Via") == ["SIP/2.0/UDP a;branch=1;received=1.2.3.4, SIP/2.0/UDP b"]


def test_leading_crlf_lf_only_and_missing_blank_line() -> None:
    base = INVITE.replace(b"Content-Length: 5", b"Content-Length: 0").split(b"\r\n\r\n")[0]
    assert parse(b"\r\n\r\n" + base + b"\r\n\r\n").method == "INVITE"  # type: ignore[union-attr]
    assert parse(base.replace(b"\r\n", b"\n") + b"\n\n").call_id.startswith("a84b")
    assert parse(base).body == b""


def test_content_length_over_udp_and_tcp() -> None:
    head = INVITE.split(b"\r\n\r\n")[0]
    assert parse(head.replace(b"Content-Length: 5", b"Content-Length: 2") + b"\r\n\r\nv=0\r\n").body == b"v="
    with pytest.raises(SipParseError) as info:
        parse(head.replace(b"Content-Length: 5", b"Content-Length: 40") + b"\r\n\r\nv=0\r\n")
    assert info.value.status == 400
    no_length = head.replace(b"\r\nContent-Length: 5", b"")
    assert parse(no_length + b"\r\n\r\nabc").body == b"abc"  # datagram: the rest is the body
    with pytest.raises(SipParseError) as info:
        parse(no_length + b"\r\n\r\nabc", stream=True)
    assert info.value.status == 400 and info.value.reason == "Missing Content-Length"
    assert parse(INVITE, stream=True).body == b"v=0\r\n"


def test_limits() -> None:
    small = ParseLimits(max_message=1000, max_headers=10, max_line=100)
    head = INVITE.split(b"\r\n\r\n")[0]
    with pytest.raises(SipParseError) as info:
        parse(head + b"\r\n\r\n" + b"x" * 2000, small)
    assert info.value.status == 413 and info.value.headers is not None  # the body makes it too large
    with pytest.raises(SipParseError) as info:
        parse(head + b"\r\nX-Pad: " + b"p" * 2000 + b"\r\n\r\n", small)
    assert info.value.status == 513 and info.value.headers is None
    roomy = ParseLimits(max_message=10_000, max_headers=10, max_line=100)
    with pytest.raises(SipParseError) as info:
        parse(head + b"\r\n\r\n", roomy)
    assert (info.value.status, info.value.reason) == (400, "Too Many Headers")
    lines = ParseLimits(max_message=10_000, max_headers=100, max_line=60)
    with pytest.raises(SipParseError) as info:
        parse(head + b"\r\n\r\n", lines)
    assert (info.value.status, info.value.reason) == (400, "Header Line Too Long")
    vias = b"Via: " + b", ".join(b"SIP/2.0/UDP h%d" % i for i in range(200))
    with pytest.raises(SipParseError) as info:
        parse(head + b"\r\n" + vias + b"\r\n\r\n", ParseLimits(max_message=10_000, max_line=5000))
    assert info.value.reason == "Too Many Headers"  # counted after splitting comma lists


@pytest.mark.parametrize(
    ("mutate", "status"),
    [
        (lambda b: b.replace(b"CSeq: 314159 INVITE", b"CSeq: 314159 BYE"), 400),
        (lambda b: b.replace(b"Max-Forwards: 70", b"Max-Forwards: 256"), 400),
        (lambda b: b.replace(b"Call-ID: a84b", b"Call-ID: a b"), 400),
        (lambda b: b.replace(b"To: Bob", b"To: Bob\r\nTo: Bob"), 400),
        (lambda b: b.replace(b"Route: <sip:p3", b"Route: <sip p3"), 400),
        (lambda b: b.replace(b"Content-Length: 5", b"Content-Length: 5\r\nl: 5"), 400),
        (lambda b: b.replace(b"Max-Forwards: 70", b"Max-Forwards 70"), 400),
        (lambda b: b.replace(b"Max-Forwards: 70", b"Max Forwards: 70"), 400),
        (lambda b: b.replace(b"Max-Forwards: 70", b"Max-Forwards: 7\r0"), 400),
        (lambda b: b.replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1), 505),
        (lambda b: b.replace(b"SIP/2.0\r\n", b"HTTP/1.1\r\n", 1), 400),
        (lambda b: b.replace(b"INVITE sip:", b"IN(VITE sip:", 1), 400),
        (lambda b: b.replace(b"sip:bob@biloxi.example.com SIP", b"tel:+1234 SIP", 1), None),
        (lambda b: b.replace(b"sip:bob@biloxi.example.com SIP", b"urn:x:y SIP", 1), 416),
        (lambda b: b.replace(b"Contact: <sip:alice@pc33", b"Contact: *, <sip:alice@pc33"), 400),
        (lambda b: b.replace(b"Via: SIP/2.0/UDP pc33", b"Via: SIP/3.0/UDP pc33"), 400),
        (lambda b: b"\r\n" + b.split(b"\r\n", 1)[1], 400),
        (lambda b: b.replace(b"Max-Forwards", b" Max-Forwards", 1), 400),
    ],
)
def test_request_errors(mutate: object, status: int | None) -> None:
    raw = mutate(INVITE)  # type: ignore[operator]
    if status is None:
        assert parse(raw).method == "INVITE"
        return
    with pytest.raises(SipParseError) as info:
        parse(raw)
    assert info.value.status == status


def test_response_parsing() -> None:
    ok = parse(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2"
        b"\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    assert isinstance(ok, SipResponse) and ok.is_success and ok.is_final and not ok.is_provisional
    for bad in (b"SIP/2.0 99 Low\r\n", b"SIP/2.0 700 High\r\n", b"SIP/2.0 2000 X\r\n", b"SIP/2.0 OK\r\n"):
        with pytest.raises(SipParseError):
            parse(bad + b"Via: SIP/2.0/UDP h\r\n\r\n")
    with pytest.raises(SipParseError) as info:
        parse(b"")
    assert info.value.status == 400


def test_read_head() -> None:
    line, headers = read_head(b"\r\nOPTIONS sip:x SIP/2.0\r\nVia: a\r\nbad line\r\nTo: b")
    assert line == "OPTIONS sip:x SIP/2.0" and headers.items() == [("Via", "a"), ("To", "b")]


# --- builders -------------------------------------------------------------------------------------------------


def test_make_response() -> None:
    req = invite()
    ringing = make_response(req, 180, to_tag="abc", headers=[("X", "1")])
    assert ringing.reason == "Ringing" and ringing.to.tag == "abc"
    assert ringing.headers.get_all("Via") == req.headers.get_all("Via")
    assert [n for n, _ in ringing.headers][:7] == ["Via", "Via", "Via", "From", "To", "Call-ID", "CSeq"]
    assert len(ringing.record_routes) == 2 and ringing.header("X") == "1"
    trying = make_response(req, 100, to_tag="abc")
    assert trying.to.tag is None and trying.record_routes == []
    busy = make_response(req, 486, to_tag="abc")
    assert busy.record_routes == [] and busy.to.tag == "abc"
    with_body = make_response(req, 200, "Fine", body=b"v=0\r\n", content_type="application/sdp")
    assert with_body.reason == "Fine" and with_body.content_type == "application/sdp"
    already = make_response(
        parse(INVITE.replace(b"To: Bob <sip:bob@biloxi.example.com>", b"To: <sip:b@c>;tag=t")), 200, to_tag="other"
    )  # type: ignore[arg-type]
    assert already.to.tag == "t"
    assert reason_phrase(299) == "OK" and reason_phrase(499) == "Bad Request" and reason_phrase(987) == "Unknown"


def test_ack_for_non2xx_and_cancel() -> None:
    req = invite()
    busy = make_response(req, 486, to_tag="remote")
    ack = build_ack_for_non2xx(req, busy)
    assert ack.method == "ACK" and ack.uri == req.uri
    assert ack.headers.get_all("Via") == req.headers.get_all("Via")[:1]
    assert ack.to.tag == "remote" and ack.from_ == req.from_ and ack.call_id == req.call_id
    assert str(ack.cseq) == "314159 ACK" and [str(r.uri) for r in ack.routes] == ["sip:p3.example.com;lr"]
    cancel = build_cancel(req)
    assert cancel.method == "CANCEL" and cancel.uri == req.uri and str(cancel.cseq) == "314159 CANCEL"
    assert cancel.top_via == req.top_via and cancel.to.tag is None and len(cancel.vias) == 1
    assert parse(cancel.serialize()).serialize() == cancel.serialize()


def test_build_request() -> None:
    req = build_request(
        "MESSAGE",
        parse_uri("sip:bob@example.com"),
        from_=NameAddr(parse_uri("sip:alice@example.com")).with_tag("t1"),
        to=NameAddr(parse_uri("sip:bob@example.com")),
        call_id="cid",
        cseq=7,
        contact=NameAddr(parse_uri("sip:alice@10.0.0.1")),
        routes=[parse_name_addr("<sip:proxy;lr>")],
        headers=[("Subject", "hi")],
        body=b"hello",
        content_type="text/plain",
    )
    assert [n for n, _ in req.headers] == [
        "Route",
        "Max-Forwards",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Contact",
        "Subject",
        "Content-Type",
    ]
    req.headers.add_first("Via", "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKabc")
    assert parse(req.serialize()).serialize() == req.serialize()


def test_error_response_needs_enough_headers() -> None:
    err = SipParseError(400, "Bad", "OPTIONS sip:x SIP/2.0", Headers([("Via", "v"), ("From", "f"), ("To", "t")]))
    assert error_response(err) is None
    ack = SipParseError(
        400,
        "Bad",
        "ACK sip:x SIP/2.0",
        Headers([("Via", "v"), ("From", "f"), ("To", "t"), ("Call-ID", "c"), ("CSeq", "1 ACK")]),
    )
    assert error_response(ack) is None
    ok = SipParseError(400, "Bad \u00e9", "OPTIONS sip:x SIP/2.0", ack.headers)
    response = error_response(ok, "tt")
    assert response is not None and response.reason == "Bad Request" and response.header("To") == "t;tag=tt"
