"""DatagramIO (compiled with Cython, or the reference on the pure pass) on loopback sockets: a batch leaves in order
from the right sockets, failures come back by index without stopping the batch, every ready socket is read with its
slot, source and kernel time, and an unchanged source is the same tuple object."""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Iterator

import numpy as np
import pytest

from opencomms.rtp.sockio import MAX_DATAGRAM, DatagramIO


@pytest.fixture
def socks() -> Iterator[list[socket.socket]]:
    made: list[socket.socket] = []
    for _ in range(4):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        made.append(s)
    yield made
    for s in made:
        s.close()


def drain(sock: socket.socket) -> list[tuple[bytes, tuple[str, int]]]:
    got = []
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        try:
            got.append(sock.recvfrom(4096))
        except BlockingIOError:
            if got:
                break
            time.sleep(0.005)
    return got


def test_a_batch_leaves_in_order_from_each_slot_socket(socks: list[socket.socket]) -> None:
    a, b, sink, _ = socks
    io = DatagramIO(8, False)
    io.register(2, a)
    io.register(5, b)
    buf = bytearray(b"0123456789abcdefghij")
    peer = sink.getsockname()
    lateness = np.zeros(101, dtype=np.int64)
    failed = io.send(buf, [2, 5, 2], [0, 10, 4], [4, 10, 2], [peer, peer, peer], lateness, time.monotonic())
    assert failed is None and int(lateness.sum()) == 3 and lateness[:5].sum() == 3
    got = drain(sink)
    assert [(data, src[1]) for data, src in got] == [
        (b"0123", a.getsockname()[1]),
        (b"abcdefghij", b.getsockname()[1]),
        (b"45", a.getsockname()[1]),
    ]
    io.close()


def test_failures_come_back_by_index_and_the_rest_still_leave(socks: list[socket.socket]) -> None:
    a, _, sink, _ = socks
    io = DatagramIO(4, False)
    io.register(0, a)
    peer = sink.getsockname()
    buf = bytearray(b"xy")
    bad_host = ("example.invalid", 5000)  # not a literal: no name lookup on the media thread
    failed = io.send(buf, [0, 1, 0, 0], [0, 0, 0, 1], [1, 1, 1, 1], [bad_host, peer, peer, peer], None, 0.0)
    assert failed == {0: -1, 1: errno.EBADF}  # slot 1 has no socket
    assert [data for data, _ in drain(sink)] == [b"x", b"y"]
    with pytest.raises(ValueError):
        io.send(buf, [0], [1], [5], [peer], None, 0.0)  # outside the buffer: a bug of the caller, not a packet loss
    io.unregister(0)
    assert io.send(buf, [0], [0], [1], [peer], None, 0.0) == {0: errno.EBADF}
    io.close()


def test_every_ready_socket_is_read_with_its_slot_source_and_kernel_time(socks: list[socket.socket]) -> None:
    a, b, c, talker = socks
    io = DatagramIO(8, True)
    for slot, s in ((1, a), (6, b), (7, c)):
        io.register(slot, s)
    before = time.time()
    for target, n in ((a, 2), (b, 1)):
        for k in range(n):
            talker.sendto(bytes([k]) * 20, target.getsockname())
    time.sleep(0.05)
    assert io.receive(8) == 3  # a's second datagram in the second round
    got = [io.take(i) for i in range(3)]
    assert sorted((slot, data) for slot, data, _, _ in got) == [(1, bytes(20)), (1, bytes([1]) * 20), (6, bytes(20))]
    assert {src for _, _, src, _ in got} == {talker.getsockname()}
    assert all(before - 1.0 < stamp <= time.time() for _, _, _, stamp in got)
    first, second = (item for item in got if item[0] == 1)
    assert first[2] is second[2]  # the same source: the same tuple, compared by identity in the stream
    assert io.receive(8) == 0
    with pytest.raises(IndexError):
        io.take(0)
    io.close()


