"""The early refusal read from raw bytes (`sip.early`): a plain new INVITE is answered like `make_response` would
(same Via/From/To/Call-ID/CSeq, a To tag, received/rport, RFC 3581), anything unusual is left to the full parser."""

from __future__ import annotations

import pytest

from opencomms.sip.destination import Destination
from opencomms.sip.early import early_answer, scan_invite
from opencomms.sip.message import SipResponse
from opencomms.sip.parser import parse
from opencomms.sip.transactions import TransactionLayer

INVITE = (
    b"INVITE sip:100@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKabc;rport\r\n"
    b"v: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKxyz\r\n"
    b"Max-Forwards: 70\r\n"
    b"f: <sip:a@192.0.2.7>;tag=f1\r\n"
    b"To: <sip:100@127.0.0.1>\r\n"
    b"Call-ID: c1@192.0.2.7\r\n"
    b"CSeq: 7 INVITE\r\n"
    b"Contact: <sip:a@192.0.2.7:5070>\r\n"
    b"Content-Length: 0\r\n\r\n"
)
SOURCE = Destination("udp", "198.51.100.1", 40000)


def answer(data: bytes, layer: TransactionLayer | None = None) -> tuple[SipResponse, Destination] | None:
    got = early_answer(data, SOURCE, (503, [("Retry-After", "5")]), layer or TransactionLayer(), "opencomms")
    if got is None:
        return None
    raw, dest = got
    response = parse(raw)
    assert isinstance(response, SipResponse)
    return response, dest


def test_a_plain_new_invite_is_answered_from_its_raw_lines() -> None:
    got = answer(INVITE)
    assert got is not None
    response, dest = got
    request = parse(INVITE)
    assert (response.status, response.reason) == (503, "Service Unavailable")
    assert response.headers.get("Retry-After") == "5" and response.headers.get("Server") == "opencomms"
    assert response.call_id == request.call_id and str(response.cseq) == str(request.cseq)
    assert response.from_.tag == "f1" and response.to.tag and response.to.uri == request.to.uri
    assert [v.branch for v in response.vias] == ["z9hG4bKabc", "z9hG4bKxyz"]
    assert response.top_via.received == "198.51.100.1" and response.top_via.rport == 40000
    assert dest == SOURCE  # rport: back to the source port


def test_without_rport_the_answer_goes_to_the_via_port() -> None:
    got = answer(INVITE.replace(b";rport", b""))
    assert got is not None and got[1] == Destination("udp", "198.51.100.1", 5070)


@pytest.mark.parametrize(
    ("what", "data"),
    [
        ("not an INVITE", INVITE.replace(b"INVITE sip", b"OPTIONS sip").replace(b"7 INVITE", b"7 OPTIONS")),
        ("in-dialog (To tag)", INVITE.replace(b"To: <sip:100@127.0.0.1>", b"To: <sip:100@127.0.0.1>;tag=x")),
        ("folded header", INVITE.replace(b"Call-ID: c1", b"Call-ID:\r\n c1")),
        ("CSeq of another method", INVITE.replace(b"7 INVITE", b"7 BYE")),
        ("two From", INVITE.replace(b"To:", b"From: <sip:b@x>;tag=2\r\nTo:")),
        ("no Call-ID", INVITE.replace(b"Call-ID: c1@192.0.2.7\r\n", b"")),
        ("non-ASCII From", INVITE.replace(b"<sip:a@", b"\xff<sip:a@")),
        ("RFC 2543 branch", INVITE.replace(b"branch=z9hG4bKabc", b"branch=1")),
        ("several Vias on a line", INVITE.replace(b";rport\r\n", b";rport, SIP/2.0/UDP x;branch=z9hG4bK2\r\n")),
        ("no header end", INVITE[:-4]),
        ("junk", b"INVITE \xff\x00\r\n\r\n"),
        ("bad Via", INVITE.replace(b"SIP/2.0/UDP 192.0.2.7", b"SIP/UDP")),
    ],
)
def test_anything_unusual_is_left_to_the_full_parser(what: str, data: bytes) -> None:
    assert answer(data) is None, what


def test_a_retransmission_of_an_admitted_invite_is_left_to_its_transaction() -> None:
    layer = TransactionLayer()
    request = parse(INVITE)
    layer.receive(request, SOURCE, 0.0)
    assert answer(INVITE, layer) is None
    assert answer(INVITE.replace(b"z9hG4bKabc", b"z9hG4bKother"), layer) is not None


def test_scan_never_raises_on_prefixes() -> None:
    for n in range(len(INVITE) + 1):
        scan_invite(INVITE[:n])
