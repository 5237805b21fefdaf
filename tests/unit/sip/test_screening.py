"""The UAS/UAC screening without sockets (`sip.screening`): the statuses `tests/integration/sip/test_endpoint.py`
asserts over UDP (501, 405 + Allow, 420 + Unsupported, 481, 400 Missing Contact; 505 and 413 from the parser),
in-dialog accounting (500 for an out-of-order CSeq), the answer with no user, received/rport, admission, and the
response checks."""

from __future__ import annotations

import pytest

from opencomms.sip.builders import make_response
from opencomms.sip.destination import Destination
from opencomms.sip.dialog import Dialog, DialogTable
from opencomms.sip.endpoint_config import DEFAULT_METHODS
from opencomms.sip.message import SipRequest, SipResponse
from opencomms.sip.parser import ParseLimits, SipParseError, parse
from opencomms.sip.screening import (
    Admitted,
    Answer,
    accepts_response,
    default_answer,
    fix_via,
    forked_2xx,
    is_keepalive,
    needs_admission,
    refusal,
    same_host,
    screen_request,
    wants_contact,
)
from opencomms.sip.transactions import NewRequest, TransactionLayer

SOURCE = Destination("udp", "198.51.100.1", 40000)
ALLOW = ", ".join(sorted(DEFAULT_METHODS))


def wire(
    method: str = "OPTIONS",
    *,
    to_tag: str | None = None,
    cseq: int = 1,
    via: str = "SIP/2.0/UDP 198.51.100.1:5070;branch=z9hG4bKscreen",
    extra: str = "",
    version: str = "SIP/2.0",
    body: bytes = b"",
) -> bytes:
    to = "<sip:bob@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    head = (
        f"{method} sip:bob@127.0.0.1 {version}\r\nVia: {via}\r\nMax-Forwards: 70\r\n"
        f"From: <sip:alice@198.51.100.1>;tag=a1\r\nTo: {to}\r\nCall-ID: screen-1\r\nCSeq: {cseq} {method}\r\n"
        f"{extra}Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def request(method: str = "OPTIONS", **kw: object) -> SipRequest:
    message = parse(wire(method, **kw))  # type: ignore[arg-type]
    assert isinstance(message, SipRequest)
    return message


def screen(req: SipRequest, dialogs: DialogTable | None = None) -> Answer | Admitted:
    return screen_request(req, dialogs or DialogTable(), allowed_methods=DEFAULT_METHODS, supported=frozenset())


def confirmed_dialog(dialogs: DialogTable) -> Dialog:
    invite = request("INVITE", extra="Contact: <sip:alice@198.51.100.1:5070>\r\n")
    ok = make_response(invite, 200, to_tag="b1", headers=[("Contact", "<sip:bob@127.0.0.1>")])
    return dialogs.add(Dialog.from_uas(invite, ok))


def test_the_stack_level_answers_of_the_integration_test() -> None:
    assert screen(request("FROBNICATE")) == Answer(501, headers=(("Allow", ALLOW),))
    assert screen(request("PUBLISH")) == Answer(405, headers=(("Allow", ALLOW),))  # known, not allowed
    assert screen(request(extra="Require: nothingSupportsThis, 100rel\r\n")) == Answer(
        420, headers=(("Unsupported", "nothingSupportsThis, 100rel"),)
    )
    assert screen(request("BYE", to_tag="nope")) == Answer(481)
    assert screen(request("INVITE")) == Answer(400, "Missing Contact")
    assert screen(request("INVITE", extra="Contact: <sip:alice@198.51.100.1>\r\n")) == Admitted(None)
    assert screen(request()) == Admitted(None)


def test_supported_option_tags_pass() -> None:
    req = request(extra="Require: replaces\r\n")
    verdict = screen_request(req, DialogTable(), allowed_methods=DEFAULT_METHODS, supported=frozenset({"replaces"}))
    assert verdict == Admitted(None)


def test_in_dialog_requests_are_accounted_by_their_dialog() -> None:
    dialogs = DialogTable()
    dialog = confirmed_dialog(dialogs)
    assert screen(request("INFO", to_tag="b1", cseq=5), dialogs) == Admitted(dialog)
    assert dialog.remote_cseq == 5
    assert screen(request("INFO", to_tag="b1", cseq=4), dialogs) == Answer(500)  # CSeq went backwards
    assert screen(request("BYE", to_tag="b1", cseq=6), dialogs) == Admitted(dialog)


