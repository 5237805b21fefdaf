"""The media process on its own: commands in, events and results back, RTP sockets passed as descriptors (the
node's copies closed), and a child that never outlives its node."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np

from opencomms._compiled import state as compiled_state
from opencomms.media.engine import PlayFinished
from opencomms.media.engine.commands import AddLeg, ConnectLeg, Play
from opencomms.mediahost.remote import MediaProcess
from opencomms.mediahost.streams import WorkerSettings
from opencomms.rtp.packet import RtpPacket
from opencomms.rtp.stream import Stream, StreamParams


def _udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


async def test_commands_results_events_and_rtp_cross_the_process_boundary() -> None:
    events: list[object] = []
    proc = MediaProcess(WorkerSettings(capacity=8, bank_capacity=4), on_events=events.extend)
    proc.start()
    try:
        await proc.wait_ready()
        assert proc.pid != os.getpid() and proc.running
        await asyncio.wrap_future(proc.call_result(AddLeg("bot")))
        await asyncio.wrap_future(proc.call_result(ConnectLeg("sip", "call", 0, False)))
        failed = proc.call_result(AddLeg("bot"))  # the child's exception comes back on the future
        try:
            await asyncio.wrap_future(failed)
        except ValueError as exc:
            assert "already exists" in str(exc)
        else:
            raise AssertionError("a duplicate leg was added")
        proc.call(ConnectLeg("bot", "call", 0, False))
        peer, rtp, rtcp = _udp(), _udp(), _udp()
        peer.settimeout(2.0)
        stream = Stream("sip", rtp, rtcp, ssrc=0x1234)
        stream.apply(StreamParams(remote_rtp=peer.getsockname()))
        await asyncio.wrap_future(proc.rtp_bank.attach(stream))
        assert rtp.fileno() == -1 and rtcp.fileno() == -1  # our copies are closed once passed
        proc.call(Play("bot", "hello", (np.full(16000, 3000, np.int16),)))  # 1 s heard by "sip" -> RTP out
        packets = [RtpPacket.parse(peer.recv(2048)) for _ in range(20)]
        assert {p.ssrc for p in packets} == {0x1234} and all(p.payload_type == 0 for p in packets)
        assert packets[0].sequence == stream.seq  # the child numbers from the node's own (no randomness read there)
        deadline = time.monotonic() + 3.0
        while not any(isinstance(e, PlayFinished) and e.tag == "hello" for e in events):
            assert time.monotonic() < deadline, events
            await asyncio.sleep(0.05)
        assert stream.quality().packets_sent >= 20  # the mirror follows the child's reports
        assert proc.stats()["media_process"]["path"] == compiled_state()  # the child runs the node's media path
        await asyncio.wrap_future(proc.rtp_bank.detach(stream))
        assert proc.rtp_bank.streams == 0
        peer.close()
    finally:
        proc.stop()
    assert not proc.running and proc._proc is not None and proc._proc.returncode is not None


def test_the_child_dies_with_its_node() -> None:
    script = textwrap.dedent(
        """
        import asyncio, os, sys
        from opencomms.mediahost.remote import MediaProcess
        from opencomms.mediahost.streams import WorkerSettings

        async def main():
            proc = MediaProcess(WorkerSettings(capacity=4, bank_capacity=4))
            proc.start()
            await proc.wait_ready()
            print(proc.pid, flush=True)
            os.kill(os.getpid(), 9)  # the node dies without any clean-up

        asyncio.run(main())
        """
    )
    node = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    child = int(node.stdout.split()[0])
    deadline = time.monotonic() + 5.0
    while True:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        if time.monotonic() > deadline:
            os.kill(child, signal.SIGKILL)
            raise AssertionError("the media process outlived its node")
        time.sleep(0.05)
