"""What every example bot needs: who it is on which node (settings from the environment or flags), a client,
and running until Ctrl-C; for meeting bots also the join-URL flags, the notification receiver and telling the
meeting that it is recorded.

The secret is read from the environment (`BOT_SECRET`), never from the command line, where `ps` would show it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from opencomms.sdk import ClientCredentials, CommsClient, GraphError, jwks_url_for, serve_receiver
from opencomms.sdk.calling import Call, CallEnded, CommunicationsClient, OperationFailed


class SettingsError(ValueError):
    """A required setting is missing."""


@dataclass(frozen=True, slots=True)
class BotSettings:
    """The node to use and the bot's application registration on it."""

    node_url: str
    tenant: str
    app_id: str
    secret: str

    def __repr__(self) -> str:  # never show the secret
        return f"BotSettings(node_url={self.node_url!r}, tenant={self.tenant!r}, app_id={self.app_id!r})"

    @property
    def jwks_url(self) -> str:
        return jwks_url_for(self.node_url)

    def credentials(self) -> ClientCredentials:
        return ClientCredentials(self.node_url, self.tenant, self.app_id, self.secret)

    def client(self) -> CommsClient:
        """A REST client for this bot (use it as an async context manager)."""
        return CommsClient(self.node_url, self.credentials())

    def env(self) -> dict[str, str]:
        """The environment variables that reproduce these settings (for worker processes)."""
        return {
            "OPENCOMMS_URL": self.node_url,
            "BOT_TENANT": self.tenant,
            "BOT_APP_ID": self.app_id,
            "BOT_SECRET": self.secret,
        }

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("bot identity (default: environment variables)")
        group.add_argument("--node", dest="node_url", help="the node's base URL [OPENCOMMS_URL]")
        group.add_argument("--tenant", help="tenant id or domain [BOT_TENANT]")
        group.add_argument("--app-id", help="the bot's application (client) id [BOT_APP_ID]; secret: BOT_SECRET")

    @classmethod
    def from_args(cls, args: argparse.Namespace, environ: dict[str, str] | None = None) -> BotSettings:
        env = dict(os.environ if environ is None else environ)
        values = {
            "node_url": getattr(args, "node_url", None) or env.get("OPENCOMMS_URL", ""),
            "tenant": getattr(args, "tenant", None) or env.get("BOT_TENANT", ""),
            "app_id": getattr(args, "app_id", None) or env.get("BOT_APP_ID", ""),
            "secret": env.get("BOT_SECRET", ""),
        }
        names = {"node_url": "--node/OPENCOMMS_URL", "tenant": "--tenant/BOT_TENANT", "app_id": "--app-id/BOT_APP_ID"}
        missing = [names.get(k, "BOT_SECRET") for k, v in values.items() if not v]
        if missing:
            raise SettingsError(f"missing settings: {', '.join(missing)}")
        return cls(**values)


def host_port(value: str) -> tuple[str, int]:
    """'127.0.0.1:8080' -> ('127.0.0.1', 8080); for argparse `type=`."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def run_bot(
    parser: argparse.ArgumentParser, main: Coroutine[Any, Any, int], errors: tuple[type[Exception], ...] = ()
) -> int:
    """Run a bot's `main` with logging set up: a missing setting exits 2 and one of the bot's own `errors` exits 1,
    each with one line; Ctrl-C exits 130."""
    setup_logging()
    try:
        return asyncio.run(main)
    except SettingsError as exc:
        parser.exit(2, f"error: {exc}\n")
    except errors as exc:
        parser.exit(1, f"error: {exc}\n")
    except KeyboardInterrupt:
        return 130


async def serve_until_signalled(ready_line: str) -> None:
    """Print `ready_line` (launchers and tests wait for it), then wait for SIGINT or SIGTERM."""
    print(ready_line, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


# -- meeting bots (transcriber, translator, compliance recorder, meeting assistant) ---------------------------


def meeting_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """A meeting bot's parser with `--join-url` [MEETING_JOIN_URL]; add the bot's own options, then call
    `parse_meeting_args`."""
    parser = argparse.ArgumentParser(prog=prog, description=(doc or "").split("\n")[0])
    parser.add_argument(
        "--join-url", default=os.environ.get("MEETING_JOIN_URL"), help="the meeting's joinWebUrl [MEETING_JOIN_URL]"
    )
    return parser


def parse_meeting_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Add `--listen` and the bot identity arguments, parse; a missing join URL is a usage error."""
    parser.add_argument("--listen", type=host_port, default=("127.0.0.1", 0), help="HOST:PORT for notifications")
    BotSettings.add_arguments(parser)
    args = parser.parse_args(argv)
    if not args.join_url:
        parser.error("--join-url (or MEETING_JOIN_URL) is required")
    return args


@asynccontextmanager
async def meeting_comms(settings: BotSettings, host: str, port: int, path: str) -> AsyncIterator[CommunicationsClient]:
    """A calling client whose notifications are served on host:port (0: any free port) under `path`."""
    async with settings.client() as client:
        comms = CommunicationsClient(client, callback_uri="", app_id=settings.app_id, jwks_url=settings.jwks_url)
        async with comms, serve_receiver(comms.receiver, host, port) as base:
            comms.callback_uri = f"{base}{path}"
            yield comms


async def record_and_transcribe(comms: CommunicationsClient, call: Call, *, timeout: float) -> None:
    """Wait for the meeting leg, tell the meeting it is recorded (first: Graph's compliance rule), then start live
    transcription."""
    await call.wait_state("established", timeout=timeout)
    await call.update_recording_status("recording")
    await comms.client.start_transcription(call.id)


async def stop_recording_and_leave(call: Call | None, *, recording: bool = True) -> None:
    """Tell the meeting the recording stopped (if `recording`) and hang up; quiet if the call is already gone."""
    if call is None or call.terminated.is_set():
        return
    if recording:
        with contextlib.suppress(GraphError, OperationFailed, CallEnded, TimeoutError):
            await call.update_recording_status("notRecording")
    with contextlib.suppress(GraphError, TimeoutError):
        await call.hang_up()
