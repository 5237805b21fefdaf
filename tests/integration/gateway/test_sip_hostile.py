"""Hostile SIP against a real node, over raw UDP and TCP sockets: malformed and oversized messages, unknown
methods, binary junk, INVITE floods. Each is answered per RFC 3261 (400, 416, 420, 481, 488, 501, 505, 513, 413,
503 with Retry-After) or dropped; afterwards the HTTP API still answers, a normal SIPp call still completes, and
nothing leaked (no SIP call, RTP port or live call leg left)."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from opencomms.config import CallsConfig, SipConfig
from opencomms.sip.endpoint import SipEndpoint
from opencomms.sip.endpoint_config import EndpointConfig
from opencomms.sip.handles import ServerTransactionHandle
from opencomms.sip.message import HeaderItems, SipRequest
from opencomms.store.conversations import stored_conversations
from tests.integration.conftest import Platform, make_platform, node_config
from tests.sipp import sipp as harness
from tests.sipp.sipp import LOOPBACK, run_sipp

NUMBER = "+14255550123"
SERVICE = NUMBER.lstrip("+")
SDP = (
    b"v=0\r\no=flood 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 7078 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
)


@pytest.fixture(autouse=True)
def _sipp_workdirs_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "WORKDIR_BASE", tmp_path)


@asynccontextmanager
async def phone_platform(sip: SipConfig | None = None, answer_timeout: float = 15.0) -> AsyncIterator[Platform]:
    """A node with one bot, bob, owning NUMBER; bob never answers unless a test makes him."""
    config = node_config(sip=sip or SipConfig(port=0), calls=CallsConfig(answer_timeout=answer_timeout))
    async with make_platform(config, ("bob",)) as p:
        p.node.directory.create_instance(p["bob"].app_id, "Reception", phone_number=NUMBER)
        yield p


# --- raw SIP -------------------------------------------------------------------------------------------------------


@dataclass
class Invite:
    """What a CANCEL for an INVITE we sent must repeat."""

    branch: str
    from_tag: str
    call_id: str


@dataclass
class Request:
    method: str = "OPTIONS"
    uri: str = f"sip:{SERVICE}@127.0.0.1"
    port: int = 5999
    transport: str = "UDP"
    body: bytes = b""
    content_length: str | None = None
    drop: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    branch: str = field(default_factory=lambda: "z9hG4bK" + os.urandom(8).hex())
    from_tag: str = field(default_factory=lambda: os.urandom(4).hex())
    call_id: str = field(default_factory=lambda: os.urandom(10).hex())
    cseq_method: str | None = None
    version: str = "SIP/2.0"
    to_tag: str | None = None

    def encode(self) -> bytes:
        fields = {
            "Via": f"SIP/2.0/{self.transport} 127.0.0.1:{self.port};branch={self.branch};rport",
            "Max-Forwards": "70",
            "From": f"<sip:hostile@127.0.0.1:{self.port}>;tag={self.from_tag}",
            "To": f"<{self.uri}>" + (f";tag={self.to_tag}" if self.to_tag else ""),
            "Call-ID": self.call_id,
            "CSeq": f"1 {self.cseq_method or self.method}",
            "Contact": f"<sip:hostile@127.0.0.1:{self.port}>",
        }
        lines = [f"{self.method} {self.uri} {self.version}"]
        lines += [f"{name}: {value}" for name, value in fields.items() if name not in self.drop]
        lines += list(self.extra)
        if self.body:
            lines.append("Content-Type: application/sdp")
        length = str(len(self.body)) if self.content_length is None else self.content_length
        lines.append(f"Content-Length: {length}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body

    @property
    def invite(self) -> Invite:
        return Invite(self.branch, self.from_tag, self.call_id)


def cancel_for(invite: Invite, port: int) -> bytes:
    lines = [
        f"CANCEL sip:{SERVICE}@127.0.0.1 SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch={invite.branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:hostile@127.0.0.1:{port}>;tag={invite.from_tag}",
        f"To: <sip:{SERVICE}@127.0.0.1>",
        f"Call-ID: {invite.call_id}",
        "CSeq: 1 CANCEL",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclass(frozen=True)
class Reply:
    status: int
    reason: str
    headers: dict[str, str]
    raw: bytes

    @staticmethod
    def parse(data: bytes) -> Reply | None:
        head = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace").split("\r\n")
        parts = head[0].split(" ", 2)
        if len(parts) < 2 or parts[0] != "SIP/2.0" or not parts[1].isdigit():
            return None
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), value.strip())
        return Reply(int(parts[1]), parts[2] if len(parts) > 2 else "", headers, data)

    @property
    def call_id(self) -> str:
        return self.headers.get("call-id", "")

    @property
    def cseq_method(self) -> str:
        return self.headers.get("cseq", " ").split()[-1]


class UdpPeer:
    """A blocking UDP socket on loopback (used from a worker thread, so the node's loop keeps running)."""

    def __init__(self, target: int) -> None:
        self.target = (LOOPBACK, target)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.port = int(self.sock.getsockname()[1])
        self.replies: list[Reply] = []
        self.junk = 0

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.target)

    def drain(self, seconds: float) -> list[Reply]:
        """Everything that arrives within `seconds`."""
        got: list[Reply] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(70_000)
            except TimeoutError:
                break
            reply = Reply.parse(data)
            if reply is None:
                self.junk += 1
            else:
                got.append(reply)
        self.replies += got
        return got

    def final(self, request: Request, seconds: float = 2.0) -> Reply | None:
        """Send `request` and wait for its final response (None if none comes within `seconds`)."""
        self.send(request.encode())
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            for reply in self.drain(min(left, 0.05)):
                if reply.call_id == request.call_id and reply.status >= 200:
                    return reply
        return None

    def settle(self, limit: float = 5.0) -> None:
        """Read until the node has nothing new to say: no INVITE got its first answer in the last 0.25 s
        (retransmissions of answers already seen do not count)."""
        answered = {r.call_id for r in self.replies if r.status >= 180}
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            fresh = {r.call_id for r in self.drain(0.25) if r.status >= 180} - answered
            if not fresh:
                return
            answered |= fresh

    def close(self) -> None:
        self.sock.close()


