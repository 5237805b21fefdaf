"""Batched datagram I/O of the RTP bank: every packet of a tick sent in one call, every ready socket read in one.

Owns one epoll set of the bank's sockets, each known by a slot number the bank chooses (its row twice: RTP, RTCP),
the buffer datagrams are read into, and the slots' steady-state RTP lanes: a slot the bank arms consumes, right here,
each datagram that is the next one of its source in sequence (RTP's fixed header, RFC 3550 A.1's common case): its
payload goes to the stream's jitter buffer and it is counted, without a tuple, a method call or a Python frame per
packet; anything else disarms the lane and goes to the bank as before. Must not know streams or the engine: the
bank says when a lane may run and takes the counts back (`lane`, `disarm`).

This file is the reference (`OPENCOMMS_COMPILED=0`, and where there is no compiler); `sockio.pyx` is the same class
in C (`make compiled`): it calls `sendto`/`recvmsg` itself with the GIL released once per batch, so the event loop's
thread does not take the GIL at every packet, and no Python objects are made for a packet but its
payload (and its source address when that changed).
"""

from __future__ import annotations

import errno
import select
import socket
import struct
import sys
import time
from dataclasses import dataclass
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from .address import is_literal

__all__ = ["MAX_DATAGRAM", "DatagramIO", "Pending", "PutPacket", "Received"]

MAX_DATAGRAM: Final = 2048
"""Bytes read of one datagram (longer ones are cut: no RTP packet of ours comes near)."""
_TIMESPEC = struct.Struct("@qq")
_SO_TIMESTAMPNS: int | None = getattr(socket, "SO_TIMESTAMPNS", 35 if sys.platform == "linux" else None)
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size)
_UNSENDABLE: Final = -1
_FIXED = struct.Struct("!BBHII")

Received = tuple[int, bytes | None, tuple[str, int], float]
"""One datagram read: (slot, payload or None when reading failed, source address, kernel arrival time on the wall
clock or -1.0)."""
Pending = tuple[int, int, int, int, float]
"""What a lane consumed since it was last asked: (packets, payload octets, the last one's sequence number and
timestamp, its arrival time on the bank's clock)."""


class PutPacket(Protocol):
    """The jitter buffer's `put` (rtp/jitter.py): where an armed lane hands each payload."""

    def __call__(self, ssrc: int, timestamp: int, payload: bytes, arrival: float) -> object: ...


@dataclass(slots=True)
class _Lane:
    """One armed slot: what the next datagram must be to be consumed here, and what was consumed since `lane`."""

    put: PutPacket
    source: object
    ssrc: int
    pt: int
    seq: int
    armed: bool = True
    quiet: bool = False
    count: int = 0
    octets: int = 0
    ts: int = 0
    arrival: float = 0.0


