"""A free loopback port for the helpers that start SIP programs on it (SIPp, baresip)."""

from __future__ import annotations

import socket
import threading

LOOPBACK = "127.0.0.1"
_given: set[int] = set()
_given_lock = threading.Lock()


def free_port() -> int:
    """A port free on 127.0.0.1 for both UDP and TCP (SIP tools listen on both), never one this process was given
    before (programs started at once, e.g. the SIPp scenario checks, each get their own); RuntimeError if none is
    found."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((LOOPBACK, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((LOOPBACK, port))
                except OSError:
                    continue
            with _given_lock:
                if port in _given:
                    continue
                _given.add(port)
            return port
    raise RuntimeError(f"no free port on {LOOPBACK}")
