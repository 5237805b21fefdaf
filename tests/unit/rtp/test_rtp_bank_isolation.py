"""One stream's error stays with that stream: a destination no socket takes, a datagram our code cannot handle,
a failing jitter buffer or RTCP send, an RTCP BYE that fails at detach. The other streams of the batch keep
sending and receiving every tick; the bad one is dropped, counted and reported once; its row and sockets are
freed when detached. Driven by hand-ticked engines and real loopback sockets, like test_rtp_bank.py."""

from __future__ import annotations

import random
import socket
from collections.abc import Callable
from typing import Any

import pytest

from opencomms.media.engine import MediaEngine
from opencomms.rtp.bank import RtpBank
from opencomms.rtp.jitter import JitterBuffer
from opencomms.rtp.packet import pack_header
from opencomms.rtp.stream import Stream, StreamParams
from tests.unit.rtp.test_rtp_bank import ManualHost, received

LEGS = ("good1", "bad", "good2")


# Faults are injected through state, or by swapping an object a stream holds (the media path may be compiled, whose
# methods cannot be replaced).


class FailingRng(random.Random):
    """An RTCP interval draw that raises: `Stream.send_rtcp` fails on its first line."""

    def __init__(self, exc: Exception) -> None:
        super().__init__(0)
        self.exc = exc

    def uniform(self, a: float, b: float) -> float:
        raise self.exc


def break_rtcp(stream: Stream, exc: Exception) -> None:
    stream._rng = FailingRng(exc)


class CorruptBuffer:
    """A jitter buffer whose state got corrupt (as a bug would leave it): its `put` and `pop` raise TypeError.
    (A wrapper: the compiled jitter buffer's state is C fields, out of a test's reach.)"""

    def __init__(self, jb: JitterBuffer) -> None:
        self._jb = jb

    def put(self, *args: object) -> None:
        raise TypeError("corrupt jitter buffer state")

    pop = pop_into = put

    def __getattr__(self, name: str) -> Any:
        return getattr(self._jb, name)


def break_buffer(stream: Stream) -> None:
    stream.jb = CorruptBuffer(stream.jb)  # type: ignore[assignment]


def three_calls(
    udp: Callable[[], socket.socket], *, paced: bool
) -> tuple[ManualHost, RtpBank, dict[str, Stream], dict[str, socket.socket], list[str]]:
    engine = MediaEngine(8)
    host = ManualHost(engine)
    bank = RtpBank(host, capacity=4, kernel_timestamps=False, paced=paced)
    streams, peers, faults = {}, {}, []
    for leg in LEGS:
        engine.add_leg(leg)
        peer = peers[leg] = udp()
        st = streams[leg] = Stream(leg, udp(), udp())
        st.apply(StreamParams(remote_rtp=peer.getsockname(), remote_rtcp=udp().getsockname()))
        st.on_fault = faults.append
        bank.attach(st)
    return host, bank, streams, peers, faults


@pytest.mark.parametrize("paced", [True, False])
@pytest.mark.parametrize("bad_address", [("bad\ufffd.example", 4000), ("na\x00me", 4000), ("127.0.0.1", 70000)])
def test_a_destination_no_socket_takes_silences_only_its_own_stream(
    udp: Callable[[], socket.socket], paced: bool, bad_address: tuple[str, int]
) -> None:
    host, bank, streams, peers, faults = three_calls(udp, paced=paced)
    streams["bad"].rtp_addr = bad_address  # as an unchecked c= line (or a later bug) would have set it
    streams["bad"].rtcp_addr = bad_address
    streams["bad"].rtcp_next = 0.0  # its RTCP is due at once too
    for k in range(50):
        host.tick(0.02 * k)  # raises if anything escapes to the host (ManualHost re-raises command errors)
    sent = 49 if paced else 50  # paced: the last tick's batch leaves at the start of the next
    assert len(received(peers["good1"])) == sent and len(received(peers["good2"])) == sent
    assert faults == ["send"] and streams["bad"].fault == "send"
    assert bank.stats()["stream_faults"] == 1 and bank.faults.logged == 1
    done = bank.detach(streams["bad"])  # its RTCP BYE is not attempted; the row is freed
    host.tick(1.0)
    assert done.result() is None and bank.streams == 2 and streams["bad"].fds == ()
    streams["bad"].rtp_sock.close()


