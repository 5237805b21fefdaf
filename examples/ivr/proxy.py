"""A tiny round-robin HTTP reverse proxy: one callback URL in front of several stateless IVR workers.

    python -m examples.ivr.proxy --listen 127.0.0.1:8080 --upstream http://127.0.0.1:8081 --upstream http://127.0.0.1:8082

Each request goes to the next upstream in turn. If an upstream cannot be reached, or drops the connection
before answering (a worker killed mid-request), the request goes to the next one at once, and the failing
upstream is skipped for `cooldown` seconds. If none answers, the proxy answers 502 and the node delivers the
notification again later (it retries 5xx and timeouts). Upstream answers, 5xx included, pass through as they
are. This is an example, not a production load balancer (use nginx/HAProxy/Envoy there); it is enough to show
that nothing is lost when a worker dies.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from examples.common import host_port, serve_until_signalled, setup_logging

log = logging.getLogger("examples.ivr.proxy")

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers", "upgrade"}
    | {"transfer-encoding", "host", "content-length"}
)


@dataclass
class Upstream:
    url: str
    down_until: float = 0.0
    requests: int = 0
    failures: int = 0


@dataclass
class RoundRobinProxy:
    upstreams: list[Upstream]
    timeout: float = 10.0
    cooldown: float = 2.0
    failovers: int = 0
    _next: int = 0
    _session: aiohttp.ClientSession | None = field(default=None, repr=False)

    def _order(self) -> list[Upstream]:
        """Upstreams from the next in turn, the ones cooling down after a failure last."""
        n = len(self.upstreams)
        start, self._next = self._next, (self._next + 1) % n
        ring = [self.upstreams[(start + i) % n] for i in range(n)]
        now = time.monotonic()
        return [u for u in ring if u.down_until <= now] + [u for u in ring if u.down_until > now]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        for attempt, upstream in enumerate(self._order()):
            if attempt:
                self.failovers += 1
            upstream.requests += 1
            try:
                async with self._session.request(
                    request.method, upstream.url + request.rel_url.raw_path_qs, data=body, headers=headers
                ) as resp:
                    data = await resp.read()
                    out = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP_BY_HOP}
                    return web.Response(status=resp.status, body=data, headers=out)
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                upstream.failures += 1
                upstream.down_until = time.monotonic() + self.cooldown
                log.warning("upstream %s failed (%s); trying the next one", upstream.url, type(exc).__name__)
        return web.Response(status=502, text="no upstream answered")

    @asynccontextmanager
    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Listen on host:port; yields the proxy's base URL."""
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        self._session = aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0))
        app = web.Application(client_max_size=4 << 20)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
            bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            yield f"http://{host}:{bound}"
        finally:
            await runner.cleanup()
            await self._session.close()
            self._session = None


def make_proxy(upstreams: Sequence[str]) -> RoundRobinProxy:
    if not upstreams:
        raise ValueError("at least one upstream is required")
    return RoundRobinProxy([Upstream(u.rstrip("/")) for u in upstreams])


async def _main(args: argparse.Namespace) -> None:
    host, port = args.listen
    async with make_proxy(args.upstream).serve(host, port) as url:
        await serve_until_signalled(f"READY {url}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.ivr.proxy", description=__doc__.split("\n")[0])
    parser.add_argument("--listen", type=host_port, default=("127.0.0.1", 8080), help="HOST:PORT")
    parser.add_argument("--upstream", action="append", required=True, help="a worker's base URL (repeat)")
    args = parser.parse_args(argv)
    setup_logging()
    asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
