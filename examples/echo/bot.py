"""Echo bot on application-hosted media: answers every call and sends back what it hears; '#' hangs up.

    BOT_SECRET=... python -m examples.echo --node http://127.0.0.1:8000 --tenant contoso.example \
        --app-id <app id> --listen 127.0.0.1:8082 --media-listen 127.0.0.1:8083 [--delay-ms 300]

Register http://127.0.0.1:8082/api/calls as the application's callback URL. The node connects the call's audio
to the bot's WebSocket (`LocalMediaSession`, port of `--media-listen`); the node must be allowed to reach it
(`egress.allow = ["127.0.0.1", "::1"]` for loopback). The bot reads 20 ms frames (16 kHz, 16-bit)
and sends each one back, `--delay-ms` later (0: at once), so a caller hears themselves.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from examples.common import BotSettings, SettingsError, host_port, serve_until_signalled, setup_logging
from opencomms.sdk import GraphError, serve_receiver
from opencomms.sdk.calling import Call, CommunicationsClient
from opencomms.sdk.calling import CallEnded as CallGone
from opencomms.sdk.media import FRAME_BYTES, AudioSocket, DtmfReceived, LocalMediaSession, MediaClosed

log = logging.getLogger("examples.echo")

SILENCE = bytes(FRAME_BYTES)
HANG_UP_KEY = "#"


@dataclass
class EchoStats:
    calls: int = 0
    frames_echoed: int = 0
    frames_dropped: int = 0
    """Frames the SDK dropped because the bot read too slowly (summed over ended calls)."""
    sends_dropped: int = 0
    """Frames sent while the node was not connected (summed over ended calls)."""


@dataclass
class EchoBot:
    """Answers every incoming call of `comms` with application-hosted media from `media` and echoes it."""

    comms: CommunicationsClient
    media: LocalMediaSession
    delay_ms: int = 0
    stats: EchoStats = field(default_factory=EchoStats)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.delay_ms < 0 or self.delay_ms % 20:
            raise ValueError("delay_ms must be a non-negative multiple of 20")
        self.comms.on_incoming_call(self._incoming)

    @property
    def callback_url(self) -> str:
        return self.comms.callback_uri

    async def _incoming(self, call: Call) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, call: Call) -> None:
        try:
            await call.answer(self.media.media_config(call.id))
            sock = await self.media.audio_socket(call.id, timeout=10)
        except (GraphError, CallGone, TimeoutError) as exc:
            log.warning("%s: could not start media: %s", call.id, exc)
            return
        self.stats.calls += 1
        watcher = asyncio.get_running_loop().create_task(self._hang_up_on_key(call, sock))
        try:
            await self.echo(sock)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await sock.close()
            self.stats.frames_dropped += sock.stats.frames_dropped
            self.stats.sends_dropped += sock.stats.sends_dropped
            log.info("%s: echoed %d frames", call.id, sock.stats.frames_sent)

    async def echo(self, sock: AudioSocket) -> None:
        """Send back each frame heard, `delay_ms` later; ends when the call's media ends."""
        line: deque[bytes] = deque([SILENCE] * (self.delay_ms // 20))
        try:
            async for frame in sock:
                line.append(frame.pcm)
                await sock.send(line.popleft())
                self.stats.frames_echoed += 1
        except MediaClosed:
            pass

    async def _hang_up_on_key(self, call: Call, sock: AudioSocket) -> None:
        async for event in sock.events():
            if isinstance(event, DtmfReceived) and event.key == HANG_UP_KEY:
                with contextlib.suppress(GraphError, CallGone, TimeoutError):
                    await call.hang_up()
                return

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@asynccontextmanager
async def run_echo(
    settings: BotSettings,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    media_host: str = "127.0.0.1",
    media_port: int = 0,
    delay_ms: int = 0,
) -> AsyncIterator[EchoBot]:
    """Serve the echo bot (notifications on host:port, media WebSocket on media_host:media_port)."""
    async with settings.client() as client, LocalMediaSession(media_host, media_port) as media:
        comms = CommunicationsClient(client, callback_uri="", app_id=settings.app_id, jwks_url=settings.jwks_url)
        bot = EchoBot(comms, media, delay_ms)
        async with comms, serve_receiver(comms.receiver, host, port) as base:
            comms.callback_uri = f"{base}/api/calls"
            try:
                yield bot
            finally:
                await bot.close()


async def _main(args: argparse.Namespace) -> None:
    settings = BotSettings.from_args(args)
    (host, port), (media_host, media_port) = args.listen, args.media_listen
    async with run_echo(
        settings, host=host, port=port, media_host=media_host, media_port=media_port, delay_ms=args.delay_ms
    ) as bot:
        await serve_until_signalled(f"READY {bot.callback_url} media={bot.media.url}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.echo", description=__doc__.split("\n")[0])
    parser.add_argument("--listen", type=host_port, default=("127.0.0.1", 8082), help="HOST:PORT for notifications")
    parser.add_argument("--media-listen", type=host_port, default=("127.0.0.1", 8083), help="HOST:PORT for media")
    parser.add_argument("--delay-ms", type=int, default=0, help="echo delay, a multiple of 20 ms")
    BotSettings.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.delay_ms < 0 or args.delay_ms % 20:
        parser.error("--delay-ms must be a non-negative multiple of 20")
    setup_logging()
    try:
        asyncio.run(_main(args))
    except SettingsError as exc:
        parser.exit(2, f"error: {exc}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
