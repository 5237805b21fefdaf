"""The socket layer's RTP lanes (sockio.pyx compiled, and sockio.py, the reference, run from source): an armed slot
consumes the next packets of its source in sequence straight into `put` and counts them; anything else disarms it
and is handed out as before, in order; counts come back once (`lane`, `disarm`, `due`) and are visible meanwhile
(`peek`); a `put` that raises is reported, a quiet slot is woken by its next packet."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from opencomms import _compiled
from opencomms._compiled import ENV_SWITCH, compiled_modules, reference
from opencomms.rtp import sockio
from opencomms.rtp.packet import pack_header

REFERENCE = reference("opencomms.rtp.sockio")
IMPLEMENTATIONS = {"module": sockio.DatagramIO, "reference": REFERENCE.DatagramIO}


def test_the_compiled_pass_tests_the_twin() -> None:
    if os.environ.get(ENV_SWITCH, "1") != "0":
        assert "opencomms.rtp.sockio" in compiled_modules(), _compiled.state()
        assert sockio.DatagramIO is not REFERENCE.DatagramIO


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def io_class(request: pytest.FixtureRequest) -> Any:
    return IMPLEMENTATIONS[request.param]


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket, socket.socket]]:
    """(the bank's socket, its peer, another peer)."""
    made = []
    for _ in range(3):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        made.append(s)
    yield made[0], made[1], made[2]
    for s in made:
        s.close()


def rtp(seq: int, ts: int, *, pt: int = 0, ssrc: int = 0x1234, payload: bytes = b"\xff" * 160) -> bytes:
    return pack_header(pt, False, seq, ts, ssrc) + payload


def settle(io: Any, expected: int, now: float = 5.0) -> tuple[int, list[Any]]:
    """Receive until `expected` datagrams were read (consumed + left); returns (consumed, the ones handed out)."""
    consumed, out = 0, []
    deadline = time.monotonic() + 2.0
    while consumed + len(out) < expected and time.monotonic() < deadline:
        left = io.receive(8, now, 0.0)
        consumed += io.consumed
        out += [io.take(i) for i in range(left)]
        if consumed + len(out) < expected:
            time.sleep(0.002)
    return consumed, out


class Sink:
    def __init__(self) -> None:
        self.got: list[tuple[int, int, bytes, float]] = []

    def put(self, ssrc: int, ts: int, payload: bytes, arrival: float) -> None:
        self.got.append((ssrc, ts, payload, arrival))


def armed(io_class: Any, sock: socket.socket, peer: socket.socket) -> tuple[Any, Sink]:
    """A slot 2 lane armed on `peer` as source after seq 10 (packet 10 handed out first, as the bank's stream
    would have read it)."""
    io = io_class(8, False)
    io.register(2, sock)
    peer.sendto(rtp(10, 1600), sock.getsockname())
    _, out = settle(io, 1)
    source = out[0][2]
    sink = Sink()
    assert io.arm(2, sink.put, source, 0x1234, 0, 10, False)
    return io, sink


def test_in_sequence_packets_of_the_source_go_to_put_and_are_counted(io_class: Any, pair: Any) -> None:
    sock, peer, _ = pair
    io, sink = armed(io_class, sock, peer)
    for k in range(11, 15):
        peer.sendto(rtp(k, 160 * k, payload=bytes([k]) * 160), sock.getsockname())
    consumed, out = settle(io, 4, now=7.5)
    assert consumed == 4 and out == []
    assert sink.got == [(0x1234, 160 * k, bytes([k]) * 160, 7.5) for k in range(11, 15)]
    assert io.peek(2) == (4, 640, 7.5)
    assert io.lane(2) == (4, 640, 14, 160 * 14, 7.5)
    assert io.lane(2) is None and io.peek(2) == (0, 0, float("-inf"))  # handed back once
    assert io.peek(-1) == io.peek(99) == (0, 0, float("-inf"))  # read elsewhere while a stream is detached
    peer.sendto(rtp(15, 160 * 15), sock.getsockname())  # still armed
    assert settle(io, 1)[0] == 1
    io.close()


@pytest.mark.parametrize(
    "odd",
    [
        rtp(13, 160 * 13),  # a gap: a packet was lost or is late
        rtp(11, 160 * 11, pt=8),  # another payload type (PCMA, or an RFC 4733 event)
        rtp(11, 160 * 11, ssrc=0x9999),  # another source
        b"\x80\x00\x00",  # too short
        b"\x90" + rtp(11, 160 * 11)[1:],  # an extension header
    ],
)
def test_anything_else_disarms_the_lane_and_is_handed_out_with_what_follows(
    io_class: Any, pair: Any, odd: bytes
) -> None:
    sock, peer, _ = pair
    io, sink = armed(io_class, sock, peer)
    peer.sendto(rtp(11, 160 * 11), sock.getsockname())
    assert settle(io, 1)[0] == 1
    peer.sendto(odd, sock.getsockname())
    peer.sendto(rtp(12, 160 * 12), sock.getsockname())  # would have matched: the lane is off now
    consumed, out = settle(io, 2)
    assert consumed == 0 and [data for _, data, _, _ in out] == [odd, rtp(12, 160 * 12)]
    assert len(sink.got) == 1
    assert io.lane(2) == (1, 160, 11, 160 * 11, 5.0)  # what it consumed is kept for the stream
    assert io.lane(2) is None
    io.close()


def test_a_packet_from_another_address_is_handed_out(io_class: Any, pair: Any) -> None:
    sock, peer, other = pair
    io, sink = armed(io_class, sock, peer)
    other.sendto(rtp(11, 160 * 11), sock.getsockname())
    consumed, out = settle(io, 1)
    assert consumed == 0 and out[0][2] == other.getsockname() and sink.got == []
    assert io.disarm(2) is None
    io.close()


def test_arming_needs_the_source_last_handed_out(io_class: Any, pair: Any) -> None:
    sock, peer, other = pair
    io = io_class(8, False)
    io.register(2, sock)
    sink = Sink()
    assert not io.arm(2, sink.put, peer.getsockname(), 1, 0, 0, False)  # nothing read yet
    peer.sendto(rtp(1, 160), sock.getsockname())
    settle(io, 1)
    assert not io.arm(2, sink.put, other.getsockname(), 0x1234, 0, 1, False)
    assert io.arm(2, sink.put, peer.getsockname(), 0x1234, 0, 1, False)  # an equal tuple will do
    io.unregister(2)  # the lane goes with the socket
    io.register(2, sock)
    peer.sendto(rtp(2, 320), sock.getsockname())
    assert settle(io, 1)[0] == 0
    io.close()


def test_a_put_that_raises_is_reported_and_disarms(io_class: Any, pair: Any) -> None:
    sock, peer, _ = pair
    io = io_class(8, False)
    io.register(2, sock)
    peer.sendto(rtp(10, 1600), sock.getsockname())
    source = settle(io, 1)[1][0][2]

    def broken(ssrc: int, ts: int, payload: bytes, arrival: float) -> None:
        raise TypeError("a bug")

    assert io.arm(2, broken, source, 0x1234, 0, 10, False)
    peer.sendto(rtp(11, 1760), sock.getsockname())
    peer.sendto(rtp(12, 1920), sock.getsockname())
    deadline = time.monotonic() + 2.0
    errors: list[Any] = []
    handed: list[Any] = []
    while len(handed) + len(errors) < 2 and time.monotonic() < deadline:
        left = io.receive(8, 5.0, 0.0)
        errors += list(io.errors())
        handed += [io.take(i) for i in range(left)]
        time.sleep(0.002)
    assert [(slot, type(exc)) for slot, exc in errors] == [(2, TypeError)]
    assert [data for _, data, _, _ in handed] == [rtp(12, 1920)] and io.lane(2) is None
    io.close()


def test_a_quiet_slot_is_woken_by_its_next_packet_and_counts_come_back_a_part_at_a_time(
    io_class: Any, pair: Any
) -> None:
    sock, peer, _ = pair
    io, _sink = armed(io_class, sock, peer)
    io.quiet(2)
    peer.sendto(rtp(11, 1760), sock.getsockname())
    deadline = time.monotonic() + 2.0
    woken: list[int] = []
    while not woken and time.monotonic() < deadline:
        io.receive(8, 5.0, 0.0)
        woken = list(io.woken())
        time.sleep(0.002)
    assert woken == [2]
    peer.sendto(rtp(12, 1920), sock.getsockname())
    settle(io, 1)
    assert io.woken() == []  # once
    assert io.due(0, 2) == []  # slot 2 is row 1: part 1 of 2
    assert io.due(1, 2) == [(2, (2, 320, 12, 1920, 5.0))]
    assert io.due(1, 2) == []
    io.close()
