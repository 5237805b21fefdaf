"""RtpSession: one call's audio between a SIP peer and one media-engine leg, as the event loop sees it.

Owns the session's lifecycle (ports from ports.py, attach to and detach from the RtpBank, closing the sockets
only once the engine thread is done with them), the hand-off of engine-thread events to the loop (`on_dtmf`, for
observers only: the bank gives every RFC 4733 key to the engine, which reports it to the bot in the same tick),
media-timeout detection (`on_timeout`) and the CallQuality summary. Must not read or send packets: the bank does
all socket I/O on the engine thread (see bank.py for why), reached only through its command methods.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol

from ..media.dtmf.tones import normalize_key
from .offer_answer import NegotiatedAudio
from .ports import PortAllocator, PortPair
from .stats import CallQuality
from .stream import RtpConfig, Stream, StreamParams

__all__ = ["RtpConfig", "RtpSession", "StreamBank"]

log = logging.getLogger("opencomms.rtp")


class StreamBank(Protocol):
    """Where a session's stream runs: the RtpBank on the engine thread, or the media process's (mediahost)."""

    @property
    def streams(self) -> int: ...

    def attach(self, stream: Stream) -> Future[None]: ...

    def detach(self, stream: Stream, *, bye: bool = True) -> Future[Any]: ...

    def update(self, stream: Stream, params: StreamParams) -> None: ...

    def send_dtmf(self, stream: Stream, key: str, duration_ms: float, gap_ms: float) -> None: ...

    def stats(self) -> dict[str, Any]: ...


class RtpSession:
    """One call's RTP, bound to media-engine leg `leg_id` through `bank`.

    Lifecycle: `await open()` binds the port pair (put `local_port` in the SDP), `await start(media)` with the
    negotiated stream attaches the leg (the leg must already be in the engine), `update(media)` applies a
    re-INVITE (new address, codec, hold), `await close()` ends it (idempotent: RTCP BYE, detach, sockets closed,
    ports released). `quality()` works at any time, also after close.

    Callbacks run on the event loop: `on_dtmf(key)` once per RFC 4733 event as its first report arrives (keys
    '0'-'9', '*', '#', 'A'-'D', '!' for hook flash; the engine already has them, see RtpBank); `on_timeout()`
    once when no RTP arrived for `config.media_timeout` seconds while the peer should be sending (the gateway
    then ends the call); it re-arms when media flows again; `on_error(step)` once if the bank dropped the stream
    after an error of its own ("send", "receive", "play", "rtcp": the call has no working media any more, the
    gateway ends it).
    """

    def __init__(
        self,
        leg_id: str,
        bank: StreamBank,
        ports: PortAllocator,
        local_ip: str,
        *,
        config: RtpConfig | None = None,
        on_dtmf: Callable[[str], None] | None = None,
        on_timeout: Callable[[], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        cname: str | None = None,
    ) -> None:
        self.leg_id = leg_id
        self.bank = bank
        self.ports = ports
        self.local_ip = local_ip
        self.config = config or RtpConfig()
        self.on_dtmf = on_dtmf
        self.on_timeout = on_timeout
        self.on_error = on_error
        self._cname = cname
        self._pair: PortPair | None = None
        self._stream: Stream | None = None
        self._media: NegotiatedAudio | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._attached = False
        self._attaching: asyncio.Future[None] | None = None
        self._closed = False
        self._timer: asyncio.TimerHandle | None = None
        self._since = 0.0
        self._timed_out = False

    # -- lifecycle -------------------------------------------------------------------------------------------------

    @property
    def local_port(self) -> int:
        """The RTP port (RTCP is + 1); valid after `open()`."""
        if self._pair is None:
            raise RuntimeError("the session is not open")
        return self._pair.port

    @property
    def stream(self) -> Stream:
        """The engine-side stream (counters and addresses; read-only from this thread)."""
        if self._stream is None:
            raise RuntimeError("the session is not open")
        return self._stream

    @property
    def media(self) -> NegotiatedAudio | None:
        """The negotiation in force."""
        return self._media

    async def open(self) -> int:
        """Bind the RTP/RTCP sockets on `local_ip`; returns the RTP port."""
        if self._pair is not None or self._closed:
            raise RuntimeError("open() is called once, before close()")
        self._loop = asyncio.get_running_loop()
        pair = self._pair = self.ports.allocate(self.local_ip)
        self._stream = Stream(self.leg_id, pair.rtp, pair.rtcp, self.config, cname=self._cname, on_key=self._key)
        self._stream.on_fault = self._fault
        return pair.port

    async def start(self, media: NegotiatedAudio) -> None:
        """Begin sending and receiving as negotiated; raises KeyError if the engine has no leg `leg_id`."""
        stream = self._stream
        if stream is None or self._attached or self._closed:
            raise RuntimeError("start() needs an open session, once")
        self._media = media
        stream.apply(StreamParams.from_media(media))  # not attached yet: this thread may still set it up
        attaching = self._attaching = asyncio.wrap_future(self.bank.attach(stream))
        await attaching
        if self._closed:  # closed while the engine attached it: close() detaches it
            return
        self._attached = True
        self._since = time.monotonic()
        self._schedule()

    def update(self, media: NegotiatedAudio) -> None:
        """Apply a new negotiation (re-INVITE): remote address, codec, telephone-event, direction (hold)."""
        stream = self._stream
        if stream is None or not self._attached or self._closed:
            raise RuntimeError("update() needs a started session")
        self._media = media
        self.bank.update(stream, StreamParams.from_media(media))
        self._since = time.monotonic()
        self._timed_out = False

    def send_dtmf(self, keys: str, duration_ms: float = 100.0, gap_ms: float = 70.0) -> bool:
        """Send keys as RFC 4733 events if the peer negotiated telephone-event (True); False when it did not, and
        the caller must play them in-band instead (engine.send_tones on the leg the peer hears)."""
        stream, media = self._stream, self._media
        if stream is None or media is None or media.telephone_event is None or self._closed:
            return False
        for key in keys:
            self.bank.send_dtmf(stream, normalize_key(key), duration_ms, gap_ms)
        return True

    async def close(self) -> None:
        """Stop everything and release the ports (idempotent). The ports go back whatever happens on the way: a
        detach that fails or times out, or the calling task being cancelled."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            await self._detach()
        finally:
            pair = self._pair
            if pair is not None:
                try:
                    pair.close()
                finally:
                    self.ports.release(pair.port)

    async def _detach(self) -> None:
        stream, attaching = self._stream, self._attaching
        if attaching is not None and not attaching.done():  # a call ended while its media was starting: the engine
            await asyncio.wait({attaching}, timeout=2.0)  # must not keep (or set up) the stream of closed sockets
        attached = self._attached or (
            attaching is not None and attaching.done() and not attaching.cancelled() and attaching.exception() is None
        )
        if attached and stream is not None:
            try:  # once detached, the engine thread no longer touches our sockets: safe to close them
                await asyncio.wait_for(asyncio.wrap_future(self.bank.detach(stream)), 2.0)
            except (TimeoutError, RuntimeError):
                log.warning("RTP stream detach did not complete", extra={"call_id": self.leg_id})
            except Exception:  # the bank frees the row in any case; the sockets are closed next
                log.warning("RTP stream detach failed", extra={"call_id": self.leg_id}, exc_info=True)

    async def __aenter__(self) -> RtpSession:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def quality(self) -> CallQuality:
        """The call's figures so far (also after close)."""
        if self._stream is None:
            return CallQuality(0, 0, 0, 0.0, 0.0, None)
        return self._stream.quality()

    # -- engine-thread events and the media timeout (event loop) ------------------------------------------------------

    def _key(self, key: str) -> None:  # engine thread
        loop = self._loop
        if self.on_dtmf is not None and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._deliver_key, key)

    def _fault(self, step: str) -> None:  # engine thread
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._deliver_fault, step)

    def _deliver_fault(self, step: str) -> None:
        if self.on_error is not None and not self._closed:
            try:
                self.on_error(step)
            except Exception:
                log.exception("on_error callback failed", extra={"call_id": self.leg_id})

    def _deliver_key(self, key: str) -> None:
        if self.on_dtmf is not None and not self._closed:
            try:
                self.on_dtmf(key)
            except Exception:
                log.exception("on_dtmf callback failed", extra={"call_id": self.leg_id})

    def _schedule(self) -> None:
        assert self._loop is not None
        self._timer = self._loop.call_later(self.config.housekeeping, self._housekeep)

    def _housekeep(self) -> None:
        if self._closed:
            return
        self._check_timeout(time.monotonic())
        self._schedule()

    def _check_timeout(self, now: float) -> None:
        media, stream = self._media, self._stream
        if media is None or stream is None:
            return
        peer_sends = media.direction.receives and media.remote_rtp is not None
        limit = self.config.media_timeout if peer_sends else self.config.hold_timeout
        last = max(stream.last_rtp, self._since)
        if not peer_sends:
            last = max(last, stream.last_rtcp)
        if self._timed_out:
            if stream.last_rtp > self._since and now - stream.last_rtp < self.config.housekeeping * 2:
                self._timed_out = False  # media flows again: re-arm
            return
        if limit is None or math.isinf(limit):
            return
        if now - last >= limit:
            self._timed_out = True
            if self.on_timeout is not None:
                try:
                    self.on_timeout()
                except Exception:
                    log.exception("on_timeout callback failed", extra={"call_id": self.leg_id})