async def healthz(p: Platform) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"{p.node.public_url}/healthz") as resp:
        return resp.status


async def assert_still_serving(p: Platform, *, answer: bool = True) -> None:
    """The HTTP API answers and a normal SIPp call (bob answering) completes."""
    assert await healthz(p) == 200
    gateway = p.node.sip
    assert gateway is not None
    bob = p["bob"]
    before = len([n for n in bob.bot.notifications if n.change_type == "created"])
    task = asyncio.create_task(
        asyncio.to_thread(
            run_sipp, "uac_basic.xml", LOOPBACK, gateway.port, service=SERVICE, call_duration_ms=100, timeout=15
        )
    )
    if answer:
        incoming = await bob.bot.incoming(timeout=10, index=before)
        assert await bob.client.answer(incoming.call_id) == 202
    result = await task
    assert result.ok, result.describe()


async def assert_nothing_leaked(p: Platform, within: float = 5.0) -> None:
    gateway = p.node.sip
    assert gateway is not None
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if gateway.active == 0 and gateway.ports.in_use == 0 and p.node.calls.active_calls == 0:
            break
        await asyncio.sleep(0.05)
    assert gateway.active == 0, "SIP calls left in the gateway"
    assert gateway.ports.in_use == 0, "RTP ports not released"
    assert p.node.calls.active_calls == 0, "call legs still live"
    stored = await stored_conversations(p.node.conversations)
    live = [leg for doc in stored for leg in doc["legs"] if leg["state"] != "terminated"]
    assert live == [], "call documents not ended"


def statuses(replies: Iterable[Reply]) -> list[int]:
    return [r.status for r in replies]


# --- malformed input over UDP --------------------------------------------------------------------------------------

LONG = "X-Long: " + "a" * 9000
MANY_HEADERS = tuple(f"X-H{i}: v" for i in range(200))
MANY_VIAS = "Via: " + ", ".join(f"SIP/2.0/UDP 198.51.100.{i % 250}:5060;branch=z9hG4bK{i}" for i in range(300))


