"""The outbound WebSocket bridge that calling/apphosted.py and calling/mediastreams.py share: the HTTP session
through the node's egress policy, opening the socket, the sender task that drains a leg's queues when woken, and
the close that first sends what is still queued (a `stop` or `bye`) within a second.

Each user keeps its own queues (deques filled on the event loop, then `wake.set()`); the sender sends the text
queue first, in order, then the binary one, and leaves errors to the receive loop (it sees the close).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable

import aiohttp
from yarl import URL

from opencomms.net.egress import EgressPolicy

__all__ = ["CLOSE_SECONDS", "HEARTBEAT_SECONDS", "close_ws", "egress_session", "open_ws", "send_loop"]

HEARTBEAT_SECONDS = 5.0
CLOSE_SECONDS = 1.0
"""How long a close may take to send the queued text (a `stop` or `bye`) first."""

_SEND_ERRORS = (ConnectionError, aiohttp.ClientError, RuntimeError)


def egress_session(egress: EgressPolicy, ssl_context: ssl.SSLContext | bool) -> aiohttp.ClientSession:
    """A session whose connections go through the egress policy; its trace re-checks every hop of a handshake
    (a redirect to an IP literal never reaches the resolver)."""
    connector = egress.connector(ssl=ssl_context, limit=0)
    return aiohttp.ClientSession(connector=connector, trust_env=False, trace_configs=[egress.trace_config()])


async def open_ws(session: aiohttp.ClientSession, url: URL, *, max_msg_size: int) -> aiohttp.ClientWebSocketResponse:
    """Open a bot's socket: pinged every HEARTBEAT_SECONDS, uncompressed."""
    return await session.ws_connect(
        url, heartbeat=HEARTBEAT_SECONDS, max_msg_size=max_msg_size, autoclose=True, compress=0
    )


async def send_loop(
    ws: aiohttp.ClientWebSocketResponse,
    wake: asyncio.Event,
    texts: deque[str],
    frames: deque[bytes] | None = None,
    *,
    on_text: Callable[[], None] | None = None,
    on_frame: Callable[[], None] | None = None,
) -> None:
    """Each time `wake` is set, send every queued text message, then every queued binary frame (counting each
    with its callback), until the task is cancelled or the socket fails."""
    try:
        while True:
            await wake.wait()
            wake.clear()
            while texts:
                await ws.send_str(texts.popleft())
                if on_text is not None:
                    on_text()
            while frames:
                await ws.send_bytes(frames.popleft())
                if on_frame is not None:
                    on_frame()
    except _SEND_ERRORS:
        pass  # the receive loop sees the close


async def close_ws(ws: aiohttp.ClientWebSocketResponse | None, texts: deque[str]) -> None:
    """Send the queued text (e.g. the `stop` or `bye` queued on ending) and close, within CLOSE_SECONDS."""
    if ws is None or ws.closed:
        return
    try:
        async with asyncio.timeout(CLOSE_SECONDS):
            while texts:
                await ws.send_str(texts.popleft())
            await ws.close()
    except (TimeoutError, *_SEND_ERRORS):
        pass
