"""Framing between the node and its media process: length-prefixed pickles over a Unix stream socket, each frame
optionally carrying socket descriptors (SCM_RIGHTS).

Owns the frame header (payload length, descriptor count), the sender's chunk queue (a frame's descriptors go with
its first byte, once) and the receiver's reassembly (descriptors taken in arrival order, a frame's own always
arrived by the time its last byte did). Must not know what the payloads mean (worker.py and remote.py do). Only
the node and its own child ever hold the two ends: pickle is safe between them and nowhere else.
"""

from __future__ import annotations

import array
import pickle
import socket
import struct
from collections import deque
from typing import Any

__all__ = ["MAX_FDS", "Receiver", "Sender", "encode"]

HEADER = struct.Struct("!II")  # payload bytes, descriptors
MAX_FDS = 250
"""Descriptors one message carries at most (Linux refuses more than 253 per sendmsg, SCM_MAX_FD): a frame with
more is sent in pieces, the first ones one byte each, and a receive stops after each piece that has some."""
_CMSG = socket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize)


def encode(obj: Any, nfds: int = 0) -> bytes:
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(payload), nfds) + payload


class Sender:
    """A queue of frames for a non-blocking socket: `push` then `flush` until `pending` is False."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._chunks: deque[tuple[memoryview, list[int]]] = deque()
        self.sent_fds: list[int] = []
        """Descriptors handed to the kernel since last cleared (the caller may close its copies)."""

    @property
    def pending(self) -> bool:
        return bool(self._chunks)

    def push(self, frame: bytes, fds: list[int] | None = None) -> None:
        view, fds = memoryview(frame), list(fds or ())
        while len(fds) > MAX_FDS and len(view) > 1:
            self._chunks.append((view[:1], fds[:MAX_FDS]))
            view, fds = view[1:], fds[MAX_FDS:]
        self._chunks.append((view, fds))

    def flush(self) -> None:
        """Send what the socket takes (BlockingIOError stops it; other OSErrors propagate)."""
        chunks = self._chunks
        while chunks:
            view, fds = chunks[0]
            try:
                if fds:
                    n = self.sock.sendmsg([view], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
                    self.sent_fds.extend(fds)
                else:
                    n = self.sock.send(view)
            except (BlockingIOError, InterruptedError):
                return
            if n < len(view):
                chunks[0] = (view[n:], [])
                continue
            chunks.popleft()


class Receiver:
    """Reassembles frames from what `feed` is given; `frames()` yields (object, descriptors)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._fds: deque[int] = deque()

    def read(self, sock: socket.socket, size: int = 1 << 18) -> bool:
        """One receive; False at end of stream."""
        data, ancillary, _flags, _addr = sock.recvmsg(size, _CMSG)
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
                self._fds.extend(fds)
        if not data:
            return False
        self._buf += data
        return True

    def frames(self) -> list[tuple[Any, list[int]]]:
        out: list[tuple[Any, list[int]]] = []
        buf = self._buf
        pos = 0
        while len(buf) - pos >= HEADER.size:
            size, nfds = HEADER.unpack_from(buf, pos)
            end = pos + HEADER.size + size
            if len(buf) < end:
                break
            with memoryview(buf) as whole, whole[pos + HEADER.size : end] as payload:
                obj = pickle.loads(payload)
            fds = [self._fds.popleft() for _ in range(min(nfds, len(self._fds)))]
            out.append((obj, fds))
            pos = end
        if pos:
            del buf[:pos]
        return out