def test_parse_errors_carry_the_status_a_uas_answers() -> None:
    with pytest.raises(SipParseError) as bad_version:
        parse(wire(version="SIP/7.0"))
    assert bad_version.value.status == 505
    with pytest.raises(SipParseError) as too_big:
        parse(wire(body=b"x" * 3000), ParseLimits(max_message=2000))
    assert too_big.value.status == 413  # the body makes it too large, the head is readable


def test_the_answer_with_no_user_installed() -> None:
    assert default_answer("OPTIONS", None, DEFAULT_METHODS) == Answer(200, headers=(("Allow", ALLOW),))
    assert default_answer("BYE", None, DEFAULT_METHODS) == Answer(480)
    dialogs = DialogTable()
    assert default_answer("BYE", confirmed_dialog(dialogs), DEFAULT_METHODS) == Answer(200)
    assert default_answer("INVITE", None, DEFAULT_METHODS) == Answer(480)


def test_received_and_rport_are_filled_in() -> None:
    req = request(via="SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bKa;rport")
    fix_via(req, SOURCE)
    via = req.top_via
    assert via.param("received") == "198.51.100.1" and via.rport == 40000
    same = request(via="SIP/2.0/UDP 198.51.100.1:5070;branch=z9hG4bKb")
    before = same.headers.get("Via")
    fix_via(same, SOURCE)  # sent-by is the source and no rport asked: untouched
    assert same.headers.get("Via") == before
    other = request(via="SIP/2.0/UDP pbx.example.com;branch=z9hG4bKc")
    fix_via(other, SOURCE)
    assert other.top_via.param("received") == "198.51.100.1" and other.top_via.rport is None
    assert same_host("::1", "0:0:0:0:0:0:0:1") and same_host("PBX.example.com", "pbx.example.com")


def test_contact_goes_on_dialog_creating_and_target_refresh_answers() -> None:
    assert wants_contact("INVITE", 180) and wants_contact("INVITE", 200) and not wants_contact("INVITE", 100)
    assert not wants_contact("INVITE", 486) and wants_contact("SUBSCRIBE", 202) and wants_contact("UPDATE", 200)
    assert not wants_contact("OPTIONS", 200) and not wants_contact("UPDATE", 180)


def test_only_new_out_of_dialog_invites_are_asked_about() -> None:
    layer = TransactionLayer()
    invite = request("INVITE", extra="Contact: <sip:alice@198.51.100.1>\r\n")
    assert needs_admission(invite, layer)
    assert not needs_admission(request("INVITE", to_tag="b1"), layer)
    assert not needs_admission(request("OPTIONS"), layer)
    actions = layer.receive(invite, SOURCE, 0.0)
    assert any(isinstance(a, NewRequest) for a in actions)
    assert not needs_admission(invite, layer)  # a retransmission of an INVITE let in before


def test_an_admission_refusal_is_a_stateless_answer() -> None:
    invite = request("INVITE", extra="Contact: <sip:alice@198.51.100.1>\r\n")
    busy = refusal(invite, 503, [("Retry-After", "5")], "t1", "opencomms")
    assert busy.status == 503 and busy.to.tag == "t1" and busy.header("Retry-After") == "5"
    assert busy.header("Server") == "opencomms" and busy.call_id == "screen-1"
    assert refusal(invite, 503, (), "t1", None).header("Server") is None


def test_response_checks() -> None:
    invite = request("INVITE", extra="Contact: <sip:alice@198.51.100.1>\r\n")
    first = make_response(invite, 200, to_tag="fork1")
    assert accepts_response(first)
    two_vias = make_response(invite, 200, to_tag="fork1")
    two_vias.headers.add("Via", "SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp")
    reparsed = parse(two_vias.serialize())
    assert isinstance(reparsed, SipResponse) and not accepts_response(reparsed)
    assert forked_2xx(invite, first, make_response(invite, 200, to_tag="fork2"))
    assert not forked_2xx(invite, first, make_response(invite, 200, to_tag="fork1"))  # a retransmission
    assert not forked_2xx(invite, None, make_response(invite, 200, to_tag="fork2"))
    assert not forked_2xx(request("OPTIONS"), first, make_response(request("OPTIONS"), 200, to_tag="x"))
    assert is_keepalive(b"\r\n\r\n") and is_keepalive(b"") and not is_keepalive(b"OPTIONS")
