"""RFC 4475 (SIP torture test messages): the valid ones parse, keep their meaning and survive a serialize/parse round
trip; the invalid ones are refused with the status RFC 4475 asks a UAS to answer.

The messages are written out here (line endings CRLF, as in the RFC); bodies are the RFC's SDP or equivalent bytes.
"""

from __future__ import annotations

import pytest

from opencomms.sip.builders import error_response
from opencomms.sip.headers import parse_name_addr
from opencomms.sip.message import SipRequest, SipResponse
from opencomms.sip.parser import SipParseError, parse
from opencomms.sip.transactions import server_key
from opencomms.sip.uri import SipUri, parse_uri


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


def sdp(o_ip: str = "192.0.2.3", c_ip: str = "192.0.2.4") -> str:
    return (
        f"v=0\no=mhandley 29739 7272939 IN IP4 {o_ip}\ns=-\nc=IN IP4 {c_ip}\nt=0 0\n"
        "m=audio 49217 RTP/AVP 0 12\nm=video 3227 RTP/AVP 31\na=rtpmap:31 LPC\n"
    )


# --- 3.1.1 valid messages ---------------------------------------------------------------------------------------

WSINV = crlf(
    "INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0\n"
    "TO :\n"
    " sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n\n"
    'from   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>\n'
    "  ;\n"
    "  tag = 98asjd8\n"
    "MaX-fOrWaRdS: 0068\n"
    "Call-ID: wsinv.ndaksdj@192.0.2.1\n"
    "Content-Length   : 150\n"
    "cseq: 0009\n"
    "  INVITE\n"
    "Via  : SIP  /   2.0\n"
    " /UDP\n"
    "    192.0.2.2;rport;branch=390skdjuw\n"
    "s :\n"
    "NewFangledHeader:   newfangled value\n"
    " continued newfangled value\n"
    "UnknownHeaderWithUnusualValue: ;;,,;;,;\n"
    "Content-Type: application/sdp\n"
    "Route:\n"
    " <sip:services.example.com;lr;unknownwith=value;unknown-no-value>\n"
    "v:  SIP  / 2.0  / TCP     spindle.example.com   ;\n"
    "  branch  =   z9hG4bK9ikj8  ,\n"
    " SIP  /    2.0   / UDP  192.168.255.111   ; branch=\n"
    " z9hG4bK30239\n"
    'm:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =\n'
    "      newvalue ;\n"
    "  secondparam ; q = 0.33\n"
    "\n" + sdp()
)

INTMETH = crlf(
    "!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    ":&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0\n"
    "Via: SIP/2.0/TCP host1.example.com;rport;branch=z9hG4bK-.!%66*_+`'~\n"
    'To: "BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" <sip:1_unusual.URI~(to-be!sure)&isn\'t+it$/crazy?,/;;*@example.com>\n'
    "From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%="
    '"\u0440\u0430\u0431\u043e\u0442\u0430\u044e\u0449\u0438\u0439";tag=_token~1\'+`*%!-.\n'
    "Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{\n"
    "CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~\n"
    "Max-Forwards: 255\n"
    "extensionHeader-!.%*+_`'~:\ufeff\u5927\u505c\u96fb\n"
    "Content-Length: 0\n"
    "\n"
)

ESC01 = crlf(
    "INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0\n"
    "To: sip:%75se%72@example.com\n"
    "From: <sip:I%20have%20spaces@example.net>;tag=938\n"
    "Max-Forwards: 87\n"
    "i: esc01.239409asdfakjkn23onasd0-3234\n"
    "CSeq: 234234 INVITE\n"
    "Via: SIP/2.0/UDP host5.example.net;rport;branch=z9hG4bKkdjuw\n"
    "C: application/sdp\n"
    "Contact:\n"
    "  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>\n"
    "Content-Length: 150\n"
    "\n" + sdp("192.0.2.1", "192.0.2.1")
)

ESCNULL = crlf(
    "REGISTER sip:example.com SIP/2.0\n"
    "To: sip:null-%00-null@example.com\n"
    "From: sip:null-%00-null@example.com;tag=839923423\n"
    "Max-Forwards: 70\n"
    "Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd\n"
    "CSeq: 14398234 REGISTER\n"
    "Via: SIP/2.0/UDP host5.example.com;rport;branch=z9hG4bKkdjuw\n"
    "Contact: <sip:%00@host5.example.com>\n"
    "Contact: <sip:%00%00@host5.example.com>\n"
    "L:0\n"
    "\n"
)

ESC02 = crlf(
    "RE%47IST%45R sip:registrar.example.com SIP/2.0\n"
    'To: "%Z%45" <sip:resource@example.com>\n'
    'From: "%Z%45" <sip:resource@example.com>;tag=f232jadfj23\n'
    "Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf\n"
    "Via: SIP/2.0/TCP host.example.com;rport;branch=z9hG4bK209%fzsnel234\n"
    "CSeq: 29344 RE%47IST%45R\n"
    "Max-Forwards: 70\n"
    "Contact: <sip:alias1@host1.example.com>\n"
    "C%6Fntact: <sip:alias2@host2.example.com>\n"
    "Contact: <sip:alias3@host3.example.com>\n"
    "l: 0\n"
    "\n"
)

