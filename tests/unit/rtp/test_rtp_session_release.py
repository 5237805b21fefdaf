"""RtpSession.close gives its port pair back whatever happens on the way: a detach that fails, one that never
completes (the caller's task is cancelled), or a stream that never started. A fake bank stands in for the engine."""

from __future__ import annotations

import asyncio
import random
from concurrent.futures import Future

import pytest

from opencomms.rtp.offer_answer import PCMU, NegotiatedAudio
from opencomms.rtp.ports import PortAllocator
from opencomms.rtp.sdp import Direction
from opencomms.rtp.session import RtpSession
from opencomms.rtp.stream import Stream


class FakeBank:
    def __init__(self, detach: str) -> None:
        self.mode = detach

    def attach(self, stream: Stream) -> Future[None]:
        done: Future[None] = Future()
        done.set_result(None)
        return done

    def detach(self, stream: Stream, *, bye: bool = True) -> Future[None]:
        done: Future[None] = Future()
        if self.mode == "fails":
            done.set_exception(TypeError("encoding of hostname failed"))
        elif self.mode == "ok":
            done.set_result(None)
        return done  # "hangs": never completes


MEDIA = NegotiatedAudio(PCMU, Direction.SENDRECV, ("127.0.0.1", 4000), ("127.0.0.1", 4001), None, {0: "PCMU"})


def allocator() -> PortAllocator:
    first = 61000 + 2 * random.randrange(1000)
    return PortAllocator(first, first + 3)  # two pairs


async def session(ports: PortAllocator, mode: str) -> RtpSession:
    rtp = RtpSession("leg", FakeBank(mode), ports, "127.0.0.1")  # type: ignore[arg-type]
    await rtp.open()
    await rtp.start(MEDIA)
    return rtp


@pytest.mark.parametrize("mode", ["ok", "fails"])
async def test_ports_go_back_when_the_detach_fails(mode: str) -> None:
    ports = allocator()
    rtp = await session(ports, mode)
    sock = rtp.stream.rtp_sock
    await rtp.close()
    assert ports.in_use == 0 and sock.fileno() == -1


async def test_ports_go_back_when_the_closing_task_is_cancelled() -> None:
    ports = allocator()
    rtp = await session(ports, "hangs")
    closing = asyncio.create_task(rtp.close())
    await asyncio.sleep(0.05)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert ports.in_use == 0
    await rtp.close()  # idempotent


async def test_a_session_that_never_started_releases_its_ports() -> None:
    ports = allocator()
    rtp = RtpSession("leg", FakeBank("ok"), ports, "127.0.0.1")  # type: ignore[arg-type]
    await rtp.open()
    assert ports.in_use == 1
    await rtp.close()
    assert ports.in_use == 0
