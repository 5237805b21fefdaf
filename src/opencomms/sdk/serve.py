"""serve_receiver: run any ASGI app (a NotificationReceiver) on aiohttp's HTTP server, for bots and tests.

A small ASGI bridge, so that the SDK needs no ASGI server dependency; production bots may use uvicorn,
hypercorn or any other ASGI server with the same app instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

Scope = dict[str, Any]
Message = dict[str, Any]
AsgiApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


def _handler(app: AsgiApp, host: str, port_ref: list[int]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": f"{request.version.major}.{request.version.minor}",
            "method": request.method,
            "scheme": request.scheme,
            "path": request.path,
            "raw_path": request.raw_path.split("?", 1)[0].encode("latin-1"),
            "query_string": request.query_string.encode("latin-1"),
            "root_path": "",
            "headers": [(k.lower(), v) for k, v in request.raw_headers],
            "client": (request.remote or "", 0),
            "server": (host, port_ref[0]),
        }
        sent = False
        disconnected = asyncio.Event()

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await disconnected.wait()
            return {"type": "http.disconnect"}

        status = 500
        headers: list[tuple[str, str]] = []
        chunks: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", [])]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        try:
            await app(scope, receive, send)
        finally:
            disconnected.set()
        resp = web.Response(status=status, body=b"".join(chunks))
        for key, value in headers:
            if key.lower() not in ("content-length", "transfer-encoding"):
                resp.headers.add(key, value)
        return resp

    return handle


@asynccontextmanager
async def serve_receiver(
    app: AsgiApp, host: str = "127.0.0.1", port: int = 0, *, client_max_size: int = 2 << 20
) -> AsyncIterator[str]:
    """Serve `app` on every path of http://host:port (port 0 picks a free one); yields the base URL.

    On exit the server stops, and the app is closed if it has `aclose()` (NotificationReceiver does).
    """
    port_ref = [port]
    web_app = web.Application(client_max_size=client_max_size)
    web_app.router.add_route("*", "/{tail:.*}", _handler(app, host, port_ref))
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        port_ref[0] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        yield f"http://{host}:{port_ref[0]}"
    finally:
        await runner.cleanup()
        closer = getattr(app, "aclose", None)
        if closer is not None:
            await closer()
