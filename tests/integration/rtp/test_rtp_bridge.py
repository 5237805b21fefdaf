"""Two RtpSessions on 127.0.0.1, each bound to a leg of a real MediaEngine ticked by a real EngineThread:

    caller (bot, plays) --mix m1-- sipA ==RTP/UDP== sipB --mix m2-- listener (bot, hears)

A prompt played by `caller` must reach `listener` through G.711, 16k->8k->16k and two jitter buffers; RFC 4733
keys cross; 5 % loss injected by a UDP relay leaves the audio going and shows in RTCP; hold, codec change,
symmetric RTP and the media timeout work over real sockets."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from opencomms.media.clock import EngineThread
from opencomms.media.engine import Heard, MediaEngine
from opencomms.rtp import (
    PCMA,
    Direction,
    LocalSdp,
    NegotiatedAudio,
    PortAllocator,
    RtpBank,
    RtpConfig,
    RtpSession,
)

CONFIG = RtpConfig(rtcp_interval=0.4, media_timeout=0.6)


@dataclass
class Rig:
    thread: EngineThread
    bank: RtpBank
    a: RtpSession
    b: RtpSession
    media_a: NegotiatedAudio
    media_b: NegotiatedAudio
    local_a: LocalSdp
    local_b: LocalSdp
    heard: list[tuple[float, npt.NDArray[np.int16]]] = field(default_factory=list)
    keys_a: list[str] = field(default_factory=list)
    keys_b: list[str] = field(default_factory=list)
    timeouts: list[str] = field(default_factory=list)

    def play(self, clip: npt.NDArray[np.int16]) -> float:
        started = self.thread.call_result(lambda e: (e.play("caller", "p", [clip]), time.monotonic())[1])
        return started.result(timeout=1)

    def listener_signal(self, since: float = 0.0) -> npt.NDArray[np.float64]:
        frames = [f for t, f in list(self.heard) if t >= since]
        return np.concatenate(frames).astype(np.float64) if frames else np.zeros(0)


@asynccontextmanager
async def rig(
    ports: tuple[int, int],
    *,
    adjust: Callable[[NegotiatedAudio, NegotiatedAudio], tuple[NegotiatedAudio, NegotiatedAudio]] | None = None,
) -> AsyncIterator[Rig]:
    engine = MediaEngine(16)
    with EngineThread(engine) as thread:
        bank = RtpBank(thread, capacity=8)
        alloc = PortAllocator(*ports)
        for leg, mix in (("caller", "m1"), ("sipA", "m1"), ("sipB", "m2"), ("listener", "m2")):
            thread.call(lambda e, leg=leg, mix=mix: (e.add_leg(leg), e.join(leg, mix)))
        timeouts: list[str] = []
        keys_a: list[str] = []
        keys_b: list[str] = []
        a = RtpSession(
            "sipA",
            bank,
            alloc,
            "127.0.0.1",
            config=CONFIG,
            on_dtmf=keys_a.append,
            on_timeout=lambda: timeouts.append("a"),
        )
        b = RtpSession(
            "sipB",
            bank,
            alloc,
            "127.0.0.1",
            config=CONFIG,
            on_dtmf=keys_b.append,
            on_timeout=lambda: timeouts.append("b"),
        )
        local_a = LocalSdp("127.0.0.1", await a.open())
        local_b = LocalSdp("127.0.0.1", await b.open())
        reply = local_b.answer(local_a.offer())
        media_a, media_b = local_a.accept_answer(reply.sdp), reply.media
        if adjust is not None:
            media_a, media_b = adjust(media_a, media_b)
        state = Rig(thread, bank, a, b, media_a, media_b, local_a, local_b, keys_a=keys_a, keys_b=keys_b)
        state.timeouts = timeouts
        thread.call_result(
            lambda e: e.subscribe(Heard("listener", lambda _leg, frame, now: state.heard.append((now, frame.copy()))))
        ).result(timeout=1)
        await a.start(media_a)
        await b.start(media_b)
        try:
            yield state
        finally:
            await a.close()
            await b.close()
            assert alloc.in_use == 0


def speechlike(seconds: float, seed: int = 1) -> npt.NDArray[np.int16]:
    """Harmonic syllables with pauses, band-limited below 3.4 kHz (what survives a phone line)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000.0
    f0 = 140.0 + 40.0 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000.0
    x = sum(np.sin(k * phase + rng.uniform(0, 6)) / k for k in range(1, 20) if k * 180 < 3300)
    envelope = 0.2 + 0.8 * (np.sin(2 * np.pi * 2.5 * t) > -0.2)
    return np.clip(x * envelope * 4000, -32768, 32767).astype(np.int16)


