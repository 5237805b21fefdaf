"""Fixtures of the RTP unit tests."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest


@pytest.fixture
def udp() -> Iterator[Callable[[], socket.socket]]:
    """Makes loopback UDP sockets (1 s timeout: a missing packet fails a test instead of hanging it); all closed
    after the test."""
    opened: list[socket.socket] = []

    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.settimeout(1.0)
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()
