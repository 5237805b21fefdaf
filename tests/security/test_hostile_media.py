"""Issue 14 items 1 and 8 replayed against a running node: one hostile call must not silence the others, and
calls that fault at set-up or hang-up must not leak RTP ports.

A legitimate call (our VirtualCaller, answered by the bot) keeps receiving all its RTP while hostile INVITEs
arrive whose SDP names an unresolvable host, garbage bytes, a black-holed name (an injected resolver that never
answers), multicast, broadcast, IPv6 on an IPv4 node or an out-of-range RTCP port: each gets 488 with a Warning
301, no engine command fails, nothing floods the log, and /healthz shows the ports back at zero. A re-INVITE
with a bad address gets 488 and the call keeps its media; a trunk answering with one gets ACK + BYE and the bot a
clear resultInfo. With 4 port pairs, twice as many calls faulting at hang-up or set-up leave the allocator full.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from opencomms.config import SipConfig
from opencomms.rtp.bank import RtpBank
from opencomms.rtp.sdp import Connection, Direction, SessionDescription
from opencomms.sip.message import SipResponse
from opencomms.testing import caller as caller_module
from opencomms.testing.caller import VirtualCall, VirtualCaller
from tests.integration.conftest import Platform, make_platform, node_config
from tests.integration.gateway import test_sip_outbound as outbound
from tests.integration.gateway.test_sip_hostile import Reply, Request, UdpPeer
from tests.sipp.sipp import free_port

NUMBER = "+14255550123"
SERVICE = NUMBER.lstrip("+")
TICK = 0.02


async def hostile_resolver(name: str, family: int) -> list[str]:
    """The node's media-name resolver in these tests: one black-holed name, one that works, the rest unknown."""
    if name == "blackhole.example":
        await asyncio.sleep(3600)
    if name == "media.example":
        return ["127.0.0.1"]
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


@asynccontextmanager
async def media_platform(pairs: int = 8) -> AsyncIterator[Platform]:
    """A node whose RTP range has `pairs` port pairs (above the ephemeral range), bob owning NUMBER."""
    first = 61000 + 2 * random.randrange(1000)
    sip = SipConfig(port=0, rtp_port_min=first, rtp_port_max=first + 2 * pairs - 1, media_resolve_timeout=0.3)
    async with make_platform(node_config(sip=sip), ("bob",)) as p:
        p.node.directory.create_instance(p["bob"].app_id, "Reception", phone_number=NUMBER)
        assert p.node.sip is not None
        p.node.sip.addresses.resolver = hostile_resolver
        yield p


def sdp(c: bytes = b"IN IP4 127.0.0.1", extra: bytes = b"", formats: bytes = b"0 101") -> bytes:
    return (
        b"v=0\r\no=hostile 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=" + c + b"\r\nt=0 0\r\n"
        b"m=audio 7078 RTP/AVP " + formats + b"\r\na=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\n" + extra
    )


HOSTILE = {
    "unresolvable name": sdp(b"IN IP4 some.name.invalid"),
    "garbage bytes": sdp(b"IN IP4 \xff\xfe\x80.\x01\x02"),
    "black-holed name": sdp(b"IN IP4 blackhole.example"),
    "multicast": sdp(b"IN IP4 224.0.0.251/32"),
    "broadcast": sdp(b"IN IP4 255.255.255.255"),
    "IPv6 on an IPv4 node": sdp(b"IN IP6 ::1"),
    "RTCP port out of range": sdp(extra=b"a=rtcp:99999\r\n"),
}


async def invite(p: Platform, body: bytes, seconds: float = 3.0) -> Reply | None:
    """A raw INVITE from a fresh UDP socket; its final answer (None if none)."""
    assert p.node.sip is not None
    peer = UdpPeer(p.node.sip.port)
    try:
        request = Request(method="INVITE", port=peer.port, body=body)
        return await asyncio.to_thread(peer.final, request, seconds)
    finally:
        peer.close()


async def answered_call(p: Platform, caller: VirtualCaller) -> tuple[VirtualCall, str]:
    bob = p["bob"]
    before = len([n for n in bob.bot.notifications if n.change_type == "created"])
    call = await caller.dial(NUMBER)
    incoming = await bob.bot.incoming(timeout=10, index=before)
    assert await bob.client.answer(incoming.call_id) == 202
    await call.wait_answered()
    return call, incoming.call_id