LWSDISP = crlf(
    "OPTIONS sip:user@example.com SIP/2.0\n"
    "To: sip:user@example.com\n"
    "From: caller<sip:caller@example.com>;tag=323\n"
    "Max-Forwards: 70\n"
    "Call-ID: lwsdisp.1234abcd@funky.example.com\n"
    "CSeq: 60 OPTIONS\n"
    "Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw\n"
    "l: 0\n"
    "\n"
)

_LONG = "long" * 20
_VIAS = "".join(
    f"{name}: SIP/2.0/TCP sip{n}.example.com\n"
    for n, name in zip(
        range(33, 16, -1),
        [
            "Via",
            "v",
            "V",
            "Via",
            "ViA",
            "VIa",
            "VIA",
            "via",
            "viA",
            "vIa",
            "vIA",
            "V ",
            "v ",
            "V  ",
            "v  ",
            "Via ",
            "Via  ",
        ],
        strict=True,
    )
) + "".join(f"Via: SIP/2.0/TCP sip{n}.example.com\n" for n in range(16, 0, -1))
LONGREQ = crlf(
    "INVITE sip:user@example.com SIP/2.0\n"
    'To: "I have a user name of '
    + "extreme" * 10
    + ' proportion"<sip:user@example.com:6000;unknownparam1=very'
    + _LONG
    + "value;longparam"
    + "name" * 25
    + "=shortvalue;very"
    + _LONG
    + "ParameterNameWithNoValue>\n"
    "F: sip:"
    + "amazinglylongcallername" * 5
    + "@example.net;tag=12"
    + "982" * 50
    + "424;unknownheaderparam"
    + "name" * 20
    + "=unknowheaderparam"
    + "value" * 15
    + ";unknownValueless"
    + "paramname" * 10
    + "\n"
    "Call-ID: longreq.one" + "really" * 20 + "longcallid\n"
    "CSeq: 3882340 INVITE\n"
    "Unknown-"
    + "Long" * 20
    + "-Name: unknown-"
    + _LONG
    + "-value; unknown-"
    + _LONG
    + "-parameter-name = unknown-"
    + _LONG
    + "-parameter-value\n"
    + _VIAS
    + "Via: SIP/2.0/TCP host.example.com;received=192.0.2.5;branch=very"
    + "long" * 50
    + "branchvalue\n"
    "Max-Forwards: 70\n"
    "Contact: <sip:" + "amazinglylongcallername" * 5 + "@host5.example.net>\n"
    "Content-Type: application/sdp\n"
    "l: 150\n"
    "\n" + sdp("192.0.2.1", "192.0.2.1")
)

DBLREQ = crlf(
    "REGISTER sip:example.com SIP/2.0\n"
    "To: sip:j.user@example.com\n"
    "From: sip:j.user@example.com;tag=43251j3j324\n"
    "Max-Forwards: 8\n"
    "I: dblreq.0ha0isndaksdj99sdfafnl3lk233412\n"
    "Contact: sip:j.user@host.example.com\n"
    "CSeq: 8 REGISTER\n"
    "Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492\n"
    "Content-Length: 0\n"
    "\n"
    "INVITE sip:joe@example.com SIP/2.0\n"
    "t: sip:joe@example.com\n"
    "From: sip:caller@example.net;tag=141334\n"
    "Max-Forwards: 8\n"
    "Call-ID: dblreq.0ha0isnda977644900765@192.0.2.15\n"
    "CSeq: 8 INVITE\n"
    "Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234\n"
    "Content-Type: application/sdp\n"
    "Content-Length: 150\n"
    "\n" + sdp("192.0.2.15", "192.0.2.15").replace("m=video", "m =video")
)

SEMIURI = crlf(
    "OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0\n"
    "To: sip:j_user@example.com\n"
    "From: sip:caller@example.org;tag=33242\n"
    "Max-Forwards: 3\n"
    "Call-ID: semiuri.0ha0isndaksdj\n"
    "CSeq: 8 OPTIONS\n"
    "Accept: application/sdp, application/pkcs7-mime,\n"
    "        multipart/mixed, multipart/signed,\n"
    "        message/sip, message/sipfrag\n"
    "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw\n"
    "l: 0\n"
    "\n"
)

TRANSPORTS = crlf(
    "OPTIONS sip:user@example.com SIP/2.0\n"
    "To: sip:user@example.com\n"
    "From: <sip:caller@example.com>;tag=323\n"
    "Max-Forwards: 70\n"
    "Call-ID:  transports.kijh4akdnaqjkwendsasfdj\n"
    "Accept: application/sdp\n"
    "CSeq: 60 OPTIONS\n"
    "Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw\n"
    "Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf\n"
    "Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj\n"
    "Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en\n"
    "Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee\n"
    "l: 0\n"
    "\n"
)

