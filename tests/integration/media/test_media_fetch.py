"""SafeFetcher against a real aiohttp server on 127.0.0.1: allow list, redirects, limits, timeouts, TLS."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from opencomms.auth.devcert import make_dev_cert
from opencomms.domain.media import PromptError, PromptFailure
from opencomms.media.fetch import USER_AGENT, FetchPolicy, SafeFetcher

BODY = b"RIFF" + bytes(range(256)) * 8
LIMIT = 4096


@dataclass
class Server:
    base: str
    port: int
    hits: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    targets: dict[str, str] = field(default_factory=dict)
    """Location by name for /away/{name}."""
    done: asyncio.Event = field(default_factory=asyncio.Event)
    """Set at teardown: slow handlers stop at once instead of holding up the server's shutdown."""


def build_app(server: Server) -> web.Application:
    async def record(request: web.Request) -> None:
        server.hits.append(request.path)
        server.headers.append(dict(request.headers))

    async def ok(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(body=BODY, content_type="audio/wav")

    async def chain(request: web.Request) -> web.Response:
        await record(request)
        n = int(request.match_info["n"])
        raise web.HTTPFound("/ok" if n == 0 else f"../chain/{n - 1}")

    async def away(request: web.Request) -> web.Response:
        await record(request)
        status = int(request.query.get("status", "302"))
        return web.Response(status=status, headers={"Location": server.targets[request.match_info["name"]]})

    async def no_location(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(status=302)

    async def missing(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(status=404, text="nope")

    async def big(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(body=bytes(LIMIT + 1))

    async def exact(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(body=bytes(LIMIT))

    async def endless(request: web.Request) -> web.StreamResponse:
        await record(request)
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(10_000):  # 10 MB if nobody stops reading
            await resp.write(bytes(1000))
        return resp

    async def slow(request: web.Request) -> web.Response:
        await record(request)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.done.wait(), 5)
        return web.Response(body=BODY)

    async def trickle(request: web.Request) -> web.StreamResponse:
        await record(request)
        resp = web.StreamResponse()
        resp.content_length = 100
        await resp.prepare(request)
        for _ in range(100):
            if server.done.is_set():
                break
            await resp.write(b"x")
            await asyncio.sleep(0.05)
        return resp

    async def cookie(request: web.Request) -> web.Response:
        await record(request)
        resp = web.HTTPFound("/ok")
        resp.set_cookie("session", "secret")
        raise resp

    async def gzipped(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(body=b"\x1f\x8b" + bytes(20), headers={"Content-Encoding": "gzip"})

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/chain/{n}", chain)
    app.router.add_get("/away/{name}", away)
    app.router.add_get("/no-location", no_location)
    app.router.add_get("/missing", missing)
    app.router.add_get("/big", big)
    app.router.add_get("/exact", exact)
    app.router.add_get("/endless", endless)
    app.router.add_get("/slow", slow)
    app.router.add_get("/trickle", trickle)
    app.router.add_get("/cookie", cookie)
    app.router.add_get("/gzip", gzipped)
    return app


async def start(host: str, ssl_context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, Server]:
    server = Server("", 0)
    runner = web.AppRunner(build_app(server), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0, ssl_context=ssl_context)
    await site.start()
    port = int(runner.addresses[0][1])
    server.port = port
    server.base = f"{'https' if ssl_context else 'http'}://{host}:{port}"
    return runner, server


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    runner, srv = await start("127.0.0.1")
    yield srv
    srv.done.set()
    await runner.cleanup()


@pytest.fixture
async def listener() -> AsyncIterator[tuple[int, list[int]]]:
    """A bare TCP listener on 127.0.0.2 counting connections: proof that a refused target was never contacted."""
    connections: list[int] = []

    async def on_connect(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        writer.close()

    srv = await asyncio.start_server(on_connect, "127.0.0.2", 0)
    yield srv.sockets[0].getsockname()[1], connections
    srv.close()
    await srv.wait_closed()


@pytest.fixture
async def make_fetcher() -> AsyncIterator[Callable[..., SafeFetcher]]:
    made: list[SafeFetcher] = []

    def make(ssl_context: ssl.SSLContext | None = None, **policy: Any) -> SafeFetcher:
        policy.setdefault("allow_private", ("127.0.0.1",))
        policy.setdefault("timeout_seconds", 5.0)
        policy.setdefault("max_bytes", LIMIT)
        fetcher = SafeFetcher(FetchPolicy(**policy), ssl_context=ssl_context)
        made.append(fetcher)
        return fetcher

    yield make
    for fetcher in made:
        await fetcher.close()


async def fails(call: Awaitable[bytes], failure: PromptFailure, match: str = "") -> str:
    with pytest.raises(PromptError) as info:
        await call
    assert info.value.failure is failure, info.value.message
    assert match in info.value.message
    return info.value.message


Fetchers = Callable[..., SafeFetcher]


# -- the allow list ---------------------------------------------------------------------------------------


async def test_fetch_works_when_loopback_is_allowed(server: Server, make_fetcher: Fetchers) -> None:
    fetcher = make_fetcher()
    assert await fetcher.fetch(f"{server.base}/ok") == BODY
    assert await fetcher.fetch(f"{server.base}/ok#fragment") == BODY  # session reused, fragment not sent
    assert server.hits == ["/ok", "/ok"]
    assert server.headers[0]["User-Agent"] == USER_AGENT
    assert server.headers[0]["Accept-Encoding"] == "identity"


async def test_loopback_is_refused_without_the_allow_list_and_never_contacted(
    server: Server, make_fetcher: Fetchers
) -> None:
    fetcher = make_fetcher(allow_private=())
    await fails(
        fetcher.fetch(f"{server.base}/ok"),
        PromptFailure.FORBIDDEN_ADDRESS,
        "loopback address 127.0.0.1 is not allowed",
    )
    await fails(fetcher.fetch(f"http://localhost:{server.port}/ok"), PromptFailure.FORBIDDEN_ADDRESS, "loopback")
    await fails(make_fetcher(allow_private=("10.0.0.0/8",)).fetch(f"{server.base}/ok"), PromptFailure.FORBIDDEN_ADDRESS)
    assert server.hits == []


async def test_allow_list_by_hostname(server: Server, make_fetcher: Fetchers) -> None:
    fetcher = make_fetcher(allow_private=("localhost",))
    assert await fetcher.fetch(f"http://localhost:{server.port}/ok") == BODY
    await fails(fetcher.fetch(f"{server.base}/ok"), PromptFailure.FORBIDDEN_ADDRESS)  # the name, not the address


async def test_names_resolve_once_through_the_check_and_keep_their_host_header(
    server: Server, make_fetcher: Fetchers, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    lookups: list[str] = []
    table = {
        "prompts.example.test": ["127.0.0.1"],
        "rebind.example.test": ["93.184.216.34", "10.0.0.1"],
        "meta.example.test": ["169.254.169.254"],
    }

    async def fake_getaddrinfo(host: str, port: int, **_kw: Any) -> list[Any]:
        lookups.append(host)
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in table[host]]

    monkeypatch.setattr(loop, "getaddrinfo", fake_getaddrinfo)
    fetcher = make_fetcher(allow_private=("127.0.0.0/8",))
    assert await fetcher.fetch(f"http://prompts.example.test:{server.port}/ok") == BODY
    assert lookups == ["prompts.example.test"]
    assert server.headers[-1]["Host"] == f"prompts.example.test:{server.port}"
    message = await fails(
        fetcher.fetch(f"http://rebind.example.test:{server.port}/ok"), PromptFailure.FORBIDDEN_ADDRESS
    )
    assert (
        message == "rebind.example.test resolves to private address 10.0.0.1, which is not allowed"
    )  # one bad address is enough
    await fails(fetcher.fetch("http://meta.example.test/latest/"), PromptFailure.FORBIDDEN_ADDRESS, "metadata")
    await fails(fetcher.fetch("https://nowhere.example.test/a.wav"), PromptFailure.UNREACHABLE, "cannot resolve")
    assert server.hits == ["/ok"]


# -- redirects --------------------------------------------------------------------------------------------


async def test_redirects_are_followed_up_to_the_limit(server: Server, make_fetcher: Fetchers) -> None:
    fetcher = make_fetcher(max_redirects=3)
    assert await fetcher.fetch(f"{server.base}/chain/2") == BODY  # 3 redirects, relative Locations
    assert server.hits == ["/chain/2", "/chain/1", "/chain/0", "/ok"]
    server.hits.clear()
    await fails(fetcher.fetch(f"{server.base}/chain/3"), PromptFailure.HTTP_STATUS, "too many redirects")
    assert server.hits == ["/chain/3", "/chain/2", "/chain/1", "/chain/0"]
    await fails(make_fetcher(max_redirects=0).fetch(f"{server.base}/chain/0"), PromptFailure.HTTP_STATUS)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_every_redirect_status_is_handled(server: Server, make_fetcher: Fetchers, status: int) -> None:
    server.targets["ok"] = f"{server.base}/ok"
    assert await make_fetcher().fetch(f"{server.base}/away/ok?status={status}") == BODY


@pytest.mark.parametrize(
    "target",
    ["http://10.0.0.1/x.wav", "http://[::1]:{port}/ok", "http://169.254.169.254/latest/meta-data/", "{local2}"],
)
async def test_redirect_to_a_forbidden_address_is_refused_without_connecting(
    server: Server, make_fetcher: Fetchers, listener: tuple[int, list[int]], target: str
) -> None:
    port2, connections = listener
    server.targets["evil"] = target.format(port=server.port, local2=f"http://127.0.0.2:{port2}/ok")
    started = time.monotonic()
    await fails(make_fetcher().fetch(f"{server.base}/away/evil"), PromptFailure.FORBIDDEN_ADDRESS)
    assert time.monotonic() - started < 0.5  # no connection attempt to an unroutable or closed address
    assert connections == []
    assert server.hits == ["/away/evil"]


@pytest.mark.parametrize(
    ("target", "match"),
    [("ftp://example.com/a.wav", "'ftp'"), ("file:///etc/passwd", "'file'"), ("http://u:p@example.com/", "credent")],
)
async def test_redirect_to_a_bad_url_is_refused(
    server: Server, make_fetcher: Fetchers, target: str, match: str
) -> None:
    server.targets["bad"] = target
    await fails(make_fetcher().fetch(f"{server.base}/away/bad"), PromptFailure.BAD_URL, match)


async def test_redirect_without_location(server: Server, make_fetcher: Fetchers) -> None:
    await fails(make_fetcher().fetch(f"{server.base}/no-location"), PromptFailure.HTTP_STATUS, "without Location")


async def test_cookies_are_not_kept(server: Server, make_fetcher: Fetchers) -> None:
    fetcher = make_fetcher()
    assert await fetcher.fetch(f"{server.base}/cookie") == BODY
    assert await fetcher.fetch(f"{server.base}/ok") == BODY
    assert all("Cookie" not in h for h in server.headers)


# -- statuses, sizes, encodings ---------------------------------------------------------------------------


async def test_scheme_other_than_http_is_a_bad_url(make_fetcher: Fetchers) -> None:
    fetcher = make_fetcher()
    await fails(fetcher.fetch("ftp://127.0.0.1/a.wav"), PromptFailure.BAD_URL, "'ftp'")
    await fails(fetcher.fetch("file:///etc/passwd"), PromptFailure.BAD_URL, "'file'")


async def test_non_2xx_is_an_http_status_failure(server: Server, make_fetcher: Fetchers) -> None:
    await fails(make_fetcher().fetch(f"{server.base}/missing?token=s3cret"), PromptFailure.HTTP_STATUS, "HTTP 404")
    message = await fails(make_fetcher().fetch(f"{server.base}/missing?token=s3cret"), PromptFailure.HTTP_STATUS)
    assert "s3cret" not in message  # queries (often access tokens) are not repeated in errors


async def test_body_size_limit(server: Server, make_fetcher: Fetchers) -> None:
    fetcher = make_fetcher()
    assert len(await fetcher.fetch(f"{server.base}/exact")) == LIMIT
    await fails(fetcher.fetch(f"{server.base}/big"), PromptFailure.TOO_BIG, f"is {LIMIT + 1} bytes")
    started = time.monotonic()
    await fails(fetcher.fetch(f"{server.base}/endless"), PromptFailure.TOO_BIG, f"limit of {LIMIT} bytes")
    assert time.monotonic() - started < 1.0
    assert await fetcher.fetch(f"{server.base}/ok") == BODY  # the abandoned connection did not poison the pool


async def test_compressed_bodies_are_not_accepted(server: Server, make_fetcher: Fetchers) -> None:
    await fails(make_fetcher().fetch(f"{server.base}/gzip"), PromptFailure.NOT_WAV, "gzip")


# -- time and connection failures -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/slow", "/trickle"])
async def test_whole_fetch_is_bounded_in_time(server: Server, make_fetcher: Fetchers, path: str) -> None:
    started = time.monotonic()
    await fails(make_fetcher(timeout_seconds=0.3).fetch(f"{server.base}{path}"), PromptFailure.TIMEOUT, "0.3 s")
    assert 0.25 < time.monotonic() - started < 1.0


async def test_connection_refused_is_unreachable(make_fetcher: Fetchers) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    await fails(make_fetcher().fetch(f"http://127.0.0.1:{port}/a.wav"), PromptFailure.UNREACHABLE, "cannot connect")


async def test_https_verifies_the_certificate_for_the_original_hostname(
    tmp_path: Path, make_fetcher: Fetchers, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = make_dev_cert(tmp_path, ("prompts.example.test",))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(paths.cert, paths.key)
    runner, srv = await start("127.0.0.1", server_ctx)
    try:
        loop = asyncio.get_running_loop()

        async def fake_getaddrinfo(host: str, port: int, **_kw: Any) -> list[Any]:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

        monkeypatch.setattr(loop, "getaddrinfo", fake_getaddrinfo)
        trusting = ssl.create_default_context(cafile=str(paths.ca_cert))
        url = f"https://prompts.example.test:{srv.port}/ok"
        assert await make_fetcher(ssl_context=trusting).fetch(url) == BODY  # SNI and name check: the hostname
        await fails(make_fetcher().fetch(url), PromptFailure.UNREACHABLE, "TLS")  # default trust store
        await fails(make_fetcher(ssl_context=trusting).fetch(f"{srv.base}/ok"), PromptFailure.UNREACHABLE, "TLS")
    finally:
        srv.done.set()
        await runner.cleanup()
