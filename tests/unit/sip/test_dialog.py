"""Dialogs (RFC 3261 §12): creation on both sides, in-dialog request building with loose and strict routers,
CSeq accounting, target refresh, and the lookup table."""

from __future__ import annotations

import pytest

from opencomms.sip.builders import build_request, make_response
from opencomms.sip.dialog import Dialog, DialogError, DialogId, DialogState, DialogTable, sipfrag
from opencomms.sip.headers import NameAddr
from opencomms.sip.message import SipRequest, SipResponse
from opencomms.sip.uri import SipUri, parse_uri


def invite(record_route: tuple[str, ...] = ("<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>")) -> SipRequest:
    req = build_request(
        "INVITE",
        parse_uri("sip:bob@biloxi.example.com"),
        from_=NameAddr(parse_uri("sip:alice@atlanta.example.com"), "Alice").with_tag("alice-tag"),
        to=NameAddr(parse_uri("sip:bob@biloxi.example.com"), "Bob"),
        call_id="dialog-call",
        cseq=101,
        contact=NameAddr(parse_uri("sip:alice@10.0.0.1:5060")),
    )
    req.headers.add_first("Via", "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKa")
    for rr in record_route:
        req.headers.add("Record-Route", rr)
    return req


def ok(req: SipRequest, status: int = 200, contact: str = "<sip:bob@10.0.0.2:5062>") -> SipResponse:
    resp = make_response(req, status, to_tag="bob-tag")
    resp.headers.add("Contact", contact)
    return resp


def uac() -> Dialog:
    req = invite()
    return Dialog.from_uac(req, ok(req))


def test_uac_dialog_state() -> None:
    d = uac()
    assert d.id == DialogId("dialog-call", "alice-tag", "bob-tag")
    assert d.is_uac and d.state is DialogState.CONFIRMED and not d.secure
    assert str(d.local_uri) == '"Alice" <sip:alice@atlanta.example.com>' and d.remote_uri.tag is None
    assert str(d.remote_target) == "sip:bob@10.0.0.2:5062" and str(d.local_target) == "sip:alice@10.0.0.1:5060"
    # the UAC's route set is the Record-Route of the response, reversed
    assert [str(r.uri) for r in d.route_set] == ["sip:p2.example.com;lr", "sip:p1.example.com;lr"]
    assert d.local_cseq == 101 and d.remote_cseq is None and d.invite_cseq == 101


def test_uas_dialog_state() -> None:
    req = invite()
    resp = ok(req, 180, "<sip:bob@10.0.0.2>")
    d = Dialog.from_uas(req, resp, local_cseq=1)
    assert d.id == DialogId("dialog-call", "bob-tag", "alice-tag")
    assert not d.is_uac and d.state is DialogState.EARLY
    assert [str(r.uri) for r in d.route_set] == ["sip:p1.example.com;lr", "sip:p2.example.com;lr"]
    assert str(d.remote_target) == "sip:alice@10.0.0.1:5060" and str(d.local_target) == "sip:bob@10.0.0.2"
    assert d.remote_cseq == 101 and d.local_cseq == 1
    bye = d.bye()
    assert bye.from_.tag == "bob-tag" and bye.to.tag == "alice-tag" and bye.cseq.number == 2
    assert 1 <= Dialog.from_uas(req, resp).local_cseq <= 2**16


def test_creation_errors() -> None:
    req = invite()
    with pytest.raises(DialogError):
        Dialog.from_uac(req, ok(req, 486))
    with pytest.raises(DialogError):
        Dialog.from_uac(req, make_response(req, 180))  # no To tag
    no_contact = make_response(req, 200, to_tag="t")
    with pytest.raises(DialogError):
        Dialog.from_uac(req, no_contact)
    no_tag = invite()
    no_tag.headers.set("From", "<sip:alice@atlanta.example.com>")
    with pytest.raises(DialogError):
        Dialog.from_uac(no_tag, ok(no_tag))
    with pytest.raises(DialogError):
        Dialog.from_uas(req, make_response(req, 200))  # our response lacks a To tag
    req.headers.remove("Contact")
    with pytest.raises(DialogError):
        Dialog.from_uas(req, ok(req))


def test_in_dialog_requests_with_loose_routing() -> None:
    d = uac()
    bye = d.bye()
    assert bye.method == "BYE" and str(bye.uri) == "sip:bob@10.0.0.2:5062"
    assert [str(r.uri) for r in bye.routes] == ["sip:p2.example.com;lr", "sip:p1.example.com;lr"]
    assert bye.from_.tag == "alice-tag" and bye.to.tag == "bob-tag" and bye.call_id == "dialog-call"
    assert bye.cseq.number == 102 and bye.cseq.method == "BYE" and bye.contacts == []
    reinvite = d.reinvite(b"v=0\r\n")
    assert reinvite.cseq.number == 103 and d.invite_cseq == 103 and reinvite.content_type == "application/sdp"
    assert [str(c.uri) for c in reinvite.contacts] == ["sip:alice@10.0.0.1:5060"]
    refer = d.refer(parse_uri("sip:carol@example.com"), referred_by=NameAddr(parse_uri("sip:alice@example.com")))
    assert refer.header("Refer-To") == "<sip:carol@example.com>" and refer.header("Referred-By")
    attended = d.refer("<sip:carol@example.com?Replaces=abc%3Bto-tag%3D1%3Bfrom-tag%3D2>")
    assert attended.header("Refer-To") == "<sip:carol@example.com?Replaces=abc%3Bto-tag%3D1%3Bfrom-tag%3D2>"
    notify = d.notify("refer", "active;expires=60", sipfrag(180, "Ringing"), "message/sipfrag;version=2.0")
    assert notify.header("Event") == "refer" and notify.header("Subscription-State") == "active;expires=60"
    assert notify.body == b"SIP/2.0 180 Ringing\r\n" and notify.content_type == "message/sipfrag;version=2.0"
    info = d.info(b"Signal=5\r\n", "application/dtmf-relay")
    assert info.method == "INFO" and info.body == b"Signal=5\r\n"
    assert d.options().method == "OPTIONS" and d.update(b"x").method == "UPDATE"
    assert d.create_request("MESSAGE", cseq=500).cseq.number == 500 and d.local_cseq == 109
    with pytest.raises(DialogError):
        d.create_request("ACK")