class DatagramIO:
    """Non-blocking datagram sockets known by slot (0 <= slot < `slots`), sent to and read in batches.

    `send` takes a tick's packets as parallel lists (the slot whose socket sends, the offset and length in one
    buffer, the destination) and returns the failures by index: an errno, or -1 for a destination no socket can
    take (not a literal address). `receive(rounds)` polls every registered socket and reads one datagram from each
    ready one, up to `rounds` times while some are ready; `take(i)` hands out the i-th read. With `timestamps` the
    sockets are asked for the kernel's receive time (SO_TIMESTAMPNS)."""

    def __init__(self, slots: int, timestamps: bool) -> None:
        self._socks: list[socket.socket | None] = [None] * slots
        self._fds = [-1] * slots  # taken at register: the owner may close the socket before unregistering it
        self._by_fd: dict[int, int] = {}
        self._peers: list[object] = [None] * slots  # per slot: the destination last checked
        self._sources: list[object] = [None] * slots  # per slot: the source last handed out
        self._epoll = select.epoll()
        self.timestamps = timestamps and _SO_TIMESTAMPNS is not None
        self._read: list[Received] = []
        self._lanes: dict[int, _Lane] = {}
        self._woken: list[int] = []
        self._errors: list[tuple[int, BaseException]] = []
        self.consumed = 0
        """Datagrams the lanes consumed in the last `receive`."""

    def register(self, slot: int, sock: socket.socket) -> None:
        """Poll `sock` as `slot` (which must be free)."""
        if self.timestamps and _SO_TIMESTAMPNS is not None:
            sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        fd = sock.fileno()
        self._epoll.register(fd, select.EPOLLIN)
        self._socks[slot], self._fds[slot] = sock, fd
        self._peers[slot] = self._sources[slot] = None
        self._lanes.pop(slot, None)
        self._by_fd[fd] = slot

    def unregister(self, slot: int) -> None:
        """Stop polling `slot` (idempotent; its socket may be closed already)."""
        fd = self._fds[slot]
        if self._socks[slot] is None:
            return
        self._socks[slot], self._fds[slot] = None, -1
        self._lanes.pop(slot, None)
        del self._by_fd[fd]
        try:
            self._epoll.unregister(fd)
        except (OSError, ValueError):
            pass

    def send(
        self,
        buf: bytearray,
        slots: list[int],
        offsets: list[int],
        lengths: list[int],
        peers: list[tuple[str, int]],
        lateness: npt.NDArray[np.int64] | None,
        due: float,
    ) -> dict[int, int] | None:
        """Send `buf[offsets[i]:offsets[i] + lengths[i]]` from slot `slots[i]` to `peers[i]`, for every i in order.
        Returns None when all left, else {i: errno, or -1 for a destination no socket can take}. With `lateness`,
        each packet sent adds one to bucket min(100, whole ms after `due`) (time.monotonic)."""
        view = memoryview(buf)
        socks, known = self._socks, self._peers
        failed: dict[int, int] | None = None
        n = len(slots)
        if len(offsets) != n or len(lengths) != n or len(peers) != n:
            raise ValueError("slots, offsets, lengths and peers must be as long")
        for i in range(n):
            slot, offset, length, peer = slots[i], offsets[i], lengths[i], peers[i]
            sock = socks[slot] if 0 <= slot < len(socks) else None
            if offset < 0 or length < 0 or offset + length > len(buf):
                raise ValueError(f"packet {i} lies outside the buffer")
            if sock is None:
                failed = failed or {}
                failed[i] = errno.EBADF
                continue
            if peer is not known[slot]:  # never a name lookup on the media thread: literal addresses only
                known[slot] = None
                if not _literal(peer):
                    failed = failed or {}
                    failed[i] = _UNSENDABLE
                    continue
                known[slot] = peer
            try:
                sock.sendto(view[offset : offset + length], peer)
            except OSError as exc:
                failed = failed or {}
                failed[i] = exc.errno or errno.EIO
                continue
            except (TypeError, ValueError, OverflowError):  # not an address this socket takes
                failed = failed or {}
                failed[i] = _UNSENDABLE
                continue
            if lateness is not None:
                lateness[min(100, max(0, int((time.monotonic() - due) * 1000.0)))] += 1
        return failed

    def send_batch(
        self,
        buf: bytearray,
        slots: npt.NDArray[np.int32],
        offsets: npt.NDArray[np.int32],
        lengths: npt.NDArray[np.int32],
        peers: list[object],
        count: int,
        errors: npt.NDArray[np.int32],
        lateness: npt.NDArray[np.int64] | None,
        due: float,
    ) -> int:
        """`send` for the first `count` packets given as typed arrays (int32; `peers` a list), as the bank's send
        lane builds them: each packet's outcome goes to `errors[i]` (0 sent, else as `send`'s failures); returns
        how many failed."""
        if count < 0 or min(len(slots), len(offsets), len(lengths), len(peers), len(errors)) < count:
            raise ValueError("fewer slots, offsets, lengths, peers or errors than packets")
        failed = self.send(
            buf,
            slots[:count].tolist(),
            offsets[:count].tolist(),
            lengths[:count].tolist(),
            peers[:count],  # type: ignore[arg-type]  # checked per packet: a destination no socket takes fails
            lateness,
            due,
        )
        errors[:count] = 0
        for i, err in (failed or {}).items():
            errors[i] = err
        return len(failed or ())

    def receive(self, rounds: int, now: float = 0.0, offset: float = 0.0) -> int:
        """Read one datagram from every ready socket, again while some are ready, `rounds` times at most; returns how
        many are left to `take` (the previous reads are forgotten) once the armed lanes consumed theirs
        (`consumed`). A consumed datagram arrived at its kernel time less `offset` (the wall clock's lead on the
        bank's), or at `now` without one."""
        read = self._read
        read.clear()
        self._woken.clear()
        self._errors.clear()
        self.consumed = 0
        by_fd, socks = self._by_fd, self._socks
        for _round in range(rounds):
            ready = self._epoll.poll(0)
            if not ready:
                break
            for fd, _events in ready:
                slot = by_fd.get(fd)
                sock = None if slot is None else socks[slot]
                if slot is None or sock is None:
                    continue
                try:
                    data, ancillary, _flags, addr = sock.recvmsg(MAX_DATAGRAM, _ANCILLARY)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    read.append((slot, None, ("", 0), -1.0))
                    continue
                stamp = -1.0
                for level, kind, value in ancillary:
                    if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(value) >= _TIMESPEC.size:
                        sec, nsec = _TIMESPEC.unpack_from(value)
                        stamp = sec + nsec * 1e-9
                last = self._sources[slot]
                if addr == last:
                    addr = last  # the same object as before: the stream compares it by identity first
                else:
                    self._sources[slot] = addr
                read.append((slot, data, addr, stamp))
        if self._lanes:
            self._consume(now, offset)
        return len(self._read)

    def _consume(self, now: float, offset: float) -> None:
        """The lane pass: in arrival order, each datagram an armed lane takes leaves the list."""
        lanes, kept, consumed = self._lanes, [], 0
        for item in self._read:
            slot, data, addr, stamp = item
            lane = lanes.get(slot)
            if lane is None or not lane.armed or data is None:
                kept.append(item)
                continue
            if len(data) < 12 or data[0] != 0x80 or addr != lane.source:
                lane.armed = False
                kept.append(item)
                continue
            _, pt, seq, ts, ssrc = _FIXED.unpack_from(data)
            if pt & 0x7F != lane.pt or ssrc != lane.ssrc or seq != lane.seq + 1:
                lane.armed = False
                kept.append(item)
                continue
            arrival = stamp - offset if stamp >= 0.0 else now
            try:
                lane.put(ssrc, ts, data[12:], arrival)
            except Exception as exc:  # the stream's own failure: the bank drops it
                lane.armed = False
                self._errors.append((slot, exc))
                continue
            consumed += 1
            lane.seq = seq
            lane.count += 1
            lane.octets += len(data) - 12
            lane.ts, lane.arrival = ts, arrival
            if lane.quiet:
                lane.quiet = False
                self._woken.append(slot)
        self._read = kept
        self.consumed = consumed

    def arm(self, slot: int, put: PutPacket, source: object, ssrc: int, pt: int, seq: int, quiet: bool) -> bool:
        """Start `slot`'s lane (see the class): False, and nothing armed, when `source` is not the source last
        handed out for the slot (or the slot has no socket). What it consumed before and not yet taken stays."""
        if self._socks[slot] is None or self._sources[slot] != source:
            return False
        lane = self._lanes.get(slot)
        if lane is None:
            self._lanes[slot] = _Lane(put, self._sources[slot], ssrc, pt & 0x7F, seq, quiet=quiet)
            return True
        lane.put, lane.source, lane.ssrc, lane.pt, lane.seq = put, self._sources[slot], ssrc, pt & 0x7F, seq
        lane.armed, lane.quiet = True, quiet
        return True

    def lane(self, slot: int) -> Pending | None:
        """What `slot`'s lane consumed since it was last asked (None: nothing), forgotten here."""
        lane = self._lanes.get(slot)
        if lane is None or not lane.count:
            return None
        pending = (lane.count, lane.octets, lane.seq, lane.ts, lane.arrival)
        lane.count = lane.octets = 0
        if not lane.armed:
            del self._lanes[slot]
        return pending

    def disarm(self, slot: int) -> Pending | None:
        """Stop `slot`'s lane; returns what it consumed since it was last asked."""
        lane = self._lanes.get(slot)
        if lane is None:
            return None
        lane.armed = False
        if not lane.count:
            del self._lanes[slot]
            return None
        return self.lane(slot)

    def peek(self, slot: int) -> tuple[int, int, float]:
        """(packets, octets, last arrival or -inf) consumed by `slot`'s lane and not yet taken (any thread: a slot
        that is not one, as a stream being detached may still name, has nothing)."""
        lane = self._lanes.get(slot)
        return (0, 0, float("-inf")) if lane is None or not lane.count else (lane.count, lane.octets, lane.arrival)

    def quiet(self, slot: int) -> None:
        """The bank stopped playing the armed `slot`'s buffer: list the slot in `woken` at its next consumed packet."""
        lane = self._lanes.get(slot)
        if lane is not None:
            lane.quiet = True

    def woken(self) -> list[int]:
        """The quiet slots whose lane consumed a datagram in the last `receive`."""
        return self._woken

    def errors(self) -> list[tuple[int, BaseException]]:
        """(slot, exception) of each `put` that raised in the last `receive` (its lane is disarmed)."""
        return self._errors

    def due(self, part: int, parts: int) -> list[tuple[int, Pending]]:
        """What the lanes of the slots with slot // 2 % parts == part consumed since last asked (their figures,
        handed back a part per tick so that readers on other threads see them soon)."""
        out = []
        for slot in [s for s, lane in self._lanes.items() if lane.count and (s >> 1) % parts == part]:
            pending = self.lane(slot)
            if pending is not None:
                out.append((slot, pending))
        return out

    def take(self, i: int) -> Received:
        """The i-th datagram of the last `receive`."""
        return self._read[i]

    def close(self) -> None:
        """Release the poller (the sockets are their owners')."""
        self._epoll.close()


def _literal(peer: object) -> bool:
    """(host, port[, flowinfo, scope_id]) with a literal IP address and a port number."""
    if not isinstance(peer, tuple) or len(peer) < 2:
        return False
    host, port = peer[0], peer[1]
    return isinstance(host, str) and is_literal(host.split("%", 1)[0]) and isinstance(port, int) and 0 <= port <= 65535
