"""Issue 14 items 4 (SIP), 5 and 9 (SIP) replayed against a running node on loopback.

Floods: one address (127.0.0.2) sends INVITEs at 1,000/s while another (127.0.0.3, SIPp) places calls at 2/s to a
bot that answers; every legitimate call succeeds, whether the flood goes to the answering bot or to one that never
answers (its ringing calls count against the flooder). SIP over TCP: idle connections held from several addresses
do not lock a new client out (the largest holder's idle connection is closed for it), and a silent connection is
closed after the idle timeout. Non-UTF-8 header bytes get 400 with nothing logged as an error. With port 0, UDP
and TCP share the port /healthz reports.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import aiohttp
import pytest

from opencomms.config import CallsConfig, SipConfig
from tests.integration.conftest import BotHandle, Platform, make_platform, node_config
from tests.sipp import sipp as harness
from tests.sipp.sipp import LOOPBACK, SippResult, run_sipp

SILENT = "+14255550100"
"""bob's number: bob never answers."""
ANSWERING = "+14255550111"
"""alice's number: alice answers every call."""
FLOOD_SOURCE = "127.0.0.2"
LEGIT_SOURCE = "127.0.0.3"
SDP = (
    b"v=0\r\no=flood 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
    b"m=audio 7078 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


@pytest.fixture(autouse=True)
def _sipp_workdirs_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "WORKDIR_BASE", tmp_path)


async def _auto_answer(bot: BotHandle) -> None:
    """Answer every incoming call `bot` is offered (as a bot that answers does)."""
    index = 0
    tasks: set[asyncio.Task[int]] = set()
    while True:
        try:
            note = await bot.bot.incoming(timeout=3600, index=index)
        except TimeoutError:
            continue
        index += 1
        task = asyncio.create_task(bot.client.answer(note.call_id))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


@asynccontextmanager
async def flood_platform(sip: SipConfig, store_url: str = "memory://") -> AsyncIterator[Platform]:
    """A node where bob (SILENT) never answers and alice (ANSWERING) answers everything."""
    config = node_config(sip=sip, calls=CallsConfig(answer_timeout=30.0), store_url=store_url)
    async with make_platform(config, ("alice", "bob")) as p:
        p.node.directory.create_instance(p["bob"].app_id, "Silent", phone_number=SILENT)
        p.node.directory.create_instance(p["alice"].app_id, "Reception", phone_number=ANSWERING)
        answering = asyncio.create_task(_auto_answer(p["alice"]))
        try:
            yield p
        finally:
            answering.cancel()
            with suppress(asyncio.CancelledError):
                await answering