def test_without_timestamps_the_arrival_is_left_to_the_caller_and_long_datagrams_are_cut(
    socks: list[socket.socket],
) -> None:
    a, _, _, talker = socks
    io = DatagramIO(2, False)
    io.register(0, a)
    talker.sendto(bytes(MAX_DATAGRAM + 100), a.getsockname())
    time.sleep(0.05)
    assert io.receive(4) == 1
    slot, data, src, stamp = io.take(0)
    assert slot == 0 and data is not None and len(data) == MAX_DATAGRAM and stamp == -1.0
    assert src == talker.getsockname()
    io.unregister(0)
    talker.sendto(b"more", a.getsockname())
    time.sleep(0.05)
    assert io.receive(4) == 0  # no longer polled
    io.close()


def test_an_ipv6_socket_sends_and_reads_four_tuple_addresses() -> None:
    a = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    a.bind(("::1", 0))
    b = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    b.bind(("::1", 0))
    b.setblocking(False)
    io = DatagramIO(2, False)
    io.register(0, a)
    io.register(1, b)
    assert io.send(bytearray(b"hello"), [0], [0], [5], [b.getsockname()], None, 0.0) is None
    time.sleep(0.05)
    assert io.receive(2) == 1
    slot, data, src, _ = io.take(0)
    assert (slot, data) == (1, b"hello") and src[:2] == a.getsockname()[:2] and len(src) == 4
    io.close()
    a.close()
    b.close()


def test_a_receive_larger_than_the_first_buffer_keeps_every_datagram() -> None:
    socks = []
    for _ in range(40):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    talker = socks.pop()
    io = DatagramIO(64, False)
    for slot, s in enumerate(socks):
        io.register(slot, s)
    for k in range(5):
        for s in socks:
            talker.sendto(bytes([k]) * 12, s.getsockname())
    time.sleep(0.1)
    count = io.receive(5)  # 39 sockets x 5 rounds: past the 128 datagrams the compiled buffer starts with
    got = sorted((slot, data) for slot, data, _, _ in (io.take(i) for i in range(count)))
    assert got == sorted((slot, bytes([k]) * 12) for slot in range(len(socks)) for k in range(5))
    io.close()
    for s in [*socks, talker]:
        s.close()


def test_a_typed_batch_leaves_like_a_listed_one_and_writes_each_outcome(socks: list[socket.socket]) -> None:
    a, b, sink, _ = socks
    io = DatagramIO(8, False)
    io.register(2, a)
    io.register(5, b)
    buf = bytearray(b"0123456789abcdefghij")
    peer = sink.getsockname()
    bad_host = ("example.invalid", 5000)
    slots = np.array([2, 5, 2, 3, 2, 7], dtype=np.int32)  # the last one is past `count`: not sent
    offsets = np.array([0, 10, 4, 0, 0, 0], dtype=np.int32)
    lengths = np.array([4, 10, 2, 1, 1, 1], dtype=np.int32)
    peers: list[object] = [peer, peer, peer, peer, bad_host, peer]
    errors = np.full(6, 99, dtype=np.int32)
    lateness = np.zeros(101, dtype=np.int64)
    failed = io.send_batch(buf, slots, offsets, lengths, peers, 5, errors, lateness, time.monotonic())
    assert failed == 2 and errors.tolist() == [0, 0, 0, errno.EBADF, -1, 99] and int(lateness.sum()) == 3
    assert [(data, src[1]) for data, src in drain(sink)] == [
        (b"0123", a.getsockname()[1]),
        (b"abcdefghij", b.getsockname()[1]),
        (b"45", a.getsockname()[1]),
    ]
    peers[0] = peer  # the same destination again after a failure on the slot: packed anew, sent
    assert io.send_batch(buf, slots, offsets, lengths, peers, 1, errors, None, 0.0) == 0 and errors[0] == 0
    assert [data for data, _ in drain(sink)] == [b"0123"]
    with pytest.raises(ValueError):
        io.send_batch(buf, slots, offsets, lengths, peers, 7, errors, None, 0.0)  # more packets than entries
    offsets[0] = 18
    with pytest.raises(ValueError):
        io.send_batch(buf, slots, offsets, lengths, peers, 1, errors, None, 0.0)  # outside the buffer
    io.close()