BAD_OFFERS = [
    ("has no c= line", SDP.replace(b"c=IN IP4 127.0.0.1\r\n", b"")),
    ("has a format that is no payload type", SDP.replace(b"RTP/AVP 0 101", b"RTP/AVP 0 x")),
    ("has a payload type out of range", SDP.replace(b"RTP/AVP 0 101", b"RTP/AVP 0 101 999")),
    ("has a bad event range", SDP + b"a=fmtp:101 999999999999\r\n"),
    ("offers video only", SDP.replace(b"m=audio 7078 RTP/AVP 0 101", b"m=video 7078 RTP/AVP 96")),
    ("rejects its own stream", SDP.replace(b"m=audio 7078", b"m=audio 0")),
    ("has a port out of range", SDP.replace(b"m=audio 7078", b"m=audio 99999")),
]
"""Offers that parse as SDP but cannot be answered (before the fix, some left the INVITE unanswered and leaked
its RTP ports)."""

SILENT: list[tuple[str, bytes]] = [
    ("garbage text", b"hello there, is this SIP?\r\n\r\n"),
    ("binary blob", bytes(range(256)) * 5 + os.urandom(120)),
    ("NULs", b"\x00" * 1400),
    ("start line only", b"INVITE sip:x@127.0.0.1 SIP/2.0\r\n\r\n"),
    ("stray response", b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx\r\n\r\n"),
]
"""Datagrams nothing can be answered to: dropped."""


def answered_cases(port: int) -> list[tuple[str, Request, set[int]]]:
    """(what, request, the final statuses acceptable for it); `Request.drop`/`extra` make it hostile."""

    def r(**kw: Any) -> Request:
        return Request(port=port, **kw)

    return [
        ("unknown method", r(method="FROBNICATE"), {501}),
        ("missing Max-Forwards is tolerated", r(drop=("Max-Forwards",)), {200}),
        ("INVITE without Contact", r(method="INVITE", body=SDP, drop=("Contact",)), {400}),
        ("two CSeq", r(extra=("CSeq: 2 OPTIONS",)), {400}),
        ("CSeq method mismatch", r(cseq_method="BYE"), {400}),
        ("malformed CSeq", r(drop=("CSeq",), extra=("CSeq: one OPTIONS",)), {400}),
        ("Content-Length beyond the datagram", r(body=b"v=0\r\n", content_length="400"), {400}),
        ("Content-Length not a number", r(body=b"v=0\r\n", content_length="12abc"), {400}),
        ("Content-Length shorter: body truncated", r(body=b"v=0\r\nextra", content_length="5"), {200}),
        ("header line over 8 KiB", r(extra=(LONG,)), {400}),
        ("200 header fields", r(extra=MANY_HEADERS), {400}),
        ("300 Via values", r(extra=(MANY_VIAS,)), {400}),
        ("Max-Forwards 300", r(drop=("Max-Forwards",), extra=("Max-Forwards: 300",)), {400}),
        ("SIP/3.0", r(version="SIP/3.0"), {505}),
        ("http Request-URI", r(uri="http://example.com/"), {416}),
        ("NUL in a header", r(extra=("X-Bad: a\x00b",)), {400}),
        ("Require an unknown extension", r(extra=("Require: frobnication",)), {420}),
        ("BYE outside any dialog", r(method="BYE", to_tag="nope"), {481}),
        ("CANCEL of nothing", r(method="CANCEL"), {481}),
        ("INVITE with malformed SDP", r(method="INVITE", body=b"v=0\r\nthis is not sdp\r\n"), {400, 488}),
        ("INVITE without SDP", r(method="INVITE"), {488}),
        *[(f"INVITE whose SDP {what}", r(method="INVITE", body=body), {400, 488}) for what, body in BAD_OFFERS],
        ("INVITE to an unknown number", r(method="INVITE", uri="sip:19995550000@127.0.0.1", body=SDP), {404}),
    ]


async def test_malformed_udp_requests_get_rfc_answers_or_silence() -> None:
    async with phone_platform() as p:
        assert p.node.sip is not None
        peer = UdpPeer(p.node.sip.port)
        try:
            for _, datagram in SILENT:
                peer.send(datagram)
            silence = await asyncio.to_thread(peer.drain, 0.3)
            assert silence == [] and peer.junk == 0
            for what, request, acceptable in answered_cases(peer.port):
                reply = await asyncio.to_thread(peer.final, request)
                assert reply is not None, f"{what}: no answer"
                assert reply.status in acceptable, f"{what}: got {reply.status} {reply.reason}"
                if reply.status == 501:
                    assert "allow" in reply.headers, what
                if reply.status == 420:
                    assert reply.headers.get("unsupported") == "frobnication"
        finally:
            peer.close()
        assert p.node.sip.endpoint.stats["handler_errors"] == 0
        await assert_still_serving(p)
        await assert_nothing_leaked(p)


# --- malformed input over TCP --------------------------------------------------------------------------------------


async def tcp_exchange(port: int, chunks: Iterable[bytes], *, read_for: float = 0.5) -> tuple[list[Reply], bool]:
    """Send `chunks` over one connection; the replies read within `read_for` s and whether the node closed it."""
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0.01)
        data = b""
        closed = False
        deadline = time.monotonic() + read_for
        while (left := deadline - time.monotonic()) > 0:
            try:
                more = await asyncio.wait_for(reader.read(65536), left)
            except TimeoutError:
                break
            if not more:
                closed = True
                break
            data += more
    finally:
        writer.close()
    replies = [reply for part in data.split(b"SIP/2.0 ")[1:] if (reply := Reply.parse(b"SIP/2.0 " + part))]
    return replies, closed