def test_ack_for_2xx() -> None:
    d = uac()
    d.reinvite()
    ack = d.create_ack(body=b"sdp", content_type="application/sdp")
    assert ack.method == "ACK" and ack.cseq.number == 102 and ack.cseq.method == "ACK"
    assert ack.body == b"sdp" and d.local_cseq == 102  # ACK does not consume a CSeq
    assert d.create_ack(101).cseq.number == 101
    fresh = uac()
    fresh.invite_cseq = None
    with pytest.raises(DialogError):
        fresh.create_ack()


def test_strict_router_becomes_the_request_uri() -> None:
    req = invite(record_route=("<sip:strict.example.com;maddr=10.1.1.1>",))
    d = Dialog.from_uac(req, ok(req))
    bye = d.bye()
    assert str(bye.uri) == "sip:strict.example.com;maddr=10.1.1.1"
    assert [str(r.uri) for r in bye.routes] == ["sip:bob@10.0.0.2:5062"]
    assert str(d.next_hop()) == "sip:strict.example.com;maddr=10.1.1.1"
    direct = Dialog.from_uac(invite(()), ok(invite(())))
    assert direct.route_set == [] and direct.bye().routes == [] and str(direct.next_hop()) == "sip:bob@10.0.0.2:5062"


def test_incoming_cseq_order_and_target_refresh() -> None:
    req = invite()
    d = Dialog.from_uas(req, ok(req), local_cseq=1)

    def incoming(method: str, cseq: int, contact: str | None = None) -> SipRequest:
        r = build_request(
            method,
            parse_uri("sip:bob@10.0.0.2"),
            from_=NameAddr(parse_uri("sip:alice@atlanta.example.com")).with_tag("alice-tag"),
            to=NameAddr(parse_uri("sip:bob@biloxi.example.com")).with_tag("bob-tag"),
            call_id="dialog-call",
            cseq=cseq,
            contact=NameAddr(parse_uri(contact)) if contact else None,
        )
        r.headers.add_first("Via", "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx")
        return r

    assert d.receive_request(incoming("ACK", 101)) is None
    assert d.receive_request(incoming("INFO", 102)) is None and d.remote_cseq == 102
    assert d.receive_request(incoming("INFO", 100)) == 500 and d.remote_cseq == 102
    assert d.receive_request(incoming("INVITE", 110, "sip:alice@192.0.2.99:5080")) is None
    assert str(d.remote_target) == "sip:alice@192.0.2.99:5080" and d.remote_cseq == 110
    assert d.receive_request(incoming("BYE", 111)) is None and d.state is DialogState.TERMINATED


def test_responses_update_the_dialog() -> None:
    req = invite()
    early = Dialog.from_uac(req, ok(req, 183, "<sip:bob@10.0.0.9>"))
    assert early.state is DialogState.EARLY
    final = ok(req, 200, "<sip:bob@10.0.0.2:5062>")
    final.headers.remove("Record-Route")
    final.headers.add("Record-Route", "<sip:only.example.com;lr>")
    early.confirm(final)
    assert early.state is DialogState.CONFIRMED and str(early.remote_target) == "sip:bob@10.0.0.2:5062"
    assert [str(r.uri) for r in early.route_set] == ["sip:only.example.com;lr"]
    reinvite = early.reinvite()
    moved = make_response(reinvite, 200, to_tag="bob-tag")
    moved.headers.add("Contact", "<sip:bob@198.51.100.1>")
    early.on_response(reinvite, moved)
    assert str(early.remote_target) == "sip:bob@198.51.100.1"
    bye = early.bye()
    early.on_response(bye, make_response(bye, 200))
    assert early.state is DialogState.TERMINATED


def test_secure_flag() -> None:
    req = invite()
    req.uri = SipUri("biloxi.example.com", "bob", scheme="sips")
    assert Dialog.from_uac(req, ok(req)).secure


def test_dialog_table() -> None:
    table = DialogTable()
    d = table.add(uac())
    assert table.add(uac()) is d and len(table) == 1 and d in table and list(table) == [d]
    req = d.bye()
    # the same request seen by the peer's table: To tag is theirs (local), From tag ours (remote)
    mirror = Dialog(
        call_id=d.call_id,
        local_tag=d.remote_tag,
        remote_tag=d.local_tag,
        local_uri=d.remote_uri,
        remote_uri=d.local_uri,
        local_target=d.remote_target,
        remote_target=d.local_target,
    )
    peer = DialogTable()
    peer.add(mirror)
    assert peer.for_request(req) is mirror
    response = make_response(req, 200)
    assert table.for_response(response) is d
    assert table.get(d.id) is d and list(table.by_call_id("dialog-call")) == [d]
    no_tag = make_response(invite(), 100)
    assert table.for_response(no_tag) is None and table.for_request(invite()) is None
    table.remove(d)
    assert len(table) == 0 and table.get(d.id) is None
