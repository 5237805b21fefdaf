"""Frames between the node and its media process: order, large payloads, and more descriptors than one message
may carry."""

from __future__ import annotations

import os
import socket
import threading

from opencomms.mediahost.wire import Receiver, Sender, encode


def test_frames_arrive_whole_in_order_with_every_descriptor() -> None:
    ours, theirs = socket.socketpair()
    files = [os.open(os.devnull, os.O_RDONLY) for _ in range(600)]  # more than SCM_MAX_FD (253) in one frame
    frames = [(encode(["small"]), []), (encode([b"x" * 3_000_000], len(files)), files), (encode(["after"]), [])]

    def send() -> None:
        sender = Sender(ours)
        for frame, fds in frames:
            sender.push(frame, fds)
        sender.flush()  # a blocking socket: everything goes

    writer = threading.Thread(target=send)
    writer.start()
    receiver = Receiver()
    got: list[tuple[object, list[int]]] = []
    while len(got) < 3:
        assert receiver.read(theirs)
        got.extend(receiver.frames())
    writer.join()
    assert [obj for obj, _ in got] == [["small"], [b"x" * 3_000_000], ["after"]]
    assert len(got[1][1]) == 600 and got[0][1] == [] and got[2][1] == []
    for fd in [*files, *got[1][1]]:
        os.close(fd)
    ours.close()
    theirs.close()