async def test_tcp_framing_attacks_are_answered_and_the_connection_closed() -> None:
    async with phone_platform() as p:
        assert p.node.sip is not None
        port = p.node.sip.endpoint.local_port("tcp")

        def r(**kw: Any) -> bytes:
            return Request(transport="TCP", port=40000, **kw).encode()

        # a header block that never ends: 513 once it passes 64 KiB
        replies, closed = await tcp_exchange(port, [r()[:-4] + b"\r\nX-Pad: " + b"p" * 70_000])
        assert statuses(replies) == [513] and closed
        # a body announced larger than any message we take: 413, before it is even sent
        replies, closed = await tcp_exchange(port, [r(body=b"v=0\r\n", content_length="100000")])
        assert statuses(replies) == [413] and closed
        # no Content-Length on a stream: the message cannot be framed
        no_length = r().replace(b"Content-Length: 0\r\n", b"")
        replies, closed = await tcp_exchange(port, [no_length])
        assert statuses(replies) == [400] and closed
        # two Content-Length values
        replies, closed = await tcp_exchange(port, [r(extra=("Content-Length: 7",))])
        assert statuses(replies) == [400] and closed
        # binary junk: nothing to answer, the connection is closed
        replies, closed = await tcp_exchange(port, [os.urandom(2000) + b"\r\n\r\n"])
        assert replies == [] and closed
        # well-formed messages still work: pipelined in one segment, and split in odd places
        replies, closed = await tcp_exchange(port, [r() + r(), *_split(r(), 7)])
        assert statuses(replies) == [200, 200, 200] and not closed
        # Content-Length shorter than the body: the rest is the next (broken) message
        replies, closed = await tcp_exchange(port, [r(body=b"v=0\r\ntrailing junk", content_length="5")])
        assert 200 in statuses(replies)

        assert p.node.sip.endpoint.stats["handler_errors"] == 0
        await assert_still_serving(p)
        await assert_nothing_leaked(p)


async def test_idle_tcp_connections_cannot_lock_out_other_peers() -> None:
    async with phone_platform() as p:
        assert p.node.sip is not None
        tcp = p.node.sip.endpoint.tcp
        assert tcp is not None
        tcp.first_message_timeout = 0.5  # 10 s by default
        port = p.node.sip.endpoint.local_port("tcp")
        hogs = []
        try:
            for _ in range(tcp.max_connections_per_host + 16):  # from another loopback address: 127.0.0.2
                _, writer = await asyncio.open_connection(LOOPBACK, port, local_addr=("127.0.0.2", 0))
                hogs.append(writer)
            await asyncio.sleep(0.1)
            assert tcp.connection_count == tcp.max_connections_per_host  # the rest were refused at once
            # another peer still gets in
            replies, closed = await tcp_exchange(port, [Request(transport="TCP", port=40000).encode()])
            assert statuses(replies) == [200] and not closed
            await asyncio.sleep(0.6)  # the silent connections are closed
            assert tcp.idle_closed == tcp.max_connections_per_host
            assert tcp.connection_count == 0
        finally:
            for writer in hogs:
                writer.close()


