"""A real HTTP receiver on 127.0.0.1 for dispatcher tests: records every request and answers from a script.

Test helper only: it plays the bot side of callbacks and must not import the dispatcher.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web


@dataclass(frozen=True, slots=True)
class Reply:
    """How the receiver answers one request."""

    status: int = 202
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering (longer than the client timeout = a hang)."""


HANG = Reply(delay=30.0)


def redirect(location: str, status: int = 307) -> Reply:
    return Reply(status=status, headers={"Location": location})


@dataclass(frozen=True, slots=True)
class Received:
    path: str
    delivery_id: str
    headers: dict[str, str]
    body: bytes
    status: int
    """The status the receiver chose (a hang that the client gave up on still records its status)."""
    at: float

    @property
    def key(self) -> str:
        return str(json.loads(self.body)["key"])

    @property
    def index(self) -> int:
        return int(json.loads(self.body)["i"])

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.scripts: dict[str, collections.deque[Reply]] = {}
        self.chooser: Callable[[str], Reply | None] | None = None
        """Consulted when a path has no script left; None (or returning None) means 202."""
        self.max_in_flight = 0
        self.max_in_flight_per_key = 0
        self._in_flight = 0
        self._in_flight_keys: collections.Counter[str] = collections.Counter()
        self._changed = asyncio.Condition()
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.base = ""

    def script(self, path: str, *replies: Reply | int) -> None:
        queue = self.scripts.setdefault(path, collections.deque())
        for r in replies:
            queue.append(Reply(status=r) if isinstance(r, int) else r)

    def url(self, path: str) -> str:
        return self.base + path

    def on(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    async def wait_until(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(predicate)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base = f"http://{host}:{port}"

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        path = request.path
        queue = self.scripts.get(path)
        reply: Reply | None = queue.popleft() if queue else None
        if reply is None and self.chooser is not None:
            reply = self.chooser(path)
        if reply is None:
            reply = Reply()
        try:
            key = str(json.loads(body)["key"])
        except (ValueError, KeyError, TypeError):
            key = ""
        received = Received(
            path=path,
            delivery_id=request.headers.get("opencomms-delivery-id", ""),
            headers=dict(request.headers),
            body=body,
            status=reply.status,
            at=time.monotonic(),
        )
        self._in_flight += 1
        self._in_flight_keys[key] += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        self.max_in_flight_per_key = max(self.max_in_flight_per_key, self._in_flight_keys[key])
        async with self._changed:
            self.requests.append(received)
            self._changed.notify_all()
        try:
            if reply.delay:
                try:
                    async with asyncio.timeout(reply.delay):
                        await self._stopping.wait()
                except TimeoutError:
                    pass
            return web.Response(status=reply.status, headers=reply.headers)
        finally:
            self._in_flight -= 1
            self._in_flight_keys[key] -= 1
