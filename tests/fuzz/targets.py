"""Fuzz targets for the SIP parser and SDP offer/answer, their seed corpora and a plain byte mutator.

A target takes bytes and runs everything a node does with hostile input of that kind: the SIP target parses it as
a datagram and as a TCP frame (framer included), reads every header accessor the stack uses, computes the
transaction key, answers a parse error (`error_response`), serializes and re-parses what parsed, and reads it the
early-refusal way (`sip.early`); the SDP target parses a body, answers it as an offer (`LocalSdp.answer`), accepts
it as an answer to our offer, and serializes the result. The property: only the documented typed errors escape
(`SIP_ERRORS`, `SDP_ERRORS`); anything else is a bug. Used by tests/fuzz/test_fuzz.py (hypothesis, a short profile)
and bench/fuzz_sip.py (a million random mutations, `make fuzz`).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from opencomms.rtp.offer_answer import LocalSdp
from opencomms.rtp.sdp import SdpError, SessionDescription
from opencomms.sip.builders import error_response
from opencomms.sip.dialog import DialogError
from opencomms.sip.early import scan_invite
from opencomms.sip.headers import HeaderError
from opencomms.sip.message import SipRequest
from opencomms.sip.parser import SipParseError, parse
from opencomms.sip.transactions import server_key
from opencomms.sip.transport import StreamFramer
from opencomms.sip.uri import UriError

SIP_ERRORS: tuple[type[Exception], ...] = (SipParseError, HeaderError, UriError, DialogError)
"""What parsing and reading hostile SIP may raise (each is answered 400-class or dropped by the endpoint)."""
SDP_ERRORS: tuple[type[Exception], ...] = (SdpError,)
"""What parsing and negotiating hostile SDP may raise (NegotiationError is an SdpError): 488/400."""


def _accessors(message: object) -> None:
    """Every header accessor the stack uses, each allowed its typed error."""
    for name in (
        "vias",
        "top_via",
        "from_",
        "to",
        "call_id",
        "cseq",
        "contacts",
        "contact_star",
        "routes",
        "record_routes",
        "max_forwards",
        "content_type",
        "expires",
        "require",
        "supported",
    ):
        try:
            getattr(message, name)
        except SIP_ERRORS:
            pass


def sip_target(data: bytes) -> None:
    """Run `data` through the SIP input paths. Every documented error is caught here, so any exception that
    escapes is an unhandled one."""
    scan_invite(data)
    for stream in (False, True):
        try:
            message = parse(data, stream=stream)
        except SipParseError as err:
            error_response(err, "fuzz")
            continue
        _accessors(message)
        if isinstance(message, SipRequest):
            try:
                server_key(message)
            except SIP_ERRORS:
                pass
        again = message.serialize()
        try:
            parse(again, stream=True)
        except SipParseError:
            pass
    framer = StreamFramer()
    half = len(data) // 2
    framer.feed(data[:half])
    framer.feed(data[half:])


def sdp_target(body: bytes) -> None:
    """Parse `body`, answer it as an offer and accept it as an answer; only SDP_ERRORS are expected (caught)."""
    try:
        sdp = SessionDescription.parse(body)
    except SDP_ERRORS:
        return
    str(sdp)
    ours = LocalSdp("127.0.0.1", 40000)
    try:
        str(ours.answer(sdp).sdp)
    except SDP_ERRORS:
        pass
    ours.offer()
    try:
        ours.accept_answer(sdp)
    except SDP_ERRORS:
        pass


# --- seeds --------------------------------------------------------------------------------------------------------

SDP_OFFER = (
    b"v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0 8 9 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
    b"m=video 51372 RTP/AVP 31\r\na=rtpmap:31 H261/90000\r\n"
)
SDP_SEEDS = [
    SDP_OFFER,
    b"v=0\r\no=- 1 1 IN IP6 ::1\r\ns=x\r\nt=0 0\r\nm=audio 5004 RTP/AVP 96\r\nc=IN IP6 ::1\r\n"
    b"a=rtpmap:96 opus/48000/2\r\na=fmtp:96 minptime=10\r\na=inactive\r\na=rtcp:5005\r\n",
    b"v=0\no=- 0 0 IN IP4 0.0.0.0\ns=-\nc=IN IP4 0.0.0.0\nt=0 0\nm=audio 0 RTP/AVP 0\na=sendonly\n",
]

_INVITE = (
    b"INVITE sip:+14255550123@127.0.0.1;user=phone SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Alice" <sip:alice@example.com>;tag=1928301774\r\n'
    b"To: <sip:+14255550123@127.0.0.1>\r\n"
    b"Call-ID: a84b4c76e66710@pc33.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@192.0.2.10:5060;transport=udp>\r\n"
    b"Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, REFER, NOTIFY\r\n"
    b"Supported: replaces, timer\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP_OFFER)).encode() + b"\r\n\r\n" + SDP_OFFER
)
_REGISTER = (
    b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bKnashds7\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:bob@example.com>;tag=456248\r\nTo: <sip:bob@example.com>\r\n"
    b"Call-ID: 843817637684230@998sdasdh09\r\nCSeq: 1826 REGISTER\r\nContact: <sip:bob@192.0.2.4>;expires=7200\r\n"
    b'Authorization: Digest username="bob", realm="example.com", nonce="ea9c8e88df84f1cec4341ae6cbe5a359", '
    b'uri="sip:example.com", response="dfe56131d1958046689d83306477ecc", algorithm=MD5\r\n'
    b"Expires: 7200\r\nContent-Length: 0\r\n\r\n"
)
_RESPONSE = (
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKabc;received=192.0.2.1;rport=5062\r\n"
    b"From: <sip:bot@127.0.0.1>;tag=xyz\r\nTo: <sip:+14255550123@trunk.example.com>;tag=abc\r\n"
    b"Call-ID: c1@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:gw@192.0.2.1:5060>\r\n"
    b"Content-Type: application/sdp\r\nContent-Length: " + str(len(SDP_OFFER)).encode() + b"\r\n\r\n" + SDP_OFFER
)


def sip_seeds() -> list[bytes]:
    """Our own messages plus every RFC 4475 torture message of tests/unit/sip/test_torture.py."""
    from tests.unit.sip import test_torture

    seeds = [_INVITE, _REGISTER, _RESPONSE]
    for name in dir(test_torture):
        value = getattr(test_torture, name)
        if name.isupper() and isinstance(value, bytes) and b"SIP/2.0" in value:
            seeds.append(value)
    return seeds


# --- a plain mutator (raw throughput) -----------------------------------------------------------------------------

TOKENS = [
    b"\r\n",
    b"\r\n\r\n",
    b"\n",
    b" ",
    b"\t",
    b":",
    b";",
    b",",
    b"<",
    b">",
    b'"',
    b"\\",
    b"=",
    b"@",
    b"[",
    b"]",
    b"%",
    b"%00",
    b"\x00",
    b"\xff",
    b"\xc3\x28",
    b"\xe9",
    b"\xed\xa0\x80",
    b"0",
    b"-1",
    b"4294967296",
    b"99999999999999999999",
    b"tag=",
    b";branch=z9hG4bK",
    b";rport",
    b"sip:",
    b"sips:",
    b"tel:",
    b"INVITE",
    b"Content-Length: 0",
    b"Content-Length: 99999",
    b"Via: SIP/2.0/UDP x",
    b"To: <sip:a@b>;tag=1",
    b"m=audio 0 RTP/AVP",
    b"c=IN IP4 ",
    b"c=IN IP6 ",
    b"a=rtpmap:",
    b"a=fmtp:101 ",
    b"IN IP4 some.name",
    b"255.255.255.255",
    b"::ffff:1.2.3.4",
]


def mutate(rng: random.Random, seed: bytes, rounds: int | None = None) -> bytes:
    """`seed` with 1-8 random edits: byte flips, token insertions, deletions, duplications, truncation, swaps."""
    data = bytearray(seed)
    for _ in range(rounds or rng.randint(1, 8)):
        n = len(data)
        op = rng.randrange(8)
        pos = rng.randrange(n + 1) if n else 0
        if op == 0 and n:
            data[min(pos, n - 1)] = rng.randrange(256)
        elif op == 1:
            data[pos:pos] = rng.choice(TOKENS)
        elif op == 2 and n:
            del data[pos : pos + rng.randint(1, 32)]
        elif op == 3 and n:
            chunk = data[pos : pos + rng.randint(1, 64)]
            data[pos:pos] = chunk * rng.randint(1, 4)
        elif op == 4 and n:
            del data[rng.randrange(n) :]
        elif op == 5:
            lines = bytes(data).split(b"\r\n")
            if len(lines) > 2:
                i, j = rng.randrange(1, len(lines)), rng.randrange(1, len(lines))
                lines[i], lines[j] = lines[j], lines[i]
                data = bytearray(b"\r\n".join(lines))
        elif op == 6:
            data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        else:
            lines = bytes(data).split(b"\r\n")
            if len(lines) > 1:
                i = rng.randrange(len(lines))
                lines.insert(i, lines[i])
                data = bytearray(b"\r\n".join(lines))
    return bytes(data)


def run(
    target: Callable[[bytes], None], seeds: list[bytes], count: int, rng: random.Random
) -> list[tuple[bytes, BaseException]]:
    """`count` mutated inputs through `target`; the inputs that raised anything, with what they raised."""
    failures: list[tuple[bytes, BaseException]] = []
    for _ in range(count):
        data = mutate(rng, rng.choice(seeds))
        try:
            target(data)
        except Exception as exc:  # the property: nothing escapes the target
            failures.append((data, exc))
    return failures
