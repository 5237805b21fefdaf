"""SIP transports: asyncio UDP and TCP, and the (pure) stream framer TCP needs.

Owns: sockets, TCP connections (one per peer address, reused in both directions, bounded in number and in
buffered bytes, closed when silent too long; when the total cap is reached a new source still gets in, at the
expense of the oldest idle connection of the address holding most), framing a byte stream into messages by
Content-Length (RFC 3261 §18.3) with the RFC 5626 CRLF keep-alive, reporting unreachable peers, and binding UDP
and TCP to one port number.
Must not: parse beyond framing, interpret messages, keep per-message state, or let an exception from a callback
or from hostile input escape into the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import resource
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from opencomms.sip.destination import Destination
from opencomms.sip.parser import DEFAULT_LIMITS, ParseLimits

log = logging.getLogger("opencomms.sip.transport")

Addr = tuple[str, int]
MessageCallback = Callable[[bytes, Destination], None]
"""(message bytes, where it came from)."""


@dataclass(frozen=True, slots=True)
class FramingError:
    """The stream cannot be framed any more (the connection must be closed). `head` is the header block when it
    was readable, so that a request can still be answered with `status`."""

    status: int
    reason: str
    head: bytes = b""


FrameErrorCallback = Callable[[FramingError, Destination], None]
FailureCallback = Callable[[Destination], None]
InUseCallback = Callable[[Addr], bool]
"""Whether the connection with this peer carries something that must outlive silence (a live dialog)."""

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_CONTENT_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)
KEEPALIVE_PING = b""
"""The frame `StreamFramer.feed` returns for an RFC 5626 double-CRLF ping (answer with a single CRLF)."""


class StreamFramer:
    """Cuts a TCP byte stream into whole messages. Bounded: a header block larger than `max_message` or a
    Content-Length that would exceed it is a FramingError, after which the framer yields nothing more."""

    def __init__(self, limits: ParseLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._buf = bytearray()
        self.broken = False

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes | FramingError]:
        if self.broken:
            return []
        self._buf += data
        out: list[bytes | FramingError] = []
        buf = self._buf
        limit = self.limits.max_message
        while buf:
            skip = 0
            while skip < len(buf) and buf[skip] in b"\r\n":
                skip += 1
            if skip:
                if b"\r\n\r\n" in buf[:skip]:
                    out.append(KEEPALIVE_PING)
                del buf[:skip]
                continue
            m = _HEAD_END.search(buf)
            if m is None:
                if len(buf) > limit:
                    return self._fail(out, FramingError(513, "Message Too Large", _whole_lines(buf, limit)))
                break
            head_end, body_start = m.start(), m.end()
            if head_end > limit:
                return self._fail(out, FramingError(513, "Message Too Large", _whole_lines(buf, limit)))
            head = bytes(buf[:head_end])
            lengths = _CONTENT_LENGTH.findall(head)
            if not lengths:
                return self._fail(out, FramingError(400, "Missing Content-Length", head))
            if len(set(lengths)) > 1 or not lengths[0].isdigit() or len(lengths[0]) > 9:
                return self._fail(out, FramingError(400, "Invalid Content-Length", head))
            length = int(lengths[0])
            if body_start + length > limit:
                return self._fail(out, FramingError(413, "Request Entity Too Large", head))
            if len(buf) < body_start + length:
                break
            out.append(bytes(buf[: body_start + length]))
            del buf[: body_start + length]
        return out

    def _fail(self, out: list[bytes | FramingError], error: FramingError) -> list[bytes | FramingError]:
        self.broken = True
        self._buf.clear()
        out.append(error)
        return out


def _whole_lines(buf: bytearray, limit: int) -> bytes:
    """The complete lines within the first `limit` bytes of an oversized header block: enough to answer 513."""
    return bytes(buf[: buf.rfind(b"\n", 0, limit) + 1])


def _peer(transport: asyncio.BaseTransport) -> Addr | None:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return (str(peer[0]), int(peer[1]))
    return None


# --- UDP ----------------------------------------------------------------------------------------------------------


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: UdpTransport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            self.owner.received += 1
            self.owner.on_message(data, Destination("udp", str(addr[0]), int(addr[1])))
        except Exception:
            log.exception("SIP UDP datagram handler failed")

    def error_received(self, exc: Exception) -> None:
        log.debug("SIP UDP socket error: %s", exc)


class UdpTransport:
    """One UDP socket. `send` never raises (a lost datagram is what UDP does anyway)."""

    kind = "udp"

    def __init__(self, on_message: MessageCallback) -> None:
        self.on_message = on_message
        self._transport: asyncio.DatagramTransport | None = None
        self.local_addr: Addr = ("0.0.0.0", 0)
        self.received = 0
        self.sent = 0

    async def listen(self, host: str, port: int) -> Addr:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _UdpProtocol(self), local_addr=(host, port))
        self._transport = transport
        sock = transport.get_extra_info("sockname")
        self.local_addr = (str(sock[0]), int(sock[1]))
        return self.local_addr

    @property
    def listening(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def send(self, data: bytes, addr: Addr) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        try:
            self._transport.sendto(data, addr)
            self.sent += 1
        except (OSError, ValueError) as exc:
            log.debug("SIP UDP send to %s failed: %s", addr, exc)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None


# --- TCP ----------------------------------------------------------------------------------------------------------


class _TcpConnection(asyncio.Protocol):
    def __init__(self, owner: TcpTransport, *, inbound: bool = False) -> None:
        self.owner = owner
        self.framer = StreamFramer(owner.limits)
        self.transport: asyncio.Transport | None = None
        self.peer: Addr | None = None
        self.inbound = inbound
        self.registered = False
        self._silence: asyncio.TimerHandle | None = None
        self._idle: asyncio.TimerHandle | None = None
        self.last_activity = 0.0
        """Loop time of the last bytes received or sent."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.peer = _peer(transport)
        loop = asyncio.get_running_loop()
        self.last_activity = loop.time()
        if self.peer is None or not self.owner._register(self):
            self.transport.abort()
            return
        timeout = self.owner.first_message_timeout
        if self.inbound and timeout:  # a peer that connects but sends no message only holds a slot: not for long
            self._silence = loop.call_later(timeout, self._silent)
        else:
            self._arm_idle(self.owner.idle_timeout)

    def _arm_idle(self, delay: float | None) -> None:
        if delay is not None and self._idle is None and self.transport is not None:
            self._idle = asyncio.get_running_loop().call_later(delay, self._idle_check)

    def _idle_check(self) -> None:
        self._idle = None
        timeout = self.owner.idle_timeout
        if self.transport is None or self.transport.is_closing() or timeout is None:
            return
        silent = asyncio.get_running_loop().time() - self.last_activity
        if silent < timeout:
            self._arm_idle(timeout - silent)
            return
        in_use = self.owner.in_use
        if in_use is not None and self.peer is not None and in_use(self.peer):
            self._arm_idle(timeout)  # a live dialog keeps its connection
            return
        log.debug("SIP TCP peer %s silent for %.0f s; closing", self.peer, silent)
        self.owner.idle_closed += 1
        self.transport.abort()

    def _silent(self) -> None:
        self._silence = None
        if self.transport is not None:
            log.debug("SIP TCP peer %s sent no message in time; closing", self.peer)
            self.owner.idle_closed += 1
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.transport is None or self.peer is None:
            return
        source = Destination("tcp", *self.peer)
        self.last_activity = asyncio.get_running_loop().time()
        try:
            items = self.framer.feed(data)
        except Exception:
            log.exception("SIP TCP framing failed")
            self.transport.abort()
            return
        for item in items:
            try:
                if isinstance(item, FramingError):
                    self.owner.on_frame_error(item, source)
                    self.transport.close()
                    return
                if item == KEEPALIVE_PING:
                    self.transport.write(b"\r\n")
                    continue
                if self._silence is not None:
                    self._silence.cancel()
                    self._silence = None
                    self._arm_idle(self.owner.idle_timeout)
                self.owner.on_message(item, source)
            except Exception:
                log.exception("SIP TCP message handler failed")

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._silence, self._idle):
            if timer is not None:
                timer.cancel()
        self._silence = self._idle = None
        self.owner._unregister(self)

    def write(self, data: bytes) -> bool:
        if self.transport is None or self.transport.is_closing():
            return False
        if self.transport.get_write_buffer_size() + len(data) > self.owner.max_write_buffer:
            log.warning("SIP TCP peer %s is not reading; closing", self.peer)
            self.transport.abort()
            return False
        self.transport.write(data)
        self.last_activity = asyncio.get_running_loop().time()
        return True


