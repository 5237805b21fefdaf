"""Two real SipEndpoints on 127.0.0.1 (UDP and TCP) with shrunken timers: OPTIONS, a whole call with in-dialog
requests, CANCEL, loss, timeouts, and hostile input that must be answered or dropped without harm."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from opencomms.sip.destination import Destination
from opencomms.sip.endpoint import SipEndpoint
from opencomms.sip.endpoint_config import EndpointConfig
from opencomms.sip.handles import ServerTransactionHandle
from opencomms.sip.message import SipRequest, SipResponse
from opencomms.sip.parser import ParseLimits, parse, read_head
from opencomms.sip.transactions import TimerConfig

FAST = TimerConfig(t1=0.02, t2=0.08, t4=0.1)
SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
TRANSPORTS = ["udp", "tcp"]


def config(**kw: object) -> EndpointConfig:
    base: dict[str, object] = {"udp_port": 0, "tcp_port": 0, "timers": FAST, "trying_delay": 0.02}
    base.update(kw)
    return EndpointConfig(**base)  # type: ignore[arg-type]


@dataclass
class Callee:
    """A small UAS: records what it gets and answers according to `behaviour`."""

    seen: list[SipRequest] = field(default_factory=list)
    acks: list[SipRequest] = field(default_factory=list)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    acked: asyncio.Event = field(default_factory=asyncio.Event)
    invite_answer: int | None = 200
    answer_delay: float = 0.03
    handles: list[ServerTransactionHandle] = field(default_factory=list)

    def __call__(self, handle: ServerTransactionHandle, request: SipRequest, source: tuple[str, int]) -> None:
        self.seen.append(request)
        self.handles.append(handle)
        if request.method == "INVITE":
            handle.on_cancel = self.cancelled.set
            handle.on_ack = self._ack
            if handle.dialog is None:
                handle.respond(180)
            if self.invite_answer is not None:
                status = self.invite_answer
                asyncio.get_running_loop().call_later(
                    self.answer_delay, lambda: handle.respond(status, body=SDP, content_type="application/sdp")
                )
        elif request.method == "REFER":
            handle.respond(202)
        else:
            handle.respond(200)

    def _ack(self, ack: SipRequest) -> None:
        self.acks.append(ack)
        self.acked.set()

    def methods(self) -> list[str]:
        return [r.method for r in self.seen]


@pytest.fixture
async def pair() -> AsyncIterator[tuple[SipEndpoint, SipEndpoint, Callee]]:
    callee = Callee()
    a = SipEndpoint(config())
    b = SipEndpoint(config(), on_request=callee)
    await a.start()
    await b.start()
    try:
        yield a, b, callee
    finally:
        await a.close()
        await b.close()


def invite_from(a: SipEndpoint, b: SipEndpoint, transport: str) -> SipRequest:
    return a.new_request(
        "INVITE",
        b.contact_uri(transport, "bob"),
        from_='"Alice" <sip:alice@127.0.0.1>',
        transport=transport,
        body=SDP,
        content_type="application/sdp",
    )


async def wait_for(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    """Poll state that has no event of its own (dialog tables, connection counts)."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_options_round_trip(pair: tuple[SipEndpoint, SipEndpoint, Callee], transport: str) -> None:
    a, b, _ = pair
    b.on_request = None  # the endpoint's own answer to OPTIONS
    request = a.new_request("OPTIONS", b.contact_uri(transport), from_="<sip:alice@127.0.0.1>", transport=transport)
    response = await a.request(request, b.destination(transport))
    assert response.status == 200 and "INVITE" in (response.header("Allow") or "")
    via = response.top_via
    assert via.transport == transport.upper() and via.received == "127.0.0.1"
    if transport == "udp":
        assert via.rport == a.local_port("udp")  # RFC 3581: the port it came from
    else:
        assert via.rport is not None  # the ephemeral port of our outgoing connection
    assert response.to.tag and response.header("Server") == "opencomms"
    assert len(a.layer) >= 0 and b.stats["parse_errors"] == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_call_invite_ringing_answer_ack_bye(
    pair: tuple[SipEndpoint, SipEndpoint, Callee], transport: str
) -> None:
    a, b, callee = pair
    a.on_request = Callee()
    provisional: list[SipResponse] = []
    handle = a.send_request(invite_from(a, b, transport), b.destination(transport), on_provisional=provisional.append)
    response = await handle
    assert response.status == 200 and response.body == SDP
    assert [r.status for r in provisional] == [180]
    dialog = handle.dialog
    assert dialog is not None and dialog.state.value == "confirmed" and len(a.dialogs) == 1
    assert str(dialog.remote_target) == str(b.contact_uri(transport))
    await a.ack(dialog, body=b"")
    await asyncio.wait_for(callee.acked.wait(), 2)
    (server_dialog,) = list(b.dialogs)
    assert server_dialog.remote_tag == dialog.local_tag and server_dialog.local_tag == dialog.remote_tag

    # in-dialog traffic both ways: re-INVITE (target refresh), REFER + NOTIFY, INFO
    reinvite = await a.request_in_dialog(dialog, dialog.reinvite(SDP))
    assert reinvite.status == 200
    await a.ack(dialog)
    await wait_for(lambda: len(callee.acks) == 2)
    assert (await a.request_in_dialog(dialog, dialog.refer("<sip:carol@127.0.0.1>"))).status == 202
    assert (
        await b.request_in_dialog(server_dialog, server_dialog.info(b"Signal=1\r\n", "application/dtmf"))
    ).status == 200
    assert callee.methods() == ["INVITE", "INVITE", "REFER"]

    bye = await a.bye(dialog)
    assert bye.status == 200
    assert len(a.dialogs) == 0
    await wait_for(lambda: len(b.dialogs) == 0)
    assert callee.methods()[-1] == "BYE"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_cancel_ringing_invite(pair: tuple[SipEndpoint, SipEndpoint, Callee], transport: str) -> None:
    a, b, callee = pair
    callee.invite_answer = None  # ring forever
    handle = a.send_request(
        invite_from(a, b, transport), b.destination(transport), on_provisional=lambda _: handle.cancel()
    )
    response = await asyncio.wait_for(handle.wait(), 3)
    assert response.status == 487
    await asyncio.wait_for(callee.cancelled.wait(), 1)
    (invite_handle,) = callee.handles
    assert invite_handle.cancelled and invite_handle.final_response is not None
    assert invite_handle.final_response.status == 487
    assert invite_handle.respond(200) is None  # too late: the transaction is over
    assert len(a.dialogs) == 0 and len(b.dialogs) == 0