def invite(number: str, port: int, n: int) -> bytes:
    tag = os.urandom(6).hex()
    lines = [
        f"INVITE sip:{number.lstrip('+')}@127.0.0.1 SIP/2.0",
        f"Via: SIP/2.0/UDP {FLOOD_SOURCE}:{port};branch=z9hG4bK{tag}{n};rport",
        "Max-Forwards: 70",
        f"From: <sip:flood@{FLOOD_SOURCE}:{port}>;tag={tag}",
        f"To: <sip:{number.lstrip('+')}@127.0.0.1>",
        f"Call-ID: flood-{tag}-{n}",
        "CSeq: 1 INVITE",
        f"Contact: <sip:flood@{FLOOD_SOURCE}:{port}>",
        "Content-Type: application/sdp",
        f"Content-Length: {len(SDP)}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + SDP


class Flooder(threading.Thread):
    """Sends new INVITEs to `number` from FLOOD_SOURCE at `rate` per second and never answers what comes back."""

    def __init__(self, port: int, number: str, rate: float = 1000.0) -> None:
        super().__init__(daemon=True)
        self.target = (LOOPBACK, port)
        self.number = number
        self.rate = rate
        self.sent = 0
        self.halt = threading.Event()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((FLOOD_SOURCE, 0))
        self.port = int(self.sock.getsockname()[1])

    def run(self) -> None:
        start = time.monotonic()
        while not self.halt.is_set():
            due = int((time.monotonic() - start) * self.rate)
            while self.sent < due:
                self.sock.sendto(invite(self.number, self.port, self.sent), self.target)
                self.sent += 1
            time.sleep(0.002)

    def stop(self) -> None:
        self.halt.set()
        self.join(5)
        self.sock.close()


def legit_calls(
    port: int, calls: int, rate: float = 2.0, transport: str = "u1", source: str = LEGIT_SOURCE
) -> SippResult:
    return run_sipp(
        "uac_basic.xml",
        LOOPBACK,
        port,
        calls=calls,
        rate=rate,
        service=ANSWERING.lstrip("+"),
        call_duration_ms=200,
        recv_timeout_ms=10_000,
        transport=transport,
        timeout=calls / rate + 30,
        extra_args=["-i", source],
    )


FLOOD_SIP = SipConfig(port=0, max_calls=60)
"""Small enough that an unfair node would fill up within the test: the flooder may hold 30 calls, 15 ringing."""


@pytest.mark.parametrize("target", [ANSWERING, SILENT], ids=["to-answering-bot", "to-silent-bot"])
async def test_legitimate_calls_go_through_a_1000_per_second_invite_flood(target: str) -> None:
    async with flood_platform(FLOOD_SIP) as p:
        gateway = p.node.sip
        assert gateway is not None
        flooder = Flooder(gateway.port, target)
        flooder.start()
        try:
            await asyncio.sleep(0.5)  # the flood has taken what it can
            result = await asyncio.to_thread(legit_calls, gateway.port, 10)
        finally:
            flooder.stop()
        assert result.successful == 10 and result.failed == 0, result.describe()
        ringing, answered = gateway.admission.held(FLOOD_SOURCE)
        assert ringing <= FLOOD_SIP.max_calls * FLOOD_SIP.call_ringing_share
        assert ringing + answered <= FLOOD_SIP.max_calls * FLOOD_SIP.call_source_share
        stats = gateway.admission.stats
        assert flooder.sent > 2000 and stats["refused_share"] > flooder.sent * 0.9, (flooder.sent, stats)
        assert gateway.endpoint.stats["refused_early"] > flooder.sent * 0.8  # refused before a full parse
        assert gateway.endpoint.stats["handler_errors"] == 0


# --- SIP over TCP --------------------------------------------------------------------------------------------------


def options(source: str, port: int, n: int) -> bytes:
    lines = [
        "OPTIONS sip:127.0.0.1 SIP/2.0",
        f"Via: SIP/2.0/TCP {source}:{port};branch=z9hG4bK{os.urandom(6).hex()}",
        "Max-Forwards: 70",
        f"From: <sip:idle@{source}>;tag={n}",
        "To: <sip:127.0.0.1>",
        f"Call-ID: idle-{os.urandom(6).hex()}",
        "CSeq: 1 OPTIONS",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def idle_connection(source: str, port: int, n: int) -> socket.socket:
    """A TCP connection from `source` that sent one OPTIONS, read its 200, and then says nothing."""
    sock = socket.create_connection((LOOPBACK, port), timeout=5, source_address=(source, 0))
    sock.sendall(options(source, sock.getsockname()[1], n))
    assert sock.recv(4096).startswith(b"SIP/2.0 200")
    return sock


def closed_by_peer(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(4096) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


async def test_idle_tcp_connections_from_a_few_sources_do_not_lock_out_a_new_client() -> None:
    sip = SipConfig(port=0, tcp_max_connections=24, tcp_idle_timeout=60.0)
    async with flood_platform(sip) as p:
        gateway = p.node.sip
        assert gateway is not None and gateway.endpoint.tcp is not None
        holders = ["127.0.0.4", "127.0.0.5", "127.0.0.6"]
        held = await asyncio.to_thread(lambda: [idle_connection(h, gateway.port, n) for n in range(8) for h in holders])
        try:
            assert gateway.endpoint.tcp.connection_count == 24
            result = await asyncio.to_thread(legit_calls, gateway.port, 2, 2.0, "t1", "127.0.0.7")
            assert result.successful == 2 and result.failed == 0, result.describe()
            assert gateway.endpoint.tcp.evicted >= 1
            closed = await asyncio.to_thread(lambda: sum(closed_by_peer(s, 0.05) for s in held))
            assert 1 <= closed <= 2  # only what the new client needed, from the largest holders
        finally:
            for sock in held:
                sock.close()


async def test_a_silent_tcp_connection_is_closed_after_the_idle_timeout() -> None:
    sip = SipConfig(port=0, tcp_idle_timeout=0.5)
    async with flood_platform(sip) as p:
        gateway = p.node.sip
        assert gateway is not None and gateway.endpoint.tcp is not None
        sock = await asyncio.to_thread(idle_connection, "127.0.0.4", gateway.port, 1)
        chatty = await asyncio.to_thread(idle_connection, "127.0.0.5", gateway.port, 2)
        try:
            for _ in range(4):  # the second one keeps talking (RFC 5626 keep-alive pings): it stays
                await asyncio.sleep(0.25)
                await asyncio.to_thread(chatty.sendall, b"\r\n\r\n")
            assert await asyncio.to_thread(closed_by_peer, sock, 1.0)
            assert not await asyncio.to_thread(closed_by_peer, chatty, 0.1)
            assert gateway.endpoint.tcp.idle_closed >= 1
        finally:
            sock.close()
            chatty.close()


# --- undecodable bytes, port 0 -------------------------------------------------------------------------------------

NON_UTF8 = [
    ("display name", b'From: "\xff\xfe caller" <sip:x@127.0.0.9>;tag=1', b"From"),
    ("unknown header", b"X-Junk: \xc3\x28", None),
    ("Subject", b"Subject: caf\xe9", None),
    ("Contact user", b"Contact: <sip:\x80\x81@127.0.0.9>", b"Contact"),
    ("To display name", b'To: "\xfe" <sip:' + ANSWERING[1:].encode() + b"@127.0.0.1>", b"To"),
]


def raw_invite(port: int, line: bytes, replace: bytes | None, transport: bytes = b"UDP") -> bytes:
    tag = os.urandom(4).hex().encode()
    fields = {
        b"Via": b"SIP/2.0/" + transport + b" 127.0.0.9:%d;branch=z9hG4bK" % port + tag + b";rport",
        b"Max-Forwards": b"70",
        b"From": b"<sip:x@127.0.0.9>;tag=" + tag,
        b"To": b"<sip:" + ANSWERING[1:].encode() + b"@127.0.0.1>",
        b"Call-ID": b"utf8-" + tag,
        b"CSeq": b"1 INVITE",
        b"Contact": b"<sip:x@127.0.0.9:%d>" % port,
    }
    lines = [b"INVITE sip:" + ANSWERING[1:].encode() + b"@127.0.0.1 SIP/2.0"]
    lines += [name + b": " + value for name, value in fields.items() if name != replace]
    lines += [line, b"Content-Type: application/sdp", b"Content-Length: %d" % len(SDP)]
    return b"\r\n".join(lines) + b"\r\n\r\n" + SDP


async def test_non_utf8_header_bytes_get_400_and_nothing_is_logged_as_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with flood_platform(SipConfig(port=0), store_url=f"sqlite:///{tmp_path / 'node.db'}") as p:
        gateway = p.node.sip
        assert gateway is not None
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.9", 0))
        udp.settimeout(3)
        port = udp.getsockname()[1]
        try:
            for what, line, replace in NON_UTF8:
                udp.sendto(raw_invite(port, line, replace), (LOOPBACK, gateway.port))
                reply = await asyncio.to_thread(udp.recv, 70_000)
                assert reply.startswith(b"SIP/2.0 400 "), (what, reply[:60])
            tcp = await asyncio.to_thread(socket.create_connection, (LOOPBACK, gateway.port), 3, ("127.0.0.9", 0))
            with tcp:
                tcp.sendall(raw_invite(tcp.getsockname()[1], NON_UTF8[0][1], b"From", b"TCP"))
                reply = await asyncio.to_thread(tcp.recv, 70_000)
                assert reply.startswith(b"SIP/2.0 400 "), reply[:60]
        finally:
            udp.close()
        assert gateway.active == 0 and p.node.calls.active_calls == 0
        assert gateway.endpoint.stats["handler_errors"] == 0
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert bad == [], [r.getMessage() for r in bad]


async def test_port_0_binds_udp_and_tcp_to_the_port_healthz_reports() -> None:
    async with flood_platform(SipConfig(port=0)) as p:
        gateway = p.node.sip
        assert gateway is not None
        async with aiohttp.ClientSession() as http, http.get(f"{p.node.public_url}/healthz") as resp:
            reported = (await resp.json())["sip"]["port"]
        assert gateway.endpoint.local_port("udp") == gateway.endpoint.local_port("tcp") == reported
        # and it answers on both
        result = await asyncio.to_thread(legit_calls, reported, 1, 2.0, "t1", LEGIT_SOURCE)
        assert result.successful == 1, result.describe()


def test_same_port_binding_retries_when_tcp_finds_the_port_taken() -> None:
    from opencomms.sip.transport import TcpTransport, UdpTransport, listen_same_port

    async def run() -> None:
        taken: list[socket.socket] = []
        original: Callable[..., object] = UdpTransport.listen
        calls = 0

        async def listen_then_block_tcp(self: UdpTransport, host: str, port: int) -> tuple[str, int]:
            nonlocal calls
            addr = await original(self, host, port)  # type: ignore[misc]
            calls += 1
            if calls == 1:  # someone holds this number on TCP already
                blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                blocker.bind((host, addr[1]))
                blocker.listen()
                taken.append(blocker)
            return addr  # type: ignore[no-any-return]

        udp = UdpTransport(lambda data, src: None)
        tcp = TcpTransport(lambda data, src: None, lambda err, src: None, lambda dest: None)
        UdpTransport.listen = listen_then_block_tcp  # type: ignore[method-assign]
        try:
            port = await listen_same_port(udp, tcp, LOOPBACK)
        finally:
            UdpTransport.listen = original  # type: ignore[method-assign]
            for s in taken:
                s.close()
        assert calls == 2
        assert udp.local_addr[1] == tcp.local_addr[1] == port
        udp.close()
        await tcp.close()

    asyncio.run(run())


async def test_a_silent_connection_with_a_live_dialog_is_kept() -> None:
    from opencomms.sip.transport import TcpTransport

    kept: set[tuple[str, int]] = set()
    tcp = TcpTransport(lambda d, s: None, lambda e, s: None, lambda d: None, idle_timeout=0.3, in_use=kept.__contains__)
    await tcp.listen(LOOPBACK, 0)
    try:
        port = tcp.local_addr[1]

        def connect(source: str) -> socket.socket:
            sock = socket.create_connection((LOOPBACK, port), timeout=3, source_address=(source, 0))
            sock.sendall(options(source, sock.getsockname()[1], 1))
            return sock

        with_dialog = await asyncio.to_thread(connect, "127.0.0.4")
        without = await asyncio.to_thread(connect, "127.0.0.5")
        kept.add(with_dialog.getsockname())
        assert await asyncio.to_thread(closed_by_peer, without, 1.5)
        assert not await asyncio.to_thread(closed_by_peer, with_dialog, 0.2)
        kept.clear()  # the dialog ended: the connection goes at its next check
        assert await asyncio.to_thread(closed_by_peer, with_dialog, 1.0)
        with_dialog.close()
        without.close()
    finally:
        await tcp.close()