@pytest.mark.parametrize("paced", [True, False])
def test_a_datagram_the_receive_path_cannot_handle_drops_only_that_stream(
    udp: Callable[[], socket.socket], paced: bool
) -> None:
    host, _bank, streams, peers, faults = three_calls(udp, paced=paced)

    break_buffer(streams["bad"])  # a bug a crafted packet found
    packet = pack_header(0, False, 1, 160, 0x1234) + bytes(160)
    for k in range(20):
        for leg in LEGS:
            peers[leg].sendto(packet[:2] + (k + 1).to_bytes(2, "big") + packet[4:], streams[leg].rtp_sock.getsockname())
        host.tick(0.02 * k)
    assert streams["good1"].packets_received == 20 and streams["good2"].packets_received == 20
    assert faults == ["receive"] and streams["bad"].invalid_packets == 1
    assert all(st.fds for leg, st in streams.items() if leg != "bad") and streams["bad"].fds == ()
    # dropped from sending too: unpaced, its first tick's packet left before the receive step that failed; paced,
    # that packet was still waiting for the next tick's start, and a stream that failed meanwhile sends nothing
    assert len(received(peers["bad"])) == (0 if paced else 1)
    assert len(received(peers["good1"])) == (19 if paced else 20)


def test_playout_and_rtcp_errors_are_per_stream(udp: Callable[[], socket.socket]) -> None:
    host, bank, streams, peers, faults = three_calls(udp, paced=False)

    host.tick(0.0)  # attached (RTCP scheduled)
    # a buffer is popped only once its stream hears packets: one packet puts the bad stream's buffer to work
    peers["bad"].sendto(pack_header(0, False, 1, 160, 0x1234) + bytes(160), streams["bad"].rtp_sock.getsockname())
    host.tick(0.02)
    break_buffer(streams["bad"])
    streams["good1"].rtcp_next = 0.0
    break_rtcp(streams["good2"], OverflowError("port"))
    streams["good2"].rtcp_next = 0.0
    for k in range(2, 11):
        host.tick(0.02 * k)
    assert sorted(faults) == ["play", "rtcp"] and streams["good1"].fault is None
    bank.fold_counters()  # the send lane's counters reach the stream within 12 ticks, or now
    assert len(received(peers["good1"])) == 11 and streams["good1"].packets_sent == 11
    assert bank.stats()["stream_fault_kinds"] == {"play:TypeError": 1, "rtcp:OverflowError": 1}


def test_a_failing_bye_at_detach_still_frees_the_row(udp: Callable[[], socket.socket]) -> None:
    host, bank, streams, _peers, _faults = three_calls(udp, paced=False)
    host.tick(0.0)
    break_rtcp(streams["bad"], TypeError("bad host"))
    done = bank.detach(streams["bad"])
    host.tick(0.02)
    assert done.result() is None and bank.streams == 2 and streams["bad"].row == -1
    assert bank.stats()["stream_fault_kinds"] == {"detach:TypeError": 1}
    again = Stream("bad", streams["bad"].rtp_sock, streams["bad"].rtcp_sock)
    assert bank.attach(again) is not None  # the leg can take a stream again
    host.tick(0.04)
    assert bank.streams == 3


def test_an_unresolved_name_never_becomes_a_send_target() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        st = Stream("x", sock)
        st.apply(StreamParams(remote_rtp=("media.example.com", 4000), remote_rtcp=("192.0.2.1", 4001)))
        assert st.rtp_addr is None and st.rtcp_addr == ("192.0.2.1", 4001) and st.bad_destinations == 1
    finally:
        sock.close()


def test_a_stream_whose_sockets_closed_before_it_attached_takes_no_row(udp: Callable[[], socket.socket]) -> None:
    host, bank, _streams, _peers, _faults = three_calls(udp, paced=False)
    host.tick(0.0)
    host.engine.add_leg("late")
    late = Stream("late", udp(), udp())
    late.rtp_sock.close()  # its call ended (and released the ports) while the attach command was queued
    attached = bank.attach(late)
    host.tick(0.02)
    with pytest.raises(ValueError, match="closed"):
        attached.result()
    assert bank.streams == 3 and late.row == -1