_SIGNATURE = bytes(range(256)) + b"\r\n\r\n--not-a-boundary\x00\r\n"
_MPART_BODY = (
    b"--7a9cbec02ceef655\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Transfer-Encoding: binary\r\n"
    b"\r\n"
    b"Hello\r\n"
    b"--7a9cbec02ceef655\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: binary\r\n"
    b"\r\n" + _SIGNATURE + b"\r\n"
    b"--7a9cbec02ceef655--\r\n"
)
MPART01 = (
    crlf(
        "MESSAGE sip:kumiko@example.org SIP/2.0\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-;rport\n"
        "Max-Forwards: 70\n"
        "Route: <sip:127.0.0.1:5080>\n"
        "Identity: r5mwreLuyDRYBi/0TiPwEsY3rEVsk/G2WxhgTV1PF7hHuLIK0YWVKZhKv9Mj8UeXqkMVbnVq37CD+813gvYjcBUaZngQmXc9WNZ"
        "SDNGCzA+fWl9MEUHWIZo1CeJebdY/XlgKeTa0Olvq0rt70Q5jiSfbqMJmQFteeivUhkMWYUA=\n"
        "Contact: <sip:fluffy@127.0.0.1:5070>\n"
        "To: <sip:kumiko@example.org>\n"
        "From: <sip:fluffy@example.com>;tag=2fb0dcc9\n"
        "Call-ID: 3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..\n"
        "CSeq: 1 MESSAGE\n"
        "Content-Transfer-Encoding: binary\n"
        "Content-Type: multipart/mixed;boundary=7a9cbec02ceef655\n"
        "Date: Sat, 15 Oct 2005 04:44:56 GMT\n"
        "User-Agent: SIPimp.org/0.2.5 (curses)\n"
        f"Content-Length: {len(_MPART_BODY)}\n"
        "\n"
    )
    + _MPART_BODY
)

UNREASON = crlf(
    "SIP/2.0 200 = 2**3 * 5**2 \u043d\u043e \u0441\u0442\u043e \u0434\u0435\u0432\u044f\u043d\u043e\u0441\u0442\u043e"
    " \u0434\u0435\u0432\u044f\u0442\u044c - \u043f\u0440\u043e\u0441\u0442\u043e\u0435\n"
    "Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923\n"
    "Call-ID: unreason.1234ksdfak3j2erwedfsASdf\n"
    "CSeq: 35 INVITE\n"
    "From: sip:user@example.com;tag=11141343\n"
    "To: sip:user@example.edu;tag=2229\n"
    "Content-Length: 154\n"
    "Content-Type: application/sdp\n"
    "Contact: <sip:user@host198.example.com>\n"
    "\n" + sdp("192.0.2.198", "192.0.2.198")
)

NOREASON = crlf(
    "SIP/2.0 100 \n"
    "Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe\n"
    "Call-ID: noreason.asndj203insdf99223ndf\n"
    "CSeq: 35 INVITE\n"
    "From: <sip:user@example.com>;tag=39ansfi3\n"
    "To: <sip:user@example.edu>;tag=902jndnke3\n"
    "Content-Length: 0\n"
    "Contact: <sip:user@host105.example.com>\n"
    "\n"
)

# valid at the parser level although an application may reject them (RFC 4475 §3.3, §3.4)
BADDATE = crlf(
    "INVITE sip:user@example.com SIP/2.0\n"
    "To: sip:user@example.com\n"
    "From: sip:caller@example.net;tag=2234923\n"
    "Max-Forwards: 70\n"
    "Call-ID: baddate.239423mnsadf3j23lj42--sedfnm234\n"
    "CSeq: 1392934 INVITE\n"
    "Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw\n"
    "Date: Fri, 01 Jan 2010 16:00:00 EST\n"
    "Contact: <sip:caller@host5.example.net>\n"
    "Content-Type: application/sdp\n"
    "Content-Length: 150\n"
    "\n" + sdp("192.0.2.5", "192.0.2.5")
)

BADBRANCH = crlf(
    "OPTIONS sip:user@example.com SIP/2.0\n"
    "To: sip:user@example.com\n"
    "From: sip:caller@example.org;tag=33242\n"
    "Max-Forwards: 3\n"
    "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK\n"
    "Accept: application/sdp\n"
    "Call-ID: badbranch.sadonfo23i420jv0as0derf3j3n\n"
    "CSeq: 8 OPTIONS\n"
    "l: 0\n"
    "\n"
)

UNKSM2 = crlf(
    "REGISTER sip:example.com SIP/2.0\n"
    "To: isbn:2983792873\n"
    "From: <http://www.example.com>;tag=3234233\n"
    "Call-ID: unksm2.daksdj@hyphenated-host.example.com\n"
    "CSeq: 234902 REGISTER\n"
    "Max-Forwards: 70\n"
    "Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKkdjuw\n"
    "Contact: <name:John_Smith>\n"
    "l: 0\n"
    "\n"
)

BEXT01 = crlf(
    "OPTIONS sip:user@example.com SIP/2.0\n"
    "To: sip:j_user@example.com\n"
    "From: sip:caller@example.net;tag=242etr\n"
    "Max-Forwards: 6\n"
    "Call-ID: bext01.0ha0isndaksdj\n"
    "Require: nothingSupportsThis, nothingSupportsThisEither\n"
    "Proxy-Require: noProxiesSupportThis, norDoAnyProxiesSupportThis\n"
    "CSeq: 8 OPTIONS\n"
    "Via: SIP/2.0/TLS fold-and-staple.example.com;branch=z9hG4bKkdjuw\n"
    "Content-Length: 0\n"
    "\n"
)