async def test_cancel_before_any_provisional_waits_for_one(pair: tuple[SipEndpoint, SipEndpoint, Callee]) -> None:
    a, b, callee = pair
    callee.invite_answer = None
    handle = a.send_request(invite_from(a, b, "udp"), b.destination("udp"))
    handle.cancel()  # nothing received yet: the CANCEL goes out with the first provisional
    assert (await asyncio.wait_for(handle.wait(), 3)).status == 487


async def test_slow_answer_gets_100_trying_and_a_rejection_is_acked(
    pair: tuple[SipEndpoint, SipEndpoint, Callee],
) -> None:
    a, b, _ = pair
    handles: list[ServerTransactionHandle] = []

    def slow(handle: ServerTransactionHandle, request: SipRequest, source: tuple[str, int]) -> None:
        handles.append(handle)
        asyncio.get_running_loop().call_later(0.1, lambda: handle.respond(486))

    b.on_request = slow
    provisional: list[int] = []
    response = await a.request(
        invite_from(a, b, "udp"), b.destination(), on_provisional=lambda r: provisional.append(r.status)
    )
    # the server transaction's own 100 (sent again if a retransmitted INVITE crossed it)
    assert response.status == 486 and provisional and set(provisional) == {100}
    (handle,) = handles
    server = b.layer.server_transaction(handle.key)
    await wait_for(lambda: server is not None and server.state.value in ("confirmed", "terminated"))
    assert len(a.dialogs) == 0 and len(b.dialogs) == 0


async def test_plain_address_means_udp(pair: tuple[SipEndpoint, SipEndpoint, Callee]) -> None:
    a, b, _ = pair
    request = a.new_request("OPTIONS", b.contact_uri(), from_="<sip:alice@127.0.0.1>")
    assert (await a.request(request, ("127.0.0.1", b.local_port("udp")))).status == 200


