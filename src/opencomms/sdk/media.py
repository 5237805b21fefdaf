"""Application-hosted media for bots: raw 20 ms audio frames of a call over a WebSocket that the bot serves.

`LocalMediaSession` serves the endpoint (aiohttp, loopback by default) and makes the appHostedMediaConfig a bot
passes to answer or create_call: `session.media_config(call_key)`. Once the call is established the node
connects, proves it holds that call's secret, and `await session.audio_socket(call_key)` returns the call's
`AudioSocket`: iterate it for `AudioFrame`s (what the bot's leg hears, mixed, plus each other participant unmixed
with its mediaStream sourceId), `await send(pcm)` what the bot says (paced by the bot, 50 frames/s), and read DTMF
and dominant-speaker events from `events()`. A dropped connection is reconnected by the node; the socket object
survives that. Frames are 640 bytes: 320 samples, 16 kHz, mono, signed 16-bit little-endian.

Blob and protocol: opencomms.wire.apphosted. Importable without the server, numpy or uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import secrets
import ssl
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import aiohttp
from aiohttp import web

from opencomms.sdk.errors import SdkError
from opencomms.wire.apphosted import (
    APP_HOSTED_TYPE,
    FRAME_BYTES,
    UNAUTHORIZED_CLOSE,
    BlobError,
    FrameError,
    MediaBlob,
    check_ws_url,
    decode_audio,
    decode_control,
    encode_audio,
    encode_control,
    parse_blob,
)

__all__ = [
    "FRAME_BYTES",
    "AudioFrame",
    "AudioSocket",
    "AudioSocketStats",
    "DominantSpeakerChanged",
    "DtmfReceived",
    "LocalMediaSession",
    "MediaClosed",
    "MediaConfigError",
    "MediaEvent",
    "UnmixedAudio",
]

MAX_MESSAGE_BYTES = 64 * 1024


class MediaConfigError(SdkError, ValueError):
    """`media_config` cannot make a valid blob (e.g. the session's URL is not a ws:// or wss:// URL)."""


class MediaClosed(SdkError):
    """The AudioSocket was closed (by the bot, by the node's `bye`, or the node did not come back after a drop)."""


class UnmixedAudio(NamedTuple):
    """One other participant's own audio in a frame: its mediaStream sourceId (as in the roster) and 640 bytes."""

    source_id: str
    pcm: bytes


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """20 ms the bot's leg hears. `pcm` is the mix of everyone else; `unmixed` each other participant alone (at most
    four, the loudest). `timestamp` is in 100 ns ticks of the node's clock (+200 000 per frame); `sequence` counts
    the node's frames. `source_id` is None for the mix (kept for the shape of Microsoft's unmixed buffers)."""

    pcm: bytes
    timestamp: int
    sequence: int
    unmixed: tuple[UnmixedAudio, ...] = ()
    source_id: str | None = None


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    """A DTMF key heard on the bot's leg: `key` '0'-'9', '*', '#', 'A'-'D'; `tone` as Graph's toneInfo.tone."""

    key: str
    tone: str
    timestamp: int


@dataclass(frozen=True, slots=True)
class DominantSpeakerChanged:
    """The participant speaking now (sourceId), or None when nobody is; `history` newest first."""

    source_id: str | None
    history: tuple[str, ...]


MediaEvent = DtmfReceived | DominantSpeakerChanged


@dataclass
class AudioSocketStats:
    """Counters of one AudioSocket."""

    frames_received: int = 0
    frames_sent: int = 0
    frames_dropped: int = 0
    """Received frames discarded because the bot did not read them fast enough (the oldest go)."""
    sends_dropped: int = 0
    """Frames passed to send() while the node was not connected (during a reconnection)."""
    bad_messages: int = 0
    connections: int = 0


class AudioSocket:
    """One call's application-hosted audio. Made by LocalMediaSession; see the module docstring."""

    def __init__(self, call_key: str, *, queue_frames: int = 50, reconnect_grace: float = 15.0) -> None:
        self.call_key = call_key
        self.call_id: str | None = None
        """The node's call id (from the node's hello)."""
        self.source_id: str | None = None
        """The bot's own mediaStream sourceId in this call."""
        self.dominant_speaker: str | None = None
        self.stats = AudioSocketStats()
        self._frames: deque[AudioFrame] = deque(maxlen=queue_frames)
        self._events: deque[MediaEvent] = deque(maxlen=256)
        self._frame_ready = asyncio.Event()
        self._event_ready = asyncio.Event()
        self._connected = asyncio.Event()
        self._ws: web.WebSocketResponse | None = None
        self._closed = False
        self._sequence = 0
        self._grace = reconnect_grace
        self._expiry: asyncio.TimerHandle | None = None
        self._on_close: list[Callable[[AudioSocket], None]] = []

    @property
    def connected(self) -> bool:
        """The node is connected now."""
        return self._ws is not None and not self._ws.closed

    @property
    def closed(self) -> bool:
        return self._closed

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Until the node has connected (once); TimeoutError after `timeout` seconds."""
        async with asyncio.timeout(timeout):
            await self._connected.wait()

    # -- receiving ---------------------------------------------------------------------------------------------
    def __aiter__(self) -> AudioSocket:
        return self

    async def __anext__(self) -> AudioFrame:
        try:
            return await self.receive()
        except MediaClosed:
            raise StopAsyncIteration from None

    async def receive(self, timeout: float | None = None) -> AudioFrame:
        """The next frame (oldest first); MediaClosed once closed and drained, TimeoutError after `timeout`."""
        async with asyncio.timeout(timeout):
            while True:
                if self._frames:
                    return self._frames.popleft()
                if self._closed:
                    raise MediaClosed(f"the audio socket of call key {self.call_key!r} is closed")
                self._frame_ready.clear()
                await self._frame_ready.wait()

    async def events(self) -> AsyncIterator[MediaEvent]:
        """DTMF and dominant-speaker events as they come, until the socket closes."""
        while True:
            while self._events:
                yield self._events.popleft()
            if self._closed:
                return
            self._event_ready.clear()
            await self._event_ready.wait()

    # -- sending -----------------------------------------------------------------------------------------------
    async def send(self, pcm: bytes) -> None:
        """Send 20 ms (640 bytes) to the call. The node plays what arrives at 50 frames/s (a queue of 8 frames,
        the oldest dropped): pace sending yourself, e.g. one frame per frame received. While the node is
        reconnecting the frame is dropped (counted in stats.sends_dropped). MediaClosed after close()."""
        if len(pcm) != FRAME_BYTES:
            raise ValueError(f"a frame is {FRAME_BYTES} bytes (20 ms of 16 kHz s16le mono), got {len(pcm)}")
        if self._closed:
            raise MediaClosed(f"the audio socket of call key {self.call_key!r} is closed")
        ws = self._ws
        if ws is None or ws.closed:
            self.stats.sends_dropped += 1
            return
        self._sequence += 1
        try:
            await ws.send_bytes(encode_audio(self._sequence, time.monotonic_ns() // 100, bytes(pcm)))
        except (ConnectionError, RuntimeError):
            self.stats.sends_dropped += 1
            return
        self.stats.frames_sent += 1

    async def close(self) -> None:
        """Tell the node the bot is done with this call's media (no reconnection) and end iteration."""
        ws = self._ws
        self._finish()
        if ws is not None and not ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(encode_control("bye", reason="closed by the bot"))
                await ws.close()

    # -- driven by the session ---------------------------------------------------------------------------------
    def _attach(self, ws: web.WebSocketResponse, hello: dict[str, Any]) -> web.WebSocketResponse | None:
        """A (re)connection from the node; returns the connection it replaces, if any."""
        old, self._ws = self._ws, ws
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        call_id, source_id = hello.get("callId"), hello.get("sourceId")
        self.call_id = call_id if isinstance(call_id, str) else self.call_id
        self.source_id = source_id if isinstance(source_id, str) else self.source_id
        self.stats.connections += 1
        self._connected.set()
        return old if old is not ws else None

    def _detach(self, ws: web.WebSocketResponse, *, bye: bool) -> None:
        if self._ws is not ws:
            return
        self._ws = None
        if bye:
            self._finish()
        elif not self._closed:
            self._expiry = asyncio.get_running_loop().call_later(self._grace, self._finish)

    def _on_audio(self, data: bytes) -> None:
        try:
            message = decode_audio(data)
        except FrameError:
            self.stats.bad_messages += 1
            return
        if len(self._frames) == self._frames.maxlen:
            self.stats.frames_dropped += 1
        self._frames.append(
            AudioFrame(
                pcm=message.pcm,
                timestamp=message.timestamp,
                sequence=message.sequence,
                unmixed=tuple(UnmixedAudio(s, p) for s, p in message.unmixed),
            )
        )
        self.stats.frames_received += 1
        self._frame_ready.set()

    def _on_control(self, doc: dict[str, Any]) -> None:
        kind = doc["type"]
        event: MediaEvent | None = None
        if kind == "dtmf" and isinstance(doc.get("key"), str):
            event = DtmfReceived(doc["key"], str(doc.get("tone", "")), int(doc.get("at") or 0))
        elif kind == "dominantSpeaker":
            current = doc.get("sourceId")
            history = doc.get("history") if isinstance(doc.get("history"), list) else []
            self.dominant_speaker = current if isinstance(current, str) else None
            event = DominantSpeakerChanged(self.dominant_speaker, tuple(str(s) for s in history or ()))
        if event is not None:
            self._events.append(event)
            self._event_ready.set()

    def _finish(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        self._frame_ready.set()
        self._event_ready.set()
        for callback in self._on_close:
            callback(self)


@dataclass(eq=False)
class _Entry:
    secret: str
    socket: AudioSocket


class LocalMediaSession:
    """Serves application-hosted media for a bot: one WebSocket endpoint, one secret and AudioSocket per call key.

    `host`/`port` are where it listens (port 0 picks one). `public_url` is the ws:// or wss:// URL the node must
    use when that differs (NAT, a reverse proxy); `ssl_context` serves wss:// itself. The node only connects to
    private or loopback addresses that its `egress.allow` lists (e.g. "127.0.0.1").
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        public_url: str | None = None,
        path: str = "/media",
        ssl_context: ssl.SSLContext | None = None,
        hello_timeout: float = 5.0,
        reconnect_grace: float = 15.0,
        queue_frames: int = 50,
    ) -> None:
        if public_url is not None:
            try:
                check_ws_url(public_url)
            except ValueError as exc:
                raise MediaConfigError(f"public_url: {exc}") from None
        self.host = host
        self.port = port
        self.path = path
        self._public_url = public_url
        self._ssl = ssl_context
        self._hello_timeout = hello_timeout
        self._grace = reconnect_grace
        self._queue_frames = queue_frames
        self._calls: dict[str, _Entry] = {}
        self._runner: web.AppRunner | None = None
        self._handlers: set[web.WebSocketResponse] = set()
        self.rejected = 0
        """Connections refused: no hello, unknown call key or wrong secret."""

    @property
    def url(self) -> str:
        """The WebSocket URL written into blobs."""
        if self._public_url is not None:
            return self._public_url
        if self._runner is None:
            raise RuntimeError("LocalMediaSession is not started")
        scheme = "wss" if self._ssl is not None else "ws"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}{self.path}"

    async def start(self) -> LocalMediaSession:
        app = web.Application()
        app.router.add_get(self.path, self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self._ssl)
        await site.start()
        server = site._server
        if self.port == 0 and server is not None:
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        """Close every socket and stop listening."""
        for entry in list(self._calls.values()):
            await entry.socket.close()
        self._calls.clear()
        for ws in list(self._handlers):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> LocalMediaSession:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def media_config(self, call_key: str | None = None) -> dict[str, Any]:
        """The appHostedMediaConfig for one call (`call_key`: any 1-128 of A-Z a-z 0-9 . _ -, a new one if None;
        the same key gives the same config). Pass it to answer or create_call."""
        key = call_key if call_key is not None else uuid.uuid4().hex
        entry = self._calls.get(key)
        if entry is None:
            sock = AudioSocket(key, queue_frames=self._queue_frames, reconnect_grace=self._grace)
            entry = _Entry(secrets.token_urlsafe(32), sock)
            entry.socket._on_close.append(self._forget)
            self._calls[key] = entry
        blob = MediaBlob(url=self.url, key=key, secret=entry.secret)
        try:
            parse_blob(blob.to_json())  # the node will check the same rules: fail here, not at answer
        except BlobError as exc:
            raise MediaConfigError(str(exc)) from None
        return {"@odata.type": APP_HOSTED_TYPE, "blob": blob.to_json()}

    def socket(self, call_key: str) -> AudioSocket:
        """The call's AudioSocket at once (connected or not); KeyError for a key without media_config."""
        return self._calls[call_key].socket

    async def audio_socket(self, call_key: str, timeout: float | None = None) -> AudioSocket:
        """The call's AudioSocket once the node has connected (TimeoutError after `timeout` seconds)."""
        sock = self.socket(call_key)
        await sock.wait_connected(timeout)
        return sock

    async def release(self, call_key: str) -> None:
        """Forget a call key (e.g. its call failed before the node connected): its socket closes, its secret is
        no longer accepted. Sockets closed otherwise are forgotten by themselves."""
        entry = self._calls.pop(call_key, None)
        if entry is not None:
            await entry.socket.close()

    def _forget(self, sock: AudioSocket) -> None:
        entry = self._calls.get(sock.call_key)
        if entry is not None and entry.socket is sock:
            del self._calls[sock.call_key]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, autoping=True, heartbeat=10.0)
        await ws.prepare(request)
        self._handlers.add(ws)
        try:
            entry, hello = await self._hello(ws)
            if entry is None:
                self.rejected += 1
                await ws.close(code=UNAUTHORIZED_CLOSE, message=b"unauthorized")
                return ws
            sock = entry.socket
            replaced = sock._attach(ws, hello)
            if replaced is not None:
                await replaced.close()
            await ws.send_str(encode_control("ready"))
            bye = False
            try:
                async for msg in ws:
                    if msg.type is aiohttp.WSMsgType.BINARY:
                        sock._on_audio(msg.data)
                    elif msg.type is aiohttp.WSMsgType.TEXT:
                        try:
                            doc = decode_control(msg.data)
                        except FrameError:
                            sock.stats.bad_messages += 1
                            continue
                        if doc["type"] == "bye":
                            bye = True
                            break
                        sock._on_control(doc)
                    else:
                        break
            finally:
                sock._detach(ws, bye=bye)
            return ws
        finally:
            self._handlers.discard(ws)
            if not ws.closed:
                await ws.close()

    async def _hello(self, ws: web.WebSocketResponse) -> tuple[_Entry | None, dict[str, Any]]:
        try:
            async with asyncio.timeout(self._hello_timeout):
                msg = await ws.receive()
            doc = decode_control(msg.data) if msg.type is aiohttp.WSMsgType.TEXT else {}
        except (TimeoutError, FrameError):
            return None, {}
        key, secret = doc.get("key"), doc.get("secret")
        if doc.get("type") != "hello" or not isinstance(key, str) or not isinstance(secret, str):
            return None, {}
        entry = self._calls.get(key)
        if entry is None or not hmac.compare_digest(entry.secret.encode(), secret.encode()):
            return None, {}
        return entry, doc