INV2543 = crlf(
    "INVITE sip:UserB@example.com SIP/2.0\n"
    "Via: SIP/2.0/UDP iftgw.example.com\n"
    "From: <sip:+13035551111@ift.client.example.net;user=phone>\n"
    "Record-Route: <sip:UserB@example.com;maddr=ss1.example.com>\n"
    "To: sip:+16505552222@ss1.example.net;user=phone\n"
    "Call-ID: inv2543.1717@ift.client.example.com\n"
    "CSeq: 56 INVITE\n"
    "Content-Type: application/sdp\n"
    "\n"
    "v=0\no=mhandley 29739 7272939 IN IP4 192.0.2.5\ns=-\nc=IN IP4 192.0.2.5\nt=0 0\nm=audio 49217 RTP/AVP 0\n"
)

ZEROMF = crlf(
    "OPTIONS sip:user@example.com SIP/2.0\n"
    "To: sip:user@example.com\n"
    "From: sip:caller@example.net;tag=3ghsd41\n"
    "Call-ID: zeromf.jfasdlfnm2o2l43r5u0asdfas\n"
    "CSeq: 39234321 OPTIONS\n"
    "Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw2349i\n"
    "Max-Forwards: 0\n"
    "Content-Length: 0\n"
    "\n"
)

CPARAM01 = crlf(
    "REGISTER sip:example.com SIP/2.0\n"
    "Via: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw\n"
    "Max-Forwards: 70\n"
    "From: sip:watson@example.com;tag=DkfVgjkrtMwaerKKpe\n"
    "To: sip:watson@example.com\n"
    "Call-ID: cparam01.70710@saturn.example.com\n"
    "CSeq: 2 REGISTER\n"
    "Contact: sip:+19725552222@gw1.example.net;unknownparam\n"
    "l: 0\n"
    "\n"
)

CPARAM02 = CPARAM01.replace(
    b"sip:+19725552222@gw1.example.net;unknownparam", b"<sip:+19725552222@gw1.example.net;unknownparam>"
)

REGESCRT = crlf(
    "REGISTER sip:example.com SIP/2.0\n"
    "To: sip:user@example.com\n"
    "From: sip:user@example.com;tag=8\n"
    "Max-Forwards: 70\n"
    "Call-ID: regescrt.k345asrl3fdbv@192.0.2.1\n"
    "CSeq: 14398234 REGISTER\n"
    "Via: SIP/2.0/UDP host5.example.com;rport;branch=z9hG4bKkdjuw\n"
    "M: <sip:user@example.com?Route=%3Csip:sip.example.com%3E>\n"
    "L:0\n"
    "\n"
)

BCAST = crlf(
    "SIP/2.0 200 OK\n"
    "Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923\n"
    "Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1saber23\n"
    "Call-ID: bcast.0384840201234ksdfak3j2erwedfsASdf\n"
    "CSeq: 35 INVITE\n"
    "From: sip:user@example.com;tag=11141343\n"
    "To: sip:user@example.edu;tag=2229\n"
    "Content-Length: 154\n"
    "Content-Type: application/sdp\n"
    "Contact: <sip:user@host28.example.com>\n"
    "\n" + sdp("192.0.2.198", "192.0.2.198")
)