class Lossy:
    """Wraps a UDP transport's send: drops datagrams for which `drop(data)` says so."""

    def __init__(self, endpoint: SipEndpoint, drop: Callable[[bytes], bool]) -> None:
        assert endpoint.udp is not None
        self.inner = endpoint.udp.send
        self.drop = drop
        self.dropped: list[bytes] = []
        endpoint.udp.send = self  # type: ignore[method-assign]

    def __call__(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.drop(data):
            self.dropped.append(data)
            return
        self.inner(data, addr)


def first_n(n: int) -> Callable[[bytes], bool]:
    count = [0]

    def drop(_: bytes) -> bool:
        count[0] += 1
        return count[0] <= n

    return drop


async def test_retransmission_under_loss(pair: tuple[SipEndpoint, SipEndpoint, Callee]) -> None:
    a, b, callee = pair
    lossy = Lossy(a, first_n(2))
    request = a.new_request("OPTIONS", b.contact_uri(), from_="<sip:alice@127.0.0.1>")
    response = await asyncio.wait_for(a.request(request, b.destination()), 3)
    assert response.status == 200 and len(lossy.dropped) == 2
    assert callee.methods() == ["OPTIONS"]  # the retransmission that got through made one transaction


async def test_lost_2xx_and_lost_ack_are_recovered(pair: tuple[SipEndpoint, SipEndpoint, Callee]) -> None:
    a, b, callee = pair
    callee.answer_delay = 0.0
    # the callee loses its first two 200 OKs; the caller loses its first ACK
    callee_loss = Lossy(b, lambda data: data.startswith(b"SIP/2.0 200") and len(callee_loss.dropped) < 2)
    caller_loss = Lossy(a, lambda data: data.startswith(b"ACK") and not caller_loss.dropped)
    handle = a.send_request(invite_from(a, b, "udp"), b.destination())
    response = await asyncio.wait_for(handle.wait(), 3)
    assert response.status == 200 and len(callee_loss.dropped) == 2
    assert handle.dialog is not None
    await a.ack(handle.dialog)
    await asyncio.wait_for(callee.acked.wait(), 3)  # the 2xx was retransmitted and the cached ACK re-sent
    assert len(caller_loss.dropped) == 1 and callee.methods() == ["INVITE"]


async def test_timeouts_and_unreachable_peers() -> None:
    async with SipEndpoint(config(timers=TimerConfig(t1=0.005, t2=0.02, t4=0.02))) as a:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
            silent.bind(("127.0.0.1", 0))
            port = silent.getsockname()[1]
            request = a.new_request("OPTIONS", f"sip:nobody@127.0.0.1:{port}", from_="<sip:a@127.0.0.1>")
            handle = a.send_request(request, Destination.udp("127.0.0.1", port))
            response = await asyncio.wait_for(handle.wait(), 2)
            assert response.status == 408 and handle.timed_out
            assert silent.recv(65535).startswith(b"OPTIONS")
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        dead_port = closed.getsockname()[1]
        closed.close()
        request = a.new_request("OPTIONS", f"sip:nobody@127.0.0.1:{dead_port}", from_="<sip:a@127.0.0.1>")
        handle = a.send_request(request, Destination.tcp("127.0.0.1", dead_port))
        response = await asyncio.wait_for(handle.wait(), 2)
        assert response.status == 503 and handle.transport_failed
        assert len(a.layer) == 0


async def test_stack_level_answers(pair: tuple[SipEndpoint, SipEndpoint, Callee]) -> None:
    a, b, callee = pair
    dest = b.destination()

    async def send(method: str, **headers: str) -> SipResponse:
        request = a.new_request(method, b.contact_uri(), from_="<sip:alice@127.0.0.1>", headers=list(headers.items()))
        return await a.request(request, dest)

    assert (await send("FROBNICATE")).status == 501
    assert (await send("PUBLISH")).status == 405  # known, not allowed
    bad_ext = await send("OPTIONS", Require="nothingSupportsThis")
    assert bad_ext.status == 420 and bad_ext.header("Unsupported") == "nothingSupportsThis"
    stray = a.new_request("BYE", b.contact_uri(), from_="<sip:alice@127.0.0.1>", to="<sip:bob@127.0.0.1>;tag=nope")
    assert (await a.request(stray, dest)).status == 481
    no_contact = invite_from(a, b, "udp")
    no_contact.headers.remove("Contact")
    assert (await a.request(no_contact, dest)).status == 400
    assert callee.seen == []  # none of these reached the transaction user


class RawUdp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        self.received.put_nowait(data)


BADVERS = (
    b"OPTIONS sip:t.watson@example.org SIP/7.0\r\nVia: SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw\r\n"
    b"Max-Forwards: 70\r\nFrom: A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe\r\n"
    b"To: T. Watson <sip:t.watson@example.org>\r\nCall-ID: badvers.31417@c.example.com\r\nCSeq: 1 OPTIONS\r\n"
    b"l: 0\r\n\r\n"
)


async def test_garbage_over_udp_is_answered_or_dropped() -> None:
    limits = ParseLimits(max_message=2000)
    async with SipEndpoint(config(limits=limits, error_rate=1.0, error_burst=5.0)) as b:
        loop = asyncio.get_running_loop()
        transport, raw = await loop.create_datagram_endpoint(RawUdp, local_addr=("127.0.0.1", 0))
        target = ("127.0.0.1", b.local_port("udp"))
        try:
            transport.sendto(BADVERS, target)
            line, headers = read_head((await asyncio.wait_for(raw.received.get(), 1)).split(b"\r\n\r\n")[0])
            assert (
                line == "SIP/2.0 505 Version Not Supported" and headers.get("Call-ID") == "badvers.31417@c.example.com"
            )
            assert headers.get_all("Via") == ["SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw"]
            oversized = BADVERS.replace(b"SIP/7.0\r\n", b"SIP/2.0\r\n", 1).replace(b"SIP/7.0/UDP", b"SIP/2.0/UDP")
            oversized = oversized.replace(b"l: 0", b"l: 3000") + b"x" * 3000
            transport.sendto(oversized, target)
            answer = parse(await asyncio.wait_for(raw.received.get(), 1))
            assert isinstance(answer, SipResponse) and answer.status == 413
            for junk in (os.urandom(1500), b"\r\n\r\n", b"SIP/2.0 200 OK\r\n\r\n", b"\x00" * 100, b"INVITE\r\n\r\n"):
                transport.sendto(junk, target)
            for _ in range(300):  # a flood of answerable garbage: answers are rate-limited, nothing is kept
                transport.sendto(BADVERS, target)
            await asyncio.sleep(0.2)
            answers = raw.received.qsize()
            assert answers <= 5
            # (the kernel may drop part of the flood; whatever arrived was refused beyond the burst)
            assert b.stats["error_responses"] <= 6 and b.stats["rate_limited"] >= 50
            assert len(b.layer) == 0 and b.stats["handler_errors"] == 0
            # and it still works
            async with SipEndpoint(config()) as a:
                request = a.new_request("OPTIONS", b.contact_uri(), from_="<sip:a@127.0.0.1>")
                b.on_request = None
                assert (await a.request(request, b.destination())).status == 200
        finally:
            transport.close()


async def test_garbage_over_tcp_closes_the_connection() -> None:
    async with SipEndpoint(config(limits=ParseLimits(max_message=2000))) as b:
        port = b.local_port("tcp")
        # a request without Content-Length on a stream: 400, then the connection is closed
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        no_length = BADVERS.replace(b"SIP/7.0", b"SIP/2.0").replace(b"l: 0\r\n", b"")
        writer.write(no_length)
        data = await asyncio.wait_for(reader.read(), 2)  # read() returns at EOF
        assert data.startswith(b"SIP/2.0 400 Missing Content-Length")
        writer.close()
        # endless headers: closed without an answer
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"OPTIONS sip:x SIP/2.0\r\n" + b"X: " + b"y" * 5000)
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
        # keep-alive ping gets a pong
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\r\n\r\n")
        assert await asyncio.wait_for(reader.readexactly(2), 2) == b"\r\n"
        writer.close()
        assert b.tcp is not None
        await wait_for(lambda: b.tcp is not None and b.tcp.connection_count == 0)
        assert b.stats["handler_errors"] == 0
