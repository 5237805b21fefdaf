"""UDP port pairs for RTP sessions: an even RTP port and RTCP on the next one, from a configured range.

Owns the range, which ports are handed out, the round-robin cursor (a released port is reused as late as
possible, so stray packets of an old call rarely reach a new one) and binding with retries. Must not read or
write packets: it returns bound, non-blocking sockets and takes their port back on release.
"""

from __future__ import annotations

import errno
import logging
import secrets
import socket
import threading
from dataclasses import dataclass

__all__ = ["PortAllocator", "PortPair", "PortsExhausted"]

log = logging.getLogger("opencomms.rtp")

DSCP_EF = 46
"""Expedited Forwarding, the DSCP for voice (RFC 4594)."""


class PortsExhausted(RuntimeError):
    """No port pair of the range could be bound."""


@dataclass(frozen=True, slots=True)
class PortPair:
    """Bound UDP sockets: RTP on the even `port`, RTCP on `port + 1`."""

    port: int
    rtp: socket.socket
    rtcp: socket.socket

    @property
    def rtcp_port(self) -> int:
        return self.port + 1

    def close(self) -> None:
        self.rtp.close()
        self.rtcp.close()


class PortAllocator:
    """Hands out even ports from [first, last] (RTCP uses port + 1, so `last` + 1 must be free too).

    `allocate(ip)` binds both sockets on `ip`, trying the next free pair when one is taken by another process
    (up to `attempts` pairs), and raises PortsExhausted when none can be bound. Ports go back with
    `release(port)`. Thread-safe. `dscp` marks outgoing packets (46 = EF; None leaves the default).
    """

    def __init__(
        self,
        first: int = 20000,
        last: int = 30000,
        *,
        attempts: int = 64,
        dscp: int | None = DSCP_EF,
        receive_buffer: int | None = 256 * 1024,
    ) -> None:
        first += first % 2
        if not 1024 <= first < last <= 65534 or attempts < 1:
            raise ValueError("need an even range 1024 <= first < last <= 65534 and attempts >= 1")
        self.first = first
        self.last = last - (last % 2)
        self.attempts = attempts
        self.dscp = dscp
        self.receive_buffer = receive_buffer
        self._count = (self.last - first) // 2 + 1
        self._cursor = secrets.randbelow(self._count)
        self._used: set[int] = set()
        self._lock = threading.Lock()

    @property
    def capacity(self) -> int:
        """Port pairs in the range."""
        return self._count

    @property
    def in_use(self) -> int:
        return len(self._used)

    def allocate(self, ip: str) -> PortPair:
        """Bind an RTP/RTCP pair on `ip` (IPv4 or IPv6 literal, or "0.0.0.0"/"::")."""
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        tried = 0
        while tried < self.attempts:
            port = self._claim()
            tried += 1
            rtp: socket.socket | None = None
            try:
                rtp = self._bind(family, ip, port)
                return PortPair(port, rtp, self._bind(family, ip, port + 1))
            except BaseException as exc:
                if rtp is not None:
                    rtp.close()
                self.release(port)
                if not isinstance(exc, OSError) or exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                    raise
        raise PortsExhausted(f"no free RTP port pair in {self.first}-{self.last + 1} on {ip} after {tried} tries")

    def release(self, port: int) -> None:
        """Give a port back (idempotent)."""
        with self._lock:
            self._used.discard(port)

    def _claim(self) -> int:
        with self._lock:
            if len(self._used) >= self._count:
                raise PortsExhausted(f"all {self._count} RTP port pairs in {self.first}-{self.last + 1} are in use")
            while True:
                port = self.first + 2 * self._cursor
                self._cursor = (self._cursor + 1) % self._count
                if port not in self._used:
                    self._used.add(port)
                    return port

    def _bind(self, family: socket.AddressFamily, ip: str, port: int) -> socket.socket:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            if self.receive_buffer:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
            if self.dscp is not None:
                try:
                    if family == socket.AF_INET:
                        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, self.dscp << 2)
                    else:
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, self.dscp << 2)
                except OSError:  # some platforms refuse; marking is best effort
                    log.debug("could not set DSCP on an RTP socket")
            sock.bind((ip, port))
        except BaseException:
            sock.close()
            raise
        return sock
