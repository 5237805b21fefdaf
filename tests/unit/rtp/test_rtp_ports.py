"""Port pairs: even RTP port + RTCP next to it, round robin, release, exhaustion, skipping ports taken elsewhere."""

from __future__ import annotations

import socket

import pytest

from opencomms.rtp.ports import PortAllocator, PortsExhausted


def test_pairs_are_even_bound_and_non_blocking() -> None:
    alloc = PortAllocator(47100, 47120)
    pair = alloc.allocate("127.0.0.1")
    try:
        assert pair.port % 2 == 0 and 47100 <= pair.port <= 47120
        assert pair.rtp.getsockname() == ("127.0.0.1", pair.port)
        assert pair.rtcp.getsockname() == ("127.0.0.1", pair.rtcp_port) and pair.rtcp_port == pair.port + 1
        assert not pair.rtp.getblocking() and not pair.rtcp.getblocking()
        assert alloc.in_use == 1 and alloc.capacity == 11
    finally:
        pair.close()
        alloc.release(pair.port)
    assert alloc.in_use == 0


def test_round_robin_exhaustion_and_release() -> None:
    alloc = PortAllocator(47130, 47136)  # 47130, 47132, 47134, 47136
    pairs = [alloc.allocate("127.0.0.1") for _ in range(4)]
    try:
        assert sorted(p.port for p in pairs) == [47130, 47132, 47134, 47136]
        with pytest.raises(PortsExhausted):
            alloc.allocate("127.0.0.1")
        freed = pairs.pop(1)
        freed.close()
        alloc.release(freed.port)
        alloc.release(freed.port)  # idempotent
        again = alloc.allocate("127.0.0.1")
        pairs.append(again)
        assert again.port == freed.port
    finally:
        for p in pairs:
            p.close()


def test_ports_taken_by_someone_else_are_skipped() -> None:
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind(("127.0.0.1", 47141))  # the RTCP port of pair 47140
    alloc = PortAllocator(47140, 47142)
    try:
        pairs = [alloc.allocate("127.0.0.1")]
        assert pairs[0].port == 47142
        with pytest.raises(PortsExhausted):
            pairs.append(alloc.allocate("127.0.0.1"))
        assert alloc.in_use == 1  # the failed pair went back
    finally:
        squatter.close()
        for p in pairs:
            p.close()


def test_odd_bounds_are_rounded_and_bad_ranges_refused() -> None:
    alloc = PortAllocator(47151, 47160)
    assert alloc.first == 47152 and alloc.last == 47160
    for first, last in ((100, 200), (47000, 47000), (47000, 65535)):
        with pytest.raises(ValueError):
            PortAllocator(first, last)


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    alloc = PortAllocator(47170, 47180, dscp=None)
    try:
        pair = alloc.allocate("::1")
    except OSError:
        pytest.skip("IPv6 loopback unavailable")
    assert pair.rtp.family == socket.AF_INET6 and pair.rtp.getsockname()[1] == pair.port
    pair.close()
