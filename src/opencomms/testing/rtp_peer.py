"""A phone's RTP endpoint for tests: a UDP port pair on loopback sending G.711 every 20 ms, RFC 4733 both ways.

Owns the sockets, the 20 ms send schedule (absolute, catching up after a late wake-up), sequence numbers and
timestamps, the outgoing audio queue (8 kHz samples, silence when empty), RFC 4733 key presses (audio is muted
while an event is sent, as a keypad does) and decoding what arrives (lost packets become silence, duplicates and
late packets are dropped). Must not analyse audio (listen.py) or speak SIP (caller.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from opencomms.media.dtmf.rfc4733 import (
    TelephoneEventError,
    TelephoneEventReceiver,
    TelephoneEventSender,
    TelephoneEventStarted,
)
from opencomms.media.dtmf.tones import normalize_key
from opencomms.media.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from opencomms.media.g722 import G722Decoder, G722Encoder
from opencomms.media.resample import Resampler, resample
from opencomms.rtp.offer_answer import NegotiatedAudio
from opencomms.rtp.packet import RtpError, pack_header, parse_header

__all__ = ["RATE", "SAMPLES", "RtpPeer", "RtpPeerStats"]

log = logging.getLogger("opencomms.testing")

RATE = 8000
"""G.711 sample rate."""
PTIME = 0.02
SAMPLES = 160
"""Samples in one 20 ms packet."""
_MAX_GAP = 50  # jumps up to this many packets are loss (audio: filled with silence); beyond, the stream restarted
_MAX_CATCH_UP = 10  # packets sent at once after a late wake-up; further behind, the schedule restarts

Samples = npt.NDArray[np.int16]


@dataclass
class RtpPeerStats:
    """Counters of one RtpPeer."""

    packets_sent: int = 0
    packets_received: int = 0
    packets_lost: int = 0
    packets_dropped: int = 0
    """Duplicates, late, invalid or of an unknown payload type."""
    events_sent: int = 0
    rtcp_received: int = 0


@dataclass(eq=False)
class _Queued:
    samples: Samples
    done: asyncio.Future[None]
    position: int = 0


@dataclass(eq=False)
class _Keys:
    keys: str
    duration_ms: float
    gap_ms: float
    done: asyncio.Future[None]


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes], None]) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a selector transport is not a subclass

    def datagram_received(self, data: bytes, addr: tuple[str | bytes, int]) -> None:
        self.on_datagram(data)

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable once the node has gone: not our problem
        log.debug("RTP socket error: %s", exc)


def _bind_pair(host: str, attempts: int = 50) -> tuple[socket.socket, socket.socket]:
    """An even RTP port and RTCP on the next one, both chosen by the kernel's ephemeral range."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(attempts):
        rtp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            rtp.bind((host, 0))
            port = rtp.getsockname()[1]
            if port % 2 == 0 and port < 65535:
                rtcp = socket.socket(family, socket.SOCK_DGRAM)
                try:
                    rtcp.bind((host, port + 1))
                    return rtp, rtcp
                except OSError:
                    rtcp.close()
        except OSError:
            pass
        rtp.close()
    raise OSError(f"no free RTP/RTCP port pair on {host}")