class TcpTransport:
    """A listening TCP socket plus outgoing connections; one connection per peer address, used both ways.
    Bounded: `max_connections` in all, `max_connections_per_host` from one address; an accepted connection
    that delivers no complete message within `first_message_timeout` seconds is closed, and any connection silent
    (no bytes either way) for `idle_timeout` seconds is closed unless `in_use` says its peer has a live dialog.
    When `max_connections` is reached, a connection from an address holding fewer than the largest holder is still
    let in: the largest holder's longest-silent connection is closed for it (so a few sources holding idle
    connections cannot lock new clients out)."""

    kind = "tcp"

    def __init__(
        self,
        on_message: MessageCallback,
        on_frame_error: FrameErrorCallback,
        on_failure: FailureCallback,
        limits: ParseLimits = DEFAULT_LIMITS,
        *,
        max_connections: int = 1024,
        max_write_buffer: int = 1 << 20,
        connect_timeout: float = 5.0,
        max_connections_per_host: int = 64,
        first_message_timeout: float | None = 10.0,
        idle_timeout: float | None = 300.0,
        in_use: InUseCallback | None = None,
    ) -> None:
        self.on_message = on_message
        self.on_frame_error = on_frame_error
        self.on_failure = on_failure
        self.limits = limits
        self.max_connections = max_connections
        self.max_write_buffer = max_write_buffer
        self.connect_timeout = connect_timeout
        self.max_connections_per_host = max_connections_per_host
        self.first_message_timeout = first_message_timeout
        self.idle_timeout = idle_timeout
        self.in_use = in_use
        self.evicted = 0
        self._per_host: dict[str, int] = {}
        self.idle_closed = 0
        self._server: asyncio.Server | None = None
        self._conns: dict[Addr, _TcpConnection] = {}
        self._pending: dict[Addr, list[bytes]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.local_addr: Addr = ("0.0.0.0", 0)
        self.rejected = 0

    @property
    def connection_count(self) -> int:
        return len(set(map(id, self._conns.values())))

    @property
    def listening(self) -> bool:
        return self._server is not None and self._server.is_serving()

    async def listen(self, host: str, port: int) -> Addr:
        # the cap must bite before the process runs out of descriptors (RTP sockets, HTTP and files need theirs)
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft != resource.RLIM_INFINITY and self.max_connections > soft // 2:
            log.info("SIP TCP connections capped at %d (half the descriptor limit %d)", soft // 2, soft)
            self.max_connections = max(1, soft // 2)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _TcpConnection(self, inbound=True), host, port)
        sock = self._server.sockets[0].getsockname()
        self.local_addr = (str(sock[0]), int(sock[1]))
        return self.local_addr

    def _register(self, conn: _TcpConnection) -> bool:
        if conn.peer is None:
            return False
        host = conn.peer[0]
        if (conn.inbound and self._per_host.get(host, 0) >= self.max_connections_per_host) or (
            self.connection_count >= self.max_connections and not self._evict_for(host)
        ):
            self.rejected += 1
            return False
        self._conns[conn.peer] = conn
        self._per_host[host] = self._per_host.get(host, 0) + 1
        conn.registered = True
        return True

    def _evict_for(self, host: str) -> bool:
        """Make room for a connection from `host`: close the longest-silent connection of the address holding
        most, if that address holds more than `host` would (True when a connection was closed)."""
        if not self._per_host:
            return False
        largest = max(self._per_host, key=lambda h: self._per_host[h])
        if self._per_host[largest] <= self._per_host.get(host, 0):
            return False
        candidates = [c for c in set(self._conns.values()) if c.peer is not None and c.peer[0] == largest]
        if not candidates:
            return False
        victim = min(candidates, key=lambda c: c.last_activity)
        log.info("SIP TCP connections full; closing the longest idle one of %s for %s", largest, host)
        self.evicted += 1
        self._unregister(victim)
        if victim.transport is not None:
            victim.transport.abort()
        return True

    def _unregister(self, conn: _TcpConnection) -> None:
        for addr in [a for a, c in self._conns.items() if c is conn]:
            del self._conns[addr]
        if conn.registered and conn.peer is not None:
            conn.registered = False
            left = self._per_host.get(conn.peer[0], 1) - 1
            if left > 0:
                self._per_host[conn.peer[0]] = left
            else:
                self._per_host.pop(conn.peer[0], None)

    def send(self, data: bytes, addr: Addr) -> None:
        conn = self._conns.get(addr)
        if conn is not None:
            if not conn.write(data):
                self.on_failure(Destination("tcp", *addr))
            return
        pending = self._pending.get(addr)
        if pending is not None:
            if sum(map(len, pending)) + len(data) <= self.max_write_buffer:
                pending.append(data)
            return
        self._pending[addr] = [data]
        task = asyncio.get_running_loop().create_task(self._connect(addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, addr: Addr) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(lambda: _TcpConnection(self), addr[0], addr[1]), self.connect_timeout
            )
        except (TimeoutError, OSError) as exc:
            log.debug("SIP TCP connect to %s failed: %s", addr, exc)
            self._pending.pop(addr, None)
            self.on_failure(Destination("tcp", *addr))
            return
        pending = self._pending.pop(addr, [])
        if protocol.transport is None or protocol.transport.is_closing():
            self.on_failure(Destination("tcp", *addr))
            return
        self._conns[addr] = protocol
        for data in pending:
            protocol.write(data)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for conn in set(self._conns.values()):
            if conn.transport is not None:
                conn.transport.close()
        self._conns.clear()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None


SAME_PORT_ATTEMPTS = 8


async def listen_same_port(udp: UdpTransport, tcp: TcpTransport, host: str, attempts: int = SAME_PORT_ATTEMPTS) -> int:
    """Bind `udp` to a free port, then `tcp` to the same number (another free UDP port is tried when TCP finds it
    taken, up to `attempts` times), so that one port number is the endpoint's. Returns the port."""
    for attempt in range(attempts):
        port = (await udp.listen(host, 0))[1]
        try:
            await tcp.listen(host, port)
            return port
        except OSError:
            udp.close()
            if attempt == attempts - 1:
                raise
            log.debug("SIP TCP port %d taken; binding UDP and TCP again on another", port)
    raise OSError("no port free for both UDP and TCP")