async def health(p: Platform) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{p.node.public_url}/healthz") as resp:
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body


async def delivered(call: VirtualCall, during: Any) -> float:
    """Share of the RTP packets the node should have sent `call` (one per 20 ms) that arrived while `during`
    (an awaitable) ran, plus half a second."""
    await asyncio.sleep(0.3)  # past the jitter of the answer
    count, started = call.rtp_stats.packets_received, time.monotonic()
    await during
    await asyncio.sleep(0.5)
    got, expected = call.rtp_stats.packets_received - count, (time.monotonic() - started) / TICK
    return got / expected


async def settled(p: Platform, within: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        h = await health(p)
        if (h["sip"]["calls"], h["sip"]["rtp_ports_in_use"], h["calls"]) == (0, 0, 0) or time.monotonic() > deadline:
            return h
        await asyncio.sleep(0.1)


async def test_hostile_offers_fail_alone_while_a_legitimate_call_keeps_all_its_rtp(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    async with media_platform() as p, VirtualCaller(("127.0.0.1", p.node.sip.port)) as caller:  # type: ignore[union-attr]
        call, _ = await answered_call(p, caller)
        replies: dict[str, Reply | None] = {}

        async def attack() -> None:
            names = list(HOSTILE) + ["black-holed name"] * 5  # several stuck lookups at once
            bodies = list(HOSTILE.values()) + [HOSTILE["black-holed name"]] * 5
            answers = await asyncio.gather(*(invite(p, body) for body in bodies))
            replies.update(zip(names, answers, strict=False))
            await asyncio.sleep(1.0)  # and while their transactions linger

        share = await delivered(call, attack())
        assert share >= 0.97, f"the legitimate call got {share:.1%} of its RTP during the attack"
        for what, reply in replies.items():
            assert reply is not None, f"{what}: no final answer"
            assert reply.status == 488 and reply.headers.get("warning", "").startswith("301 "), (what, reply.raw)
        h = await health(p)
        assert h["sip"]["rtp_ports_in_use"] == 1 and h["sip"]["calls"] == 1  # only the legitimate call
        assert h["media"]["command_errors"] == 0 and h["sip"]["rtp_stream_faults"] == 0
        assert h["sip"]["media_addresses"]["timeouts"] >= 1
        assert len([n for n in p["bob"].bot.notifications if n.change_type == "created"]) == 1  # never rang
        await call.hang_up()
        h = await settled(p)
        assert (h["sip"]["calls"], h["sip"]["rtp_ports_in_use"], h["calls"]) == (0, 0, 0)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == [], [r.getMessage() for r in errors]


async def test_a_media_host_name_that_resolves_in_time_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    class NamedSdp(caller_module.LocalSdp):
        """The phone's offers name its media host (media.example, 127.0.0.1 in the node's test resolver)."""

        def offer(self, direction: Direction = Direction.SENDRECV) -> SessionDescription:
            sdp = super().offer(direction)
            return dataclasses.replace(sdp, connection=Connection("media.example"))

    monkeypatch.setattr(caller_module, "LocalSdp", NamedSdp)
    async with media_platform() as p, VirtualCaller(("127.0.0.1", p.node.sip.port)) as caller:  # type: ignore[union-attr]
        call, _ = await answered_call(p, caller)
        assert await delivered(call, asyncio.sleep(1.0)) >= 0.97  # the node sends to the address the name has
        assert p.node.sip is not None and p.node.sip.addresses.lookups == 1
        await call.hang_up()


async def test_a_reinvite_with_a_bad_address_is_refused_and_the_call_keeps_its_media() -> None:
    async with media_platform() as p, VirtualCaller(("127.0.0.1", p.node.sip.port)) as caller:  # type: ignore[union-attr]
        gateway = p.node.sip
        assert gateway is not None
        call, leg_id = await answered_call(p, caller)
        leg = next(c.id for c in p.node.calls.calls.values() if c.is_external)
        before = gateway.media(leg)
        dialog = call._dialog
        assert dialog is not None and before is not None and before.remote_rtp is not None

        async def reinvites() -> list[SipResponse]:
            out = []
            for c in (b"IN IP4 some.name.invalid", b"IN IP4 blackhole.example", b"IN IP4 \xff\xfe"):
                request = dialog.reinvite(sdp(c))
                out.append(await caller.endpoint.request_in_dialog(dialog, request))
            return out

        responses: list[SipResponse] = []

        async def run() -> None:
            responses.extend(await reinvites())

        share = await delivered(call, run())
        assert [r.status for r in responses] == [488, 488, 488]
        assert share >= 0.97 and gateway.media(leg) == before and not call.ended
        await call.hang_up()
        h = await settled(p)
        assert h["sip"]["rtp_ports_in_use"] == 0, leg_id


async def test_a_trunk_answering_with_a_bad_address_gets_ack_and_bye_and_the_bot_a_result() -> None:
    port = free_port()
    async with (
        outbound.trunk_platform(port) as p,
        outbound.trunk("trunk_answer_bad_media.xml", port) as sipp,
    ):
        assert p.node.sip is not None
        p.node.sip.addresses.resolver = hostile_resolver
        call_id = await outbound.call_phone(p)
        info = await outbound.ended(p, call_id)
        assert (info["code"], info["subcode"]) == (488, 9132), info
        result = await outbound.finished(sipp)
        assert result.ok, result.describe()  # the 200 was ACKed, then the dialog ended with BYE
        assert p.node.sip.active == 0 and p.node.sip.ports.in_use == 0 and p.node.calls.active_calls == 0


class FailingRng(random.Random):
    """A stream's RTCP interval draw that raises: its next `send_rtcp` (the BYE at hang-up) fails. Injected through
    state, not by replacing the method, which the compiled media path does not allow."""

    def uniform(self, a: float, b: float) -> float:
        raise TypeError("encoding of hostname failed")


def bye_fails(p: Platform) -> None:
    """A media error at hang-up for every stream now attached (before the fix: the detach failed and the ports
    stayed taken)."""
    assert p.node.sip is not None and isinstance(p.node.sip.bank, RtpBank)
    for stream in list(p.node.sip.bank._by_leg.values()):
        stream._rng = FailingRng()


async def test_calls_faulting_at_hang_up_or_set_up_leave_no_port_behind() -> None:
    async with media_platform(pairs=4) as p, VirtualCaller(("127.0.0.1", p.node.sip.port)) as caller:  # type: ignore[union-attr]
        gateway = p.node.sip
        assert gateway is not None and gateway.ports.capacity == 4
        for i in range(8):  # twice the range: media error at hang-up, from either side
            call, call_id = await answered_call(p, caller)
            bye_fails(p)
            if i % 2:
                await call.hang_up()
            else:
                assert await p["bob"].client.hang_up(call_id) == 204
                await call.wait_ended()
        accept = p.node.calls.accept_inbound

        def broken(**kw: Any) -> None:
            raise RuntimeError("a fault while the call is being set up")

        p.node.calls.accept_inbound = broken  # type: ignore[method-assign]
        for _ in range(6):  # a fault after the ports were taken
            reply = await invite(p, sdp())
            assert reply is not None and reply.status == 500
        p.node.calls.accept_inbound = accept  # type: ignore[method-assign]
        for _ in range(6):  # no common codec: refused after the ports were taken
            reply = await invite(p, sdp(formats=b"18"))
            assert reply is not None and reply.status == 488
        for _ in range(6):  # cancelled while ringing
            ringing = await caller.dial(NUMBER)
            await asyncio.sleep(0.2)
            await ringing.hang_up()
            await ringing.wait_ended()
        h = await settled(p)
        assert (h["sip"]["calls"], h["sip"]["rtp_ports_in_use"], h["sip"]["rtp_streams"]) == (0, 0, 0), h
        call, _ = await answered_call(p, caller)  # a normal call still gets through, with media
        await asyncio.sleep(0.5)
        assert call.rtp_stats.packets_received > 10
        await call.hang_up()
        h = await settled(p)
        assert (h["sip"]["rtp_ports_in_use"], gateway.bank.streams) == (0, 0)
        assert gateway.ports.capacity - gateway.ports.in_use == 4