class RtpPeer:
    """One call's RTP as a phone does it. `await open()` binds (put `port` in the SDP), `start(media)` begins
    sending every 20 ms to the negotiated address, `await close()` stops everything (idempotent).

    Received audio is handed to `on_audio` as 8 kHz int16 arrays in stream order (lost packets as silence); when
    G.722 is negotiated it goes at 16 kHz to `on_wide_audio` instead, if given (else narrowed for `on_audio`);
    the first report of each received RFC 4733 event calls `on_key(key)`. Both run on the event loop."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        *,
        on_audio: Callable[[Samples], None] | None = None,
        on_key: Callable[[str], None] | None = None,
        on_wide_audio: Callable[[Samples], None] | None = None,
    ) -> None:
        self.host = host
        self.on_audio = on_audio
        self.on_wide_audio = on_wide_audio
        self._g722: tuple[G722Encoder, G722Decoder, Resampler] | None = None
        self.on_key = on_key
        self.stats = RtpPeerStats()
        self.media: NegotiatedAudio | None = None
        self._rtp: _Socket | None = None
        self._rtcp: _Socket | None = None
        self._port = 0
        self._task: asyncio.Task[None] | None = None
        self._ssrc = secrets.randbits(32)
        self._seq = secrets.randbits(16)
        self._ts = secrets.randbits(32)
        self._first = True
        self._audio: deque[_Queued] = deque()
        self._keys: deque[_Keys] = deque()
        self._current: _Keys | None = None
        self._key_index = 0
        self._next_key_at = 0.0
        self._sender = TelephoneEventSender(RATE, ptime_ms=20)
        self._receiver = TelephoneEventReceiver(RATE)
        self._last_seq: int | None = None
        self._last_ssrc: int | None = None
        self._next_ts: int | None = None
        self._closed = False

    # -- lifecycle

    @property
    def port(self) -> int:
        """The RTP port (RTCP is + 1); valid after `open()`."""
        if not self._port:
            raise RuntimeError("the RTP peer is not open")
        return self._port

    async def open(self) -> int:
        loop = asyncio.get_running_loop()
        rtp_sock, rtcp_sock = _bind_pair(self.host)
        self._port = rtp_sock.getsockname()[1]
        _, self._rtp = await loop.create_datagram_endpoint(lambda: _Socket(self._on_rtp), sock=rtp_sock)
        _, self._rtcp = await loop.create_datagram_endpoint(lambda: _Socket(self._on_rtcp), sock=rtcp_sock)
        return self._port

    def start(self, media: NegotiatedAudio) -> None:
        """Begin sending and accepting media as negotiated."""
        if self._task is not None or self._closed:
            raise RuntimeError("start() is called once, before close()")
        self.media = media
        self._task = asyncio.get_running_loop().create_task(self._run(), name="virtual-caller-rtp")

    def update(self, media: NegotiatedAudio) -> None:
        """A new negotiation (re-INVITE): address, codec, direction."""
        self.media = media

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for sock in (self._rtp, self._rtcp):
            if sock is not None and sock.transport is not None:
                sock.transport.close()
        futures = [q.done for q in self._audio] + [k.done for k in self._keys]
        if self._current is not None:
            futures.append(self._current.done)
        for future in futures:  # the call ended: nothing is left to send, so waiting on it is over
            if not future.done():
                future.set_result(None)
        self._audio.clear()
        self._keys.clear()

    # -- what to send

    @property
    def wideband(self) -> bool:
        """G.722 is negotiated: audio goes 16 kHz both ways."""
        return self.media is not None and self.media.codec.name == "G722"

    def queue_audio(self, samples: Samples, *, rate: int = RATE) -> asyncio.Future[None]:
        """Send `samples` (int16 at `rate`: 8000 or 16000, converted to the codec's rate now) after what is
        already queued; the future resolves once the last one left (or the peer closed: a call that ends while a
        caller speaks or presses keys is not an error)."""
        wanted = 16000 if self.wideband else RATE
        if rate != wanted and samples.size:
            samples = resample(np.ascontiguousarray(samples, dtype=np.int16), rate, wanted)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._closed or samples.size == 0:
            done.set_result(None)
        else:
            self._audio.append(_Queued(np.ascontiguousarray(samples, dtype=np.int16), done))
        return done

    def queue_keys(self, keys: str, duration_ms: float = 100.0, gap_ms: float = 70.0) -> asyncio.Future[None]:
        """Send `keys` as RFC 4733 events (each `duration_ms`, `gap_ms` apart); resolves after the last end report.
        Raises ValueError if the peer did not negotiate telephone-event or a key is not a DTMF key."""
        media = self.media
        if media is None or media.telephone_event is None:
            raise ValueError("the far end did not negotiate telephone-event (RFC 4733); press in-band instead")
        keys = "".join(normalize_key(k) for k in keys)
        if duration_ms <= 0 or gap_ms < 0:
            raise ValueError("duration must be positive and the gap not negative")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._closed or not keys:
            done.set_result(None)
        else:
            self._keys.append(_Keys(keys, duration_ms, gap_ms, done))
        return done

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        start, tick = loop.time(), 0
        while True:
            due = start + tick * PTIME
            late = loop.time() - due
            if late < 0:
                await asyncio.sleep(-late)
            elif late > _MAX_CATCH_UP * PTIME:
                start = loop.time() - tick * PTIME  # far behind (a paused loop): do not burst
            try:
                self._tick(tick * PTIME)
            except Exception:
                log.exception("virtual caller RTP tick failed")
            tick += 1

    def _tick(self, now: float) -> None:
        media = self.media
        if media is None or not media.direction.sends or media.remote_rtp is None:
            self._ts = (self._ts + SAMPLES) & 0xFFFFFFFF
            return
        if self._sending_keys(now, media):
            pass
        else:
            codes = self._encode(self._next_audio(), media)
            self._send(media.codec.payload_type, self._first, self._ts, codes, media.remote_rtp)
            self._first = False
        self._ts = (self._ts + SAMPLES) & 0xFFFFFFFF

    def _sending_keys(self, now: float, media: NegotiatedAudio) -> bool:
        """Start, continue or finish RFC 4733 events; True while an event is on (audio is muted then)."""
        if not self._sender.busy:
            if self._current is None and self._keys:
                self._current, self._key_index = self._keys.popleft(), 0
                self._next_key_at = now
            current = self._current
            if current is None or now + 1e-9 < self._next_key_at:
                return False
            self._sender.start(current.keys[self._key_index], self._ts, now, current.duration_ms)
        assert media.telephone_event is not None and media.remote_rtp is not None
        for packet in self._sender.poll(now):
            self._send(media.telephone_event, packet.marker, packet.timestamp, bytes(packet.payload), media.remote_rtp)
        if not self._sender.busy:
            current = self._current
            assert current is not None
            self.stats.events_sent += 1
            self._key_index += 1
            self._next_key_at = now + PTIME + current.gap_ms / 1000.0
            if self._key_index >= len(current.keys):
                self._current = None
                if not current.done.done():
                    current.done.set_result(None)
        return True

    def _next_audio(self) -> Samples:
        count = 2 * SAMPLES if self.wideband else SAMPLES
        out = np.zeros(count, dtype=np.int16)
        filled = 0
        while filled < count and self._audio:
            item = self._audio[0]
            take = min(count - filled, item.samples.size - item.position)
            out[filled : filled + take] = item.samples[item.position : item.position + take]
            item.position += take
            filled += take
            if item.position >= item.samples.size:
                self._audio.popleft()
                if not item.done.done():
                    item.done.set_result(None)
        return out

    def _encode(self, samples: Samples, media: NegotiatedAudio) -> bytes:
        if media.codec.name == "G722":
            return self._coders()[0].encode(samples)
        codes = alaw_encode(samples) if media.codec.name == "PCMA" else ulaw_encode(samples)
        return codes.tobytes()

    def _coders(self) -> tuple[G722Encoder, G722Decoder, Resampler]:
        if self._g722 is None:
            self._g722 = (G722Encoder(), G722Decoder(), Resampler(16000, RATE))
        return self._g722

    def _send(self, pt: int, marker: bool, timestamp: int, payload: bytes, dest: tuple[str, int]) -> None:
        sock = self._rtp
        if sock is None or sock.transport is None or sock.transport.is_closing():
            return
        sock.transport.sendto(pack_header(pt, marker, self._seq, timestamp, self._ssrc) + payload, dest)
        self._seq = (self._seq + 1) & 0xFFFF
        self.stats.packets_sent += 1

    # -- what arrives

    def _on_rtcp(self, data: bytes) -> None:
        self.stats.rtcp_received += 1

    def _on_rtp(self, data: bytes) -> None:
        media = self.media
        if media is None or self._closed or not media.direction.receives:
            self.stats.packets_dropped += 1
            return
        try:
            pt, _marker, seq, ts, ssrc, start, end = parse_header(data)
        except RtpError:
            self.stats.packets_dropped += 1
            return
        kind = media.receive_payload_types.get(pt)
        if kind not in ("PCMU", "PCMA", "G722", "telephone-event"):
            self.stats.packets_dropped += 1
            return
        if self._last_seq is not None and ssrc == self._last_ssrc:
            delta = (seq - self._last_seq) & 0xFFFF
            if delta == 0 or delta > 0x8000:
                self.stats.packets_dropped += 1  # duplicate or late: its time has passed
                return
            if delta <= _MAX_GAP:
                self.stats.packets_lost += delta - 1
        elif ssrc != self._last_ssrc:
            self._next_ts = None  # a new stream
        self._last_seq, self._last_ssrc = seq, ssrc
        self.stats.packets_received += 1
        payload = data[start:end]
        if kind == "telephone-event":
            self._event(payload, ts)
            return
        per_tick = 2 if kind == "G722" else 1  # samples per RTP clock unit (G.722: 16 kHz audio, 8000 clock)
        if kind == "G722":
            samples = self._coders()[1].decode(payload)
        else:
            samples = alaw_decode(payload) if kind == "PCMA" else ulaw_decode(payload)
        gap = 0 if self._next_ts is None else (ts - self._next_ts) & 0xFFFFFFFF
        if gap > _MAX_GAP * SAMPLES:
            gap = 0  # a jump (or a step back): start over from here
        self._next_ts = (ts + samples.size // per_tick) & 0xFFFFFFFF
        if gap:  # lost packets, or a telephone event during which no audio was sent: silence
            samples = np.concatenate([np.zeros(gap * per_tick, dtype=np.int16), samples])
        if kind == "G722":
            if self.on_wide_audio is not None:
                self.on_wide_audio(samples)
                return
            samples = self._coders()[2].process(samples)
        if self.on_audio is not None:
            self.on_audio(samples)

    def _event(self, payload: bytes, timestamp: int) -> None:
        try:
            received = self._receiver.receive(payload, timestamp, asyncio.get_running_loop().time())
        except TelephoneEventError:
            self.stats.packets_dropped += 1
            return
        for item in received:
            if isinstance(item, TelephoneEventStarted) and self.on_key is not None:
                self.on_key(item.key)