def best_alignment(heard: npt.NDArray[np.float64], source: npt.NDArray[np.int16]) -> tuple[int, float]:
    """Lag (samples) and normalised correlation of `source` inside `heard`."""
    src = source.astype(np.float64)
    n = heard.size + src.size
    size = 1 << (n - 1).bit_length()
    xc = np.fft.irfft(np.fft.rfft(heard, size) * np.conj(np.fft.rfft(src, size)), size)[: heard.size - src.size + 1]
    lag = int(np.argmax(xc))
    seg = heard[lag : lag + src.size]
    return lag, float(np.dot(seg, src) / (np.linalg.norm(seg) * np.linalg.norm(src) + 1e-9))


def diagnose(r: Rig, corr: float) -> str:
    jb = r.b.stream.jb
    counters = {k: getattr(jb, k) for k in ("received", "lost", "late", "jumps", "latency_dropped", "underflows")}
    return f"corr {corr:.3f}; engine {r.thread.stats()}; B jitter buffer {counters}, target {jb.target_ms:.0f} ms"


async def wait_for(predicate: Callable[[], object], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_prompt_crosses_the_rtp_bridge_and_dtmf_both_ways() -> None:
    async with rig((42000, 42100)) as r:
        prompt = speechlike(1.2)
        started = r.play(prompt)
        await asyncio.sleep(1.45)
        heard = r.listener_signal(since=started - 0.02)
        lag, corr = best_alignment(heard, prompt)
        assert corr > 0.98, diagnose(r, corr)
        latency_ms = lag / 16.0
        assert 60 <= latency_ms <= 160, latency_ms  # 3-4 ticks of engine and jitter buffer + filters
        assert r.a.send_dtmf("19#")
        assert r.b.send_dtmf("*")
        await wait_for(lambda: r.keys_b == ["1", "9", "#"] and r.keys_a == ["*"])
        qa, qb = r.a.quality(), r.b.quality()
        assert qa.packets_sent >= 70 and qb.packets_received >= 70
        assert qa.packets_lost == qb.packets_lost == 0 and qb.jitter_ms < 5
        assert r.thread.engine.stats.tap_errors == 0
        assert r.thread.stats()["command_errors"] == 0


async def test_five_percent_loss_keeps_audio_going_and_shows_in_rtcp() -> None:
    loop = asyncio.get_running_loop()
    forwarded = {"a_to_b": 0, "dropped": 0}

    class Relay(asyncio.DatagramProtocol):
        def __init__(self) -> None:
            self.transport: asyncio.DatagramTransport | None = None
            self.peer_side: Relay | None = None
            self.target: tuple[str, int] | None = None
            self.drop_every = 0

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # type: ignore[assignment]  # a selector transport is not a subclass

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            other = self.peer_side
            assert other is not None and other.transport is not None and other.target is not None
            if self.drop_every:
                forwarded["a_to_b"] += 1
                if forwarded["a_to_b"] % self.drop_every == 10 % self.drop_every:
                    forwarded["dropped"] += 1
                    return
            other.transport.sendto(data, other.target)

    side_a_t, side_a = await loop.create_datagram_endpoint(Relay, local_addr=("127.0.0.1", 0))
    side_b_t, side_b = await loop.create_datagram_endpoint(Relay, local_addr=("127.0.0.1", 0))
    side_a.peer_side, side_b.peer_side = side_b, side_a
    side_a.drop_every = 20  # what A sends (arriving at the side facing A) loses every 20th packet
    relay_a_addr, relay_b_addr = side_a_t.get_extra_info("sockname"), side_b_t.get_extra_info("sockname")

    def through_relay(ma: NegotiatedAudio, mb: NegotiatedAudio) -> tuple[NegotiatedAudio, NegotiatedAudio]:
        side_a.target, side_b.target = mb.remote_rtp, ma.remote_rtp  # A's real address, B's real address
        return dataclasses.replace(ma, remote_rtp=relay_a_addr), dataclasses.replace(mb, remote_rtp=relay_b_addr)

    try:
        async with rig((42100, 42200), adjust=through_relay) as r:
            prompt = speechlike(2.0, seed=2)
            started = r.play(prompt)
            await asyncio.sleep(2.3)
            heard = r.listener_signal(since=started - 0.02)
            lag, corr = best_alignment(heard, prompt)
            assert corr > 0.8, corr  # concealed frames are approximations
            seg = heard[lag : lag + prompt.size]
            frames = seg[: seg.size // 320 * 320].reshape(-1, 320)
            src = prompt[: frames.size].reshape(-1, 320).astype(np.float64)
            loud = np.sqrt((src**2).mean(axis=1)) > 1000
            got = np.sqrt((frames**2).mean(axis=1))
            assert np.mean(got[loud] > 300) > 0.97  # the audio continued through the losses
            await wait_for(lambda: (r.a.quality().remote_packets_lost or 0) >= 4, timeout=2.0)
            qa, qb = r.a.quality(), r.b.quality()
            assert forwarded["dropped"] >= 5
            assert abs(qb.packets_lost - forwarded["dropped"]) <= 1  # the last drop may not be detected yet
            assert 3.0 <= qb.loss_percent <= 7.0, qb
            assert qb.concealed_frames >= forwarded["dropped"] - 1
            assert qa.remote_packets_lost is not None and qa.remote_packets_lost >= 4  # B's RR told A
            assert qa.rtt_ms is not None and qa.rtt_ms < 50
            assert qa.packets_lost == 0  # B -> A was not degraded
    finally:
        side_a_t.close()
        side_b_t.close()


async def test_symmetric_rtp_learns_the_real_source() -> None:
    def wrong_address(ma: NegotiatedAudio, mb: NegotiatedAudio) -> tuple[NegotiatedAudio, NegotiatedAudio]:
        return dataclasses.replace(ma, remote_rtp=("127.0.0.1", 9)), mb  # A was told a dead port (NAT)

    async with rig((42200, 42300), adjust=wrong_address) as r:
        started = r.play(speechlike(0.6, seed=3))
        await asyncio.sleep(0.9)
        assert r.b.quality().packets_received > 20  # A latched on B's packets and answers to their source
        assert np.abs(r.listener_signal(since=started)).max() > 1000


async def test_hold_codec_change_and_media_timeout() -> None:
    async with rig((42300, 42400)) as r:
        # A puts B on hold: A sends, B only receives.
        hold = r.local_b.answer(r.local_a.offer(Direction.SENDONLY))
        r.b.update(hold.media)
        r.a.update(r.local_a.accept_answer(hold.sdp))
        assert hold.media.direction is Direction.RECVONLY
        await asyncio.sleep(0.15)
        before = r.b.quality().packets_sent
        received_a = r.a.quality().packets_received
        await asyncio.sleep(0.8)  # longer than the media timeout: A is not expecting audio, so no timeout
        assert r.b.quality().packets_sent == before and r.a.quality().packets_received == received_a
        assert r.a.quality().packets_sent > 0 and r.timeouts == []
        # Resume with PCMA only.
        r.local_a.codecs = (PCMA,)
        resume = r.local_b.answer(r.local_a.offer())
        assert resume.media.codec == PCMA and resume.sdp.origin.version == r.local_b.version
        r.b.update(resume.media)
        r.a.update(r.local_a.accept_answer(resume.sdp))
        started = r.play(speechlike(0.8, seed=4))
        await asyncio.sleep(1.0)
        _, corr = best_alignment(r.listener_signal(since=started - 0.02), speechlike(0.8, seed=4))
        assert corr > 0.97 and r.b.quality().packets_sent > before
        # B goes away without a BYE: A times out once.
        await r.b.close()
        await wait_for(lambda: r.timeouts == ["a"], timeout=2.0)
        await asyncio.sleep(0.3)
        assert r.timeouts == ["a"]
