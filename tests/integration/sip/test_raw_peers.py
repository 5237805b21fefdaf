"""Behaviour that needs a misbehaving or unusual peer, played by a raw UDP socket: a forked second 2xx (ACK it,
then BYE it), and a 2xx that is never acknowledged (retransmit it for 64*T1, then end the session with BYE)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from opencomms.sip.builders import make_response
from opencomms.sip.endpoint import SipEndpoint
from opencomms.sip.endpoint_config import EndpointConfig
from opencomms.sip.handles import ServerTransactionHandle
from opencomms.sip.headers import Headers
from opencomms.sip.message import SipRequest, SipResponse
from opencomms.sip.parser import parse
from opencomms.sip.transactions import TimerConfig, new_branch
from opencomms.sip.uri import parse_uri

TIMERS = TimerConfig(t1=0.005, t2=0.02, t4=0.02)


class Peer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.inbox: asyncio.Queue[SipRequest | SipResponse] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        self.inbox.put_nowait(parse(data))

    def send(self, message: SipRequest | SipResponse, port: int) -> None:
        assert self.transport is not None
        self.transport.sendto(message.serialize(), ("127.0.0.1", port))

    async def next(self, method: str | None = None, status: int | None = None) -> SipRequest | SipResponse:
        async with asyncio.timeout(3):
            while True:
                message = await self.inbox.get()
                if method is not None and isinstance(message, SipRequest) and message.method == method:
                    return message
                if status is not None and isinstance(message, SipResponse) and message.status == status:
                    return message


@contextlib.asynccontextmanager
async def peer() -> AsyncIterator[tuple[Peer, int]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(Peer, local_addr=("127.0.0.1", 0))
    try:
        yield protocol, transport.get_extra_info("sockname")[1]
    finally:
        transport.close()


async def test_forked_second_2xx_is_acked_and_released() -> None:
    async with peer() as (raw, port), SipEndpoint(EndpointConfig(udp_port=0, tcp_port=None, timers=TIMERS)) as a:
        invite = a.new_request("INVITE", f"sip:bob@127.0.0.1:{port}", from_="<sip:alice@127.0.0.1>")
        handle = a.send_request(invite, ("127.0.0.1", port))
        got = await raw.next("INVITE")
        assert isinstance(got, SipRequest)
        for tag in ("fork-a", "fork-b"):
            answer = make_response(got, 200, to_tag=tag)
            answer.headers.add("Contact", f"<sip:bob-{tag}@127.0.0.1:{port}>")
            raw.send(answer, a.local_port())
        response = await handle
        assert response.to.tag == "fork-a" and handle.dialog is not None
        await a.ack(handle.dialog)
        acks: dict[str, SipRequest] = {}
        while len(acks) < 2:
            ack = await raw.next("ACK")
            assert isinstance(ack, SipRequest)
            acks[ack.to.tag or ""] = ack
        assert set(acks) == {"fork-a", "fork-b"}
        assert str(acks["fork-b"].uri) == f"sip:bob-fork-b@127.0.0.1:{port}"
        bye = await raw.next("BYE")
        assert isinstance(bye, SipRequest) and bye.to.tag == "fork-b"
        raw.send(make_response(bye, 200), a.local_port())
        await asyncio.sleep(0.05)
        assert [d.remote_tag for d in a.dialogs] == ["fork-a"]


async def test_unacknowledged_2xx_ends_with_bye() -> None:
    answered: list[ServerTransactionHandle] = []

    def answer(handle: ServerTransactionHandle, request: SipRequest, source: tuple[str, int]) -> None:
        answered.append(handle)
        handle.respond(200)

    config = EndpointConfig(udp_port=0, tcp_port=None, timers=TIMERS)
    async with peer() as (raw, port), SipEndpoint(config, on_request=answer) as b:
        headers = Headers(
            [
                ("Via", f"SIP/2.0/UDP 127.0.0.1:{port};branch={new_branch()};rport"),
                ("Max-Forwards", "70"),
                ("From", "<sip:alice@127.0.0.1>;tag=never-acks"),
                ("To", "<sip:bob@127.0.0.1>"),
                ("Call-ID", "no-ack-call"),
                ("CSeq", "1 INVITE"),
                ("Contact", f"<sip:alice@127.0.0.1:{port}>"),
            ]
        )
        raw.send(SipRequest("INVITE", parse_uri("sip:bob@127.0.0.1"), headers), b.local_port())
        oks = 0
        while True:
            message = await raw.inbox.get()
            if isinstance(message, SipResponse) and message.status == 200:
                oks += 1
            elif isinstance(message, SipRequest) and message.method == "BYE":
                break
        assert oks >= 5  # retransmitted T1, 2T1, ... up to T2 until 64*T1
        assert message.to.tag == "never-acks" and message.from_.tag == answered[0].to_tag
        raw.send(make_response(message, 200), b.local_port())
        async with asyncio.timeout(1):
            while len(b.dialogs):  # noqa: ASYNC110
                await asyncio.sleep(0.005)