VALID = {
    "wsinv": WSINV,
    "intmeth": INTMETH,
    "esc01": ESC01,
    "escnull": ESCNULL,
    "esc02": ESC02,
    "lwsdisp": LWSDISP,
    "longreq": LONGREQ,
    "dblreq": DBLREQ,
    "semiuri": SEMIURI,
    "transports": TRANSPORTS,
    "mpart01": MPART01,
    "unreason": UNREASON,
    "noreason": NOREASON,
    "baddate": BADDATE,
    "badbranch": BADBRANCH,
    "unksm2": UNKSM2,
    "bext01": BEXT01,
    "inv2543": INV2543,
    "zeromf": ZEROMF,
    "cparam01": CPARAM01,
    "cparam02": CPARAM02,
    "regescrt": REGESCRT,
    "bcast": BCAST,
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_message_parses_and_round_trips(name: str) -> None:
    message = parse(VALID[name])
    again = parse(message.serialize())
    # serialize() always writes Content-Length (inv2543 has none)
    message.headers.set_default("Content-Length", str(len(message.body)))
    assert again == message
    assert again.serialize() == message.serialize()


def test_wsinv_meaning() -> None:
    m = parse(WSINV)
    assert isinstance(m, SipRequest)
    assert m.method == "INVITE"
    assert isinstance(m.uri, SipUri) and m.uri.has_param("unknownparam") and m.uri.user == "vivekg"
    assert m.to.tag == "1918181833n" and m.to.display_name is None
    assert m.from_.tag == "98asjd8" and m.from_.display_name == 'J Rosenberg \\"'
    assert m.max_forwards == 68
    assert m.cseq.number == 9 and m.cseq.method == "INVITE"
    assert [(v.transport, v.host, v.branch) for v in m.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert m.header("Subject") == ""
    assert m.header("NewFangledHeader") == "newfangled value continued newfangled value"
    assert m.header("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    (contact,) = m.contacts
    assert contact.display_name == 'Quoted string ""'
    assert contact.param("newparam") == "newvalue" and contact.has_param("secondparam") and contact.param("q") == "0.33"
    (route,) = m.routes
    assert isinstance(route.uri, SipUri) and route.uri.has_param("lr") and route.uri.has_param("unknown-no-value")
    assert len(m.body) == 150 and m.body.startswith(b"v=0\r\n")
    # headers keep their order; compact and odd-case names come out canonical
    names = [n for n, _ in m.headers]
    assert names[:4] == ["To", "From", "Max-Forwards", "Call-ID"]
    assert names.count("Via") == 3


def test_intmeth_meaning() -> None:
    m = parse(INTMETH)
    assert isinstance(m, SipRequest)
    assert m.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert isinstance(m.uri, SipUri)
    assert m.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert m.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert m.uri.host == "example.com"
    assert m.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert m.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert m.from_.tag == "_token~1'+`*%!-."
    assert m.from_.param("fromParam''~+*_!.-%") == '"\u0440\u0430\u0431\u043e\u0442\u0430\u044e\u0449\u0438\u0439"'
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.header("extensionHeader-!.%*+_`'~") == "\ufeff\u5927\u505c\u96fb"
    assert m.vias[0].branch == "z9hG4bK-.!%66*_+`'~"


def test_escaped_uris_compare_unescaped() -> None:
    m = parse(ESC01)
    assert isinstance(m, SipRequest) and isinstance(m.uri, SipUri)
    assert m.uri.user == "sips%3Auser%40example.com" and m.uri.host == "example.net"
    assert m.to.uri.equivalent(parse_uri("sip:user@example.com"))
    (contact,) = m.contacts
    assert contact.uri.equivalent(parse_uri("sip:caller@host5.example.net;lr;name=value%2541"))
    assert m.content_type == "application/sdp"  # compact "C"
    nul = parse(ESCNULL)
    assert [str(c.uri) for c in nul.contacts] == ["sip:%00@host5.example.com", "sip:%00%00@host5.example.com"]


def test_esc02_method_is_not_register() -> None:
    m = parse(ESC02)
    assert isinstance(m, SipRequest) and m.method == "RE%47IST%45R"
    assert m.to.display_name == "%Z%45"
    assert [str(c.uri) for c in m.contacts] == ["sip:alias1@host1.example.com", "sip:alias3@host3.example.com"]
    assert m.header("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_display_name_without_space_and_long_fields() -> None:
    assert parse(LWSDISP).from_.display_name == "caller"
    m = parse(LONGREQ)
    assert len(m.vias) == 34
    assert m.vias[-1].branch == "very" + "long" * 50 + "branchvalue"
    assert m.to.sip_uri.port == 6000 and len(m.body) == 150


def test_two_requests_in_one_datagram_keep_the_first() -> None:
    m = parse(DBLREQ)
    assert isinstance(m, SipRequest) and m.method == "REGISTER" and m.body == b""


def test_semicolon_in_user_and_folded_list() -> None:
    m = parse(SEMIURI)
    assert isinstance(m, SipRequest) and isinstance(m.uri, SipUri)
    assert m.uri.user == "user;par=u%40example.net" and m.uri.host == "example.com" and m.uri.params == ()
    assert "multipart/signed" in (m.header("Accept") or "")


def test_transports_and_multipart_and_reasons() -> None:
    assert [v.transport for v in parse(TRANSPORTS).vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    mpart = parse(MPART01)
    assert mpart.body == _MPART_BODY
    unreason = parse(UNREASON)
    assert isinstance(unreason, SipResponse) and unreason.reason.startswith("= 2**3 * 5**2 \u043d\u043e")
    noreason = parse(NOREASON)
    assert isinstance(noreason, SipResponse) and noreason.status == 100 and noreason.reason == ""


def test_tolerated_oddities() -> None:
    assert parse(BADDATE).header("Date") == "Fri, 01 Jan 2010 16:00:00 EST"
    unksm2 = parse(UNKSM2)
    assert str(unksm2.to.uri) == "isbn:2983792873" and str(unksm2.contacts[0].uri) == "name:John_Smith"
    inv = parse(INV2543)
    assert isinstance(inv, SipRequest) and inv.from_.tag is None and inv.vias[0].branch is None
    assert parse(ZEROMF).max_forwards == 0
    assert parse(CPARAM01).contacts[0].has_param("unknownparam")  # a Contact parameter, not a URI parameter
    assert parse(CPARAM02).contacts[0].sip_uri.has_param("unknownparam")
    assert parse(REGESCRT).contacts[0].sip_uri.headers == (("Route", "%3Csip:sip.example.com%3E"),)
    assert parse(BEXT01).require == ["nothingSupportsThis", "nothingSupportsThisEither"]
    assert parse(BCAST).vias[1].host == "255.255.255.255"


def test_rfc2543_and_cookie_only_branches_use_the_fallback_key() -> None:
    for raw in (INV2543, BADBRANCH):
        m = parse(raw)
        assert isinstance(m, SipRequest)
        assert server_key(m).branch.startswith("2543|")


# --- 3.1.2 invalid messages (and 3.3 application-level refusals the parser owns) -------------------------------

BADINV01 = crlf(
    "INVITE sip:user@example.com SIP/2.0\n"
    "To: sip:j.user@example.com\n"
    "From: sip:caller@example.net;tag=134161461246\n"
    "Max-Forwards: 7\n"
    "Call-ID: badinv01.0ha0isndaksdjasdf3234nas\n"
    "CSeq: 8 INVITE\n"
    "Via: SIP/2.0/UDP 192.0.2.15;;,;,,\n"
    'Contact: "Joe" <sip:joe@example.org>;;;;\n'
    "Content-Length: 152\n"
    "Content-Type: application/sdp\n"
    "\n" + sdp("192.0.2.15", "192.0.2.15")
)

CLERR = crlf(
    "INVITE sip:user@example.com SIP/2.0\n"
    "Max-Forwards: 80\n"
    "To: sip:j.user@example.com\n"
    "From: sip:caller@example.net;tag=93942939o2\n"
    "Contact: <sip:caller@hungry.example.net>\n"
    "Call-ID: clerr.0ha0isndaksdjweiafasdk3\n"
    "CSeq: 8 INVITE\n"
    "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bK-39234-23523\n"
    "Content-Type: application/sdp\n"
    "Content-Length: 9999\n"
    "\n" + sdp("192.0.2.155", "192.0.2.155")
)

NCL = crlf(
    "INVITE sip:user@example.com SIP/2.0\n"
    "Max-Forwards: 254\n"
    "To: sip:j.user@example.com\n"
    "From: sip:caller@example.net;tag=32394234\n"
    "Call-ID: ncl.0ha0isndaksdj2193423r542w35\n"
    "CSeq: 0 INVITE\n"
    "Via: SIP/2.0/UDP 192.0.2.53;branch=z9hG4bKkdjuw\n"
    "Contact: <sip:caller@example53.example.net>\n"
    "Content-Type: application/sdp\n"
    "Content-Length: -999\n"
    "\n" + sdp("192.0.2.53", "192.0.2.53")
)

SCALAR02 = crlf(
    "REGISTER sip:example.com SIP/2.0\n"
    "Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bK342sdfoi3\n"
    "To: <sip:user@example.com>\n"
    "From: <sip:user@example.com>;tag=239232jh3\n"
    "CSeq: 36893488147419103232 REGISTER\n"
    "Call-ID: scalar02.23o0pd9vanlq3wnrlnewofjas9ui32\n"
    "Max-Forwards: 300\n"
    "Expires: 1" + "0" * 100 + "\n"
    "Contact: <sip:user@host129.example.com>\n"
    "  ;expires=280297596632815\n"
    "Content-Length: 0\n"
    "\n"
)

SCALARLG = crlf(
    "SIP/2.0 503 Service Unavailable\n"
    "Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bKzzxdiwo34sw;received=192.0.2.129\n"
    "To: <sip:user@example.com>\n"
    "From: <sip:other@example.net>;tag=2easdjfejw\n"
    "CSeq: 9292394834772304023312 OPTIONS\n"
    "Call-ID: scalarlg.noase0of0234hn2qofoaf0232aewf2394r\n"
    "Retry-After: 949302838503028349304023988\n"
    'Warning: 1812 overture "In Progress"\n'
    "Content-Length: 0\n"
    "\n"
)

QUOTBAL = crlf(
    "INVITE sip:user@example.com SIP/2.0\n"
    'To: "Mr. J. User <sip:j.user@example.com>\n'
    "From: sip:caller@example.net;tag=93334\n"
    "Max-Forwards: 10\n"
    "Call-ID: quotbal.aksdj\n"
    "Contact: <sip:caller@host59.example.net>\n"
    "CSeq: 8 INVITE\n"
    "Via: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234\n"
    "Content-Type: application/sdp\n"
    "Content-Length: 152\n"
    "\n" + sdp("192.0.2.15", "192.0.2.15")
)

LTGTRURI = crlf(
    "INVITE <sip:user@example.com> SIP/2.0\n"
    "To: sip:user@example.com\n"
    "From: sip:caller@example.net;tag=39291\n"
    "Max-Forwards: 23\n"
    "Call-ID: ltgtruri.1@192.0.2.5\n"
    "CSeq: 1 INVITE\n"
    "Via: SIP/2.0/UDP 192.0.2.5\n"
    "Contact: <sip:caller@host5.example.net>\n"
    "Content-Type: application/sdp\n"
    "Content-Length: 150\n"
    "\n" + sdp("192.0.2.5", "192.0.2.5")
)

LWSRURI = crlf(
    "INVITE sip:user@example.com; lr SIP/2.0\n"
    "To: sip:user@example.com;tag=3xfe-9921883-z9f\n"
    "From: sip:caller@example.net;tag=231413434\n"
    "Max-Forwards: 5\n"
    "Call-ID: lwsruri.asdfasdoeoi2323-asdfwrn23-asd834rk423\n"
    "CSeq: 2130706432 INVITE\n"
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKkdjuw2395\n"
    "Contact: <sip:caller@host1.example.net>\n"
    "Content-Type: application/sdp\n"
    "Content-Length: 150\n"
    "\n" + sdp("192.0.2.1", "192.0.2.1")
)

LWSSTART = crlf(
    "INVITE  sip:user@example.com  SIP/2.0\n"
    "Max-Forwards: 8\n"
    "To: sip:user@example.com\n"
    "From: sip:caller@example.net;tag=8814\n"
    "Call-ID: lwsstart.dfknq234oi243099adsdfnawe3@example.com\n"
    "CSeq: 1893884 INVITE\n"
    "Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw3923\n"
    "Contact: <sip:caller@host1.example.net>\n"
    "Content-Type: application/sdp\n"
    "Content-Length: 150\n"
    "\n" + sdp("192.0.2.1", "192.0.2.1")
)

TRWS = crlf(
    "OPTIONS sip:remote-target@example.com SIP/2.0 \n"
    "Via: SIP/2.0/TCP host1.examle.com;branch=z9hG4bK299342093\n"
    "To: <sip:remote-target@example.com>\n"
    "From: <sip:local-resource@example.com>;tag=329429089\n"
    "Call-ID: trws.oicu34958239neffasdhr2345r\n"
    "Accept: application/sdp\n"
    "CSeq: 238923 OPTIONS\n"
    "Max-Forwards: 70\n"
    "Content-Length: 0\n"
    "\n"
)

ESCRURI = crlf(
    "INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0\n"
    "To: sip:user@example.com\n"
    "From: sip:caller@example.net;tag=341518\n"
    "Max-Forwards: 7\n"
    "Contact: <sip:caller@host39923.example.net>\n"
    "Call-ID: escruri.23940-asdfhj-aje3br-234q098w-fawerh2q-h4n5\n"
    "CSeq: 149209342 INVITE\n"
    "Via: SIP/2.0/UDP host-of-the-hour.example.com;branch=z9hG4bKkdjuw\n"
    "Content-Type: application/sdp\n"
    "Content-Length: 150\n"
    "\n" + sdp("192.0.2.1", "192.0.2.1")
)

REGBADCT = crlf(
    "REGISTER sip:example.com SIP/2.0\n"
    "To: sip:user@example.com\n"
    "From: sip:user@example.com;tag=998332\n"
    "Max-Forwards: 70\n"
    "Call-ID: regbadct.k345asrl3fdbv@10.0.0.1\n"
    "CSeq: 1 REGISTER\n"
    "Via: SIP/2.0/UDP 135.180.130.133:5060;branch=z9hG4bKkdjuw\n"
    "Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E\n"
    "l: 0\n"
    "\n"
)

BADASPEC = crlf(
    "OPTIONS sip:user@example.org SIP/2.0\n"
    "Via: SIP/2.0/UDP host4.example.com:5060;branch=z9hG4bKkdju43234\n"
    "Max-Forwards: 70\n"
    'From: "Bell, Alexander" <sip:a.g.bell@example.com>;tag=433423\n'
    'To: "Watson, Thomas" < sip:t.watson@example.org >\n'
    "Call-ID: badaspec.sdf0234n2nds0a099u23h3hnnw009cdkne3\n"
    "Accept: application/sdp\n"
    "CSeq: 3923239 OPTIONS\n"
    "l: 0\n"
    "\n"
)

BADDN = crlf(
    "OPTIONS sip:t.watson@example.org SIP/2.0\n"
    "Via:     SIP/2.0/UDP c.example.com:5060;branch=z9hG4bKkdjuw\n"
    "Max-Forwards:      70\n"
    "From:    Bell, Alexander <sip:a.g.bell@example.com>;tag=43\n"
    "To:      Watson, Thomas <sip:t.watson@example.org>\n"
    "Call-ID: baddn.31415@c.example.com\n"
    "Accept: application/sdp\n"
    "CSeq:    3923239 OPTIONS\n"
    "l: 0\n"
    "\n"
)

BADVERS = crlf(
    "OPTIONS sip:t.watson@example.org SIP/7.0\n"
    "Via:     SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw\n"
    "Max-Forwards:     70\n"
    "From:    A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe\n"
    "To:      T. Watson <sip:t.watson@example.org>\n"
    "Call-ID: badvers.31417@c.example.com\n"
    "CSeq:    1 OPTIONS\n"
    "l: 0\n"
    "\n"
)

MISMATCH01 = crlf(
    "OPTIONS sip:user@example.com SIP/2.0\n"
    "To: sip:j.user@example.com\n"
    "From: sip:caller@example.net;tag=34525\n"
    "Max-Forwards: 6\n"
    "Call-ID: mismatch01.dj0234sxdfl3\n"
    "CSeq: 8 INVITE\n"
    "Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw\n"
    "l: 0\n"
    "\n"
)

MISMATCH02 = crlf(
    "NEWMETHOD sip:user@example.com SIP/2.0\n"
    "To: sip:j.user@example.com\n"
    "From: sip:caller@example.net;tag=34525\n"
    "Max-Forwards: 6\n"
    "Call-ID: mismatch02.dj0234sxdfl3\n"
    "CSeq: 8 INVITE\n"
    "Contact: <sip:caller@host.example.net>\n"
    "Via: SIP/2.0/UDP host.example.net;branch=z9hG4bKkdjuw\n"
    "Content-Type: application/sdp\n"
    "l: 138\n"
    "\n"
    "v=0\no=mhandley 29739 7272939 IN IP4 192.0.2.1\nc=IN IP4 192.0.2.1\nm=audio 49217 RTP/AVP 0 12\n"
    "m=video 3227 RTP/AVP 31\na=rtpmap:31 LPC\n"
)

BIGCODE = crlf(
    "SIP/2.0 4294967301 better not break the receiver\n"
    "Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe\n"
    "Call-ID: bigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i\n"
    "CSeq: 353494 INVITE\n"
    "From: <sip:user@example.com>;tag=39ansfi3\n"
    "To: <sip:user@example.edu>;tag=902jndnke3\n"
    "Content-Length: 0\n"
    "Contact: <sip:user@host105.example.com>\n"
    "\n"
)

INSUF = crlf(
    "INVITE sip:user@example.com SIP/2.0\n"
    "CSeq: 193942 INVITE\n"
    "Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf\n"
    "Content-Type: application/sdp\n"
    "l: 152\n"
    "\n" + sdp("192.0.2.95", "192.0.2.95")
)

MULTI01 = crlf(
    "INVITE sip:user@company.com SIP/2.0\n"
    "Contact: <sip:caller@host25.example.net>\n"
    "Via: SIP/2.0/UDP 192.0.2.25;branch=z9hG4bKkdjuw\n"
    "Max-Forwards: 70\n"
    "CSeq: 5 INVITE\n"
    "Call-ID: multi01.98asdh@192.0.2.1\n"
    "CSeq: 59 INVITE\n"
    "Call-ID: multi01.98asdh@192.0.2.2\n"
    "From: sip:caller@example.com;tag=3413415\n"
    "To: sip:user@example.com\n"
    "To: sip:other@example.net\n"
    "From: sip:caller@example.net;tag=2923420123\n"
    "Content-Type: application/sdp\n"
    "l: 154\n"
    "Contact: <sip:caller@host36.example.net>\n"
    "Max-Forwards: 5\n"
    "\n" + sdp("192.0.2.25", "192.0.2.25")
)

MCL01 = crlf(
    "OPTIONS sip:user@example.com SIP/2.0\n"
    "Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bK293423\n"
    "To: sip:user@example.com\n"
    "From: sip:other@example.net;tag=3923942\n"
    "Call-ID: mcl01.fhn2323orihawfdoa3o4r52o3irsdf\n"
    "CSeq: 15932 OPTIONS\n"
    "Content-Length: 13\n"
    "Max-Forwards: 60\n"
    "Content-Length: 5\n"
    "Content-Type: text/plain\n"
    "\n"
    "There's no way to know how many octets are supposed to be here.\n"
)

UNKSCM = crlf(
    "OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0\n"
    "To: sip:user@example.com\n"
    "From: sip:caller@example.net;tag=384\n"
    "Max-Forwards: 3\n"
    "Call-ID: unkscm.nasdfasser0q239nwsdfasdkl34\n"
    "CSeq: 3923423 OPTIONS\n"
    "Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234\n"
    "Content-Length: 0\n"
    "\n"
)

NOVELSC = UNKSCM.replace(b"nobodyKnowsThisScheme:totallyopaquecontent", b"soap.beep://192.0.2.103:3002").replace(
    b"unkscm.", b"novelsc."
)

INVALID: dict[str, tuple[bytes, int]] = {
    "badinv01": (BADINV01, 400),
    "clerr": (CLERR, 400),
    "ncl": (NCL, 400),
    "scalar02": (SCALAR02, 400),
    "quotbal": (QUOTBAL, 400),
    "ltgtruri": (LTGTRURI, 400),
    "lwsruri": (LWSRURI, 400),
    "lwsstart": (LWSSTART, 400),
    "trws": (TRWS, 400),
    "escruri": (ESCRURI, 400),
    "regbadct": (REGBADCT, 400),
    "badaspec": (BADASPEC, 400),
    "baddn": (BADDN, 400),
    "badvers": (BADVERS, 505),
    "mismatch01": (MISMATCH01, 400),
    "mismatch02": (MISMATCH02, 501),
    "insuf": (INSUF, 400),
    "multi01": (MULTI01, 400),
    "mcl01": (MCL01, 400),
    "unkscm": (UNKSCM, 416),
    "novelsc": (NOVELSC, 416),
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_request_is_refused_with_the_right_status(name: str) -> None:
    raw, status = INVALID[name]
    with pytest.raises(SipParseError) as info:
        parse(raw)
    assert info.value.status == status, info.value.reason
    assert info.value.is_request


@pytest.mark.parametrize("raw", [SCALARLG, BIGCODE], ids=["scalarlg", "bigcode"])
def test_invalid_responses_are_dropped(raw: bytes) -> None:
    with pytest.raises(SipParseError) as info:
        parse(raw)
    assert not info.value.is_request
    assert error_response(info.value, "t") is None


@pytest.mark.parametrize(
    "name", ["badinv01", "clerr", "scalar02", "quotbal", "badvers", "mismatch02", "unkscm", "baddn", "trws"]
)
def test_invalid_requests_can_be_answered(name: str) -> None:
    raw, status = INVALID[name]
    with pytest.raises(SipParseError) as info:
        parse(raw)
    response = error_response(info.value, "mytag")
    assert response is not None and response.status == status
    # the stateless answer is itself a well-formed message carrying the request's identifiers
    wire = response.serialize()
    assert wire.startswith(f"SIP/2.0 {status} ".encode())
    request_call_id = info.value.headers.get("Call-ID") if info.value.headers else None
    assert response.header("Call-ID") == request_call_id
    assert "tag=" in (response.header("To") or "")


def test_insufficient_request_cannot_be_answered() -> None:
    with pytest.raises(SipParseError) as info:
        parse(INSUF)
    assert error_response(info.value, "t") is None


def test_badvers_answer_keeps_the_via() -> None:
    with pytest.raises(SipParseError) as info:
        parse(BADVERS)
    response = error_response(info.value, "x")
    assert response is not None
    assert response.headers.get_all("Via") == ["SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw"]
    assert parse_name_addr(response.header("To") or "").tag == "x"