def _split(data: bytes, parts: int) -> list[bytes]:
    size = -(-len(data) // parts)
    return [data[i : i + size] for i in range(0, len(data), size)]


# --- INVITE floods -------------------------------------------------------------------------------------------------


def flood(peer: UdpPeer, count: int, seconds: float) -> dict[str, Invite]:
    """`count` INVITEs to NUMBER in about `seconds`, every other one without SDP; returns them by Call-ID."""
    sent: dict[str, Invite] = {}
    batch = 50
    pause = seconds / (count / batch)
    for start in range(0, count, batch):
        for n in range(start, min(count, start + batch)):
            request = Request(method="INVITE", port=peer.port, body=SDP if n % 2 == 0 else b"")
            sent[request.call_id] = request.invite
            peer.send(request.encode())
        peer.drain(pause)
    return sent


def finals_by_call(replies: Iterable[Reply]) -> dict[str, Reply]:
    """The first final response to each INVITE."""
    out: dict[str, Reply] = {}
    for reply in replies:
        if reply.status >= 200 and reply.cseq_method == "INVITE":
            out.setdefault(reply.call_id, reply)
    return out


async def test_invite_flood_from_one_source_is_refused_with_503_and_leaks_nothing() -> None:
    rate, burst = 40.0, 40.0
    sip = SipConfig(port=0, call_rate_per_source=rate, call_burst_per_source=burst)
    async with phone_platform(sip) as p:
        gateway = p.node.sip
        assert gateway is not None
        peer = UdpPeer(gateway.port)
        try:
            started = time.monotonic()
            sent = await asyncio.to_thread(flood, peer, 2000, 1.0)
            elapsed = time.monotonic() - started
            await asyncio.to_thread(peer.settle)
            ringing = {r.call_id for r in peer.replies if r.status == 180}
            finals = finals_by_call(peer.replies)
            refused = [r for r in finals.values() if r.status == 503]

            # the node took what it could and refused the rest: no call grew beyond the source's allowance
            assert len(ringing) <= burst + rate * elapsed, len(ringing)
            assert gateway.active == len(ringing) > 0
            assert refused, Counter(statuses(peer.replies))
            assert all(r.headers.get("retry-after", "").isdigit() for r in refused)
            assert {r.status for r in finals.values()} <= {488, 503}, Counter(statuses(finals.values()))
            assert set(finals) | ringing <= set(sent)
            assert gateway.admission.stats["refused_rate"] >= len(refused)
            assert gateway.endpoint.stats["handler_errors"] == 0
            assert await healthz(p) == 200

            # the caller gives up on every call that rings: 200 for each CANCEL, 487 for each INVITE
            for call_id in ringing:
                peer.send(cancel_for(sent[call_id], peer.port))
            await asyncio.to_thread(peer.drain, 1.0)
            cancelled = {r.call_id for r in peer.replies if r.status == 487}
            assert cancelled == ringing
            # refusals are stateless: one 503 per refused INVITE, never retransmitted (no amplification)
            assert set(Counter(r.call_id for r in peer.replies if r.status == 503).values()) == {1}
            assert gateway.endpoint.stats["refused"] == len(refused)
        finally:
            peer.close()
        await assert_nothing_leaked(p)
        await asyncio.sleep(1.0)  # the flooding address (also SIPp's) gets its allowance back
        await assert_still_serving(p)
        await assert_nothing_leaked(p)


async def test_a_full_node_answers_503_retry_after_and_unanswered_calls_time_out() -> None:
    sip = SipConfig(port=0, max_calls=5, call_rate_per_source=0, call_source_share=1.0, call_ringing_share=1.0)
    async with phone_platform(sip, answer_timeout=1.0) as p:
        gateway = p.node.sip
        assert gateway is not None
        peer = UdpPeer(gateway.port)
        try:

            def offer(count: int) -> list[Reply]:
                for _ in range(count):
                    peer.send(Request(method="INVITE", port=peer.port, body=SDP).encode())
                peer.settle()
                return peer.replies

            replies = await asyncio.to_thread(offer, 20)
            ringing = {r.call_id for r in replies if r.status == 180}
            assert len(ringing) == 5
            full = [r for r in finals_by_call(replies).values() if r.status == 503]
            assert len(full) == 15 and all(r.headers.get("retry-after") == "5" for r in full)
            assert gateway.admission.stats["refused_full"] == 15
            assert gateway.active == 5
            # nobody answers: the calls stop ringing after the answer timeout (480 to the caller)
            later = finals_by_call(await asyncio.to_thread(peer.drain, 1.5))
            assert {later[c].status for c in ringing if c in later} == {480} and set(later) >= ringing
        finally:
            peer.close()
        await assert_nothing_leaked(p)
        await assert_still_serving(p)
        await assert_nothing_leaked(p)


# --- the endpoint's admission hook ---------------------------------------------------------------------------------


def raw_invite(port: int, branch: str) -> bytes:
    lines = [
        "INVITE sip:alice@127.0.0.1 SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{branch}",
        "Max-Forwards: 70",
        f"From: <sip:bob@127.0.0.1>;tag={branch}",
        "To: <sip:alice@127.0.0.1>",
        f"Call-ID: {branch}@test",
        "CSeq: 1 INVITE",
        f"Contact: <sip:bob@127.0.0.1:{port}>",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def sock_replies(sock: socket.socket, seconds: float) -> list[bytes]:
    loop = asyncio.get_running_loop()
    out: list[bytes] = []
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        try:
            out.append(await asyncio.wait_for(loop.sock_recv(sock, 65536), left))
        except TimeoutError:
            break
    return out


async def test_refusals_are_stateless_and_retransmissions_are_not_judged_again() -> None:
    judged: list[str] = []
    ringing: list[ServerTransactionHandle] = []

    def admit(request: SipRequest, source: tuple[str, int]) -> tuple[int, HeaderItems] | None:
        judged.append(request.call_id)
        return None if len(judged) == 1 else (503, [("Retry-After", "7")])

    def on_request(handle: ServerTransactionHandle, request: SipRequest, source: tuple[str, int]) -> None:
        ringing.append(handle)
        handle.respond(180)  # and never more: the first INVITE stays pending

    endpoint = SipEndpoint(EndpointConfig(udp_port=0, tcp_port=None, trying_delay=None), on_request=on_request)
    endpoint.admit = admit
    async with endpoint:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        port = sock.getsockname()[1]
        target = ("127.0.0.1", endpoint.local_port("udp"))
        try:
            first, second = os.urandom(6).hex(), os.urandom(6).hex()
            sock.sendto(raw_invite(port, first), target)
            assert [m.split(b"\r\n")[0] for m in await sock_replies(sock, 0.2)] == [b"SIP/2.0 180 Ringing"]
            sock.sendto(raw_invite(port, first), target)  # retransmission: the transaction answers it again
            assert [m.split(b"\r\n")[0] for m in await sock_replies(sock, 0.2)] == [b"SIP/2.0 180 Ringing"]
            assert judged == [f"{first}@test"] and len(ringing) == 1

            sock.sendto(raw_invite(port, second), target)
            answers = await sock_replies(sock, 0.8)  # beyond T1: a stateful answer would have been retransmitted
            assert len(answers) == 1 and answers[0].startswith(b"SIP/2.0 503 ")
            assert b"\r\nRetry-After: 7\r\n" in answers[0] and f"Call-ID: {second}@test".encode() in answers[0]
            assert len(endpoint.layer) == 1 and len(ringing) == 1  # no transaction, the user never saw it
            assert endpoint.stats["refused"] == 1
        finally:
            sock.close()
