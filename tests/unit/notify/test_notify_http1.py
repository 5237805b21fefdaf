"""The dispatcher's HTTP/1.1 client against raw servers: keep-alive reuse, `Connection: close`, bodies that end
with the connection, interim 1xx responses, chunked bodies, garbage and silence."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from opencomms.net.egress import EgressPolicy, EgressRefused
from opencomms.notify.http1 import Http1Poster

Answer = Callable[[bytes], bytes | None]
"""Maps one raw request to the raw bytes to answer (None: say nothing)."""


class RawServer:
    """Reads one request at a time (head + Content-Length body) and answers what `answer` says."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self.connections = 0
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                reply = self.answer(request)
                if reply is None:
                    await asyncio.sleep(10)
                    return
                writer.write(reply)
                await writer.drain()
                if b"connection: close" in reply.lower() or reply.startswith(b"HTTP/1.0"):
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Answer], Awaitable[RawServer]]]:
    servers: list[asyncio.Server] = []

    async def start(answer: Answer) -> RawServer:
        raw = RawServer(answer)
        server = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
        raw.port = server.sockets[0].getsockname()[1]
        servers.append(server)
        return raw

    yield start
    for server in servers:
        server.close()


HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer t", "opencomms-delivery-id": "d-1"}


async def test_keep_alive_reuses_one_connection(serve: Callable[[Answer], Awaitable[RawServer]]) -> None:
    raw = await serve(lambda _: b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok")
    poster = Http1Poster(timeout=2.0)
    url = f"http://127.0.0.1:{raw.port}/api/calls?x=1"
    for i in range(3):
        assert await poster.post(url, HEADERS, b'{"i":%d}' % i) == (202, None, None)
    poster.close()
    assert raw.connections == 1 and len(raw.requests) == 3
    first = raw.requests[0]
    assert first.startswith(b"POST /api/calls?x=1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % raw.port)
    assert b"\r\nopencomms-delivery-id: d-1\r\n" in first and first.endswith(b'\r\n\r\n{"i":0}')


async def test_close_eof_body_interim_and_chunked(serve: Callable[[Answer], Awaitable[RawServer]]) -> None:
    replies = iter(
        [
            b"HTTP/1.1 307 Temporary Redirect\r\nLocation: /moved\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.0 503 Busy\r\nRetry-After: 3\r\n\r\nbody until the end",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        ]
    )
    raw = await serve(lambda _: next(replies))
    poster = Http1Poster(timeout=2.0)
    url = f"http://127.0.0.1:{raw.port}/cb"
    assert await poster.post(url, HEADERS, b"{}") == (307, "/moved", None)
    assert await poster.post(url, HEADERS, b"{}") == (503, None, "3")
    assert await poster.post(url, HEADERS, b"{}") == (200, None, None)
    poster.close()
    assert raw.connections == 3  # the first two could not be kept


async def test_garbage_silence_and_bad_urls(serve: Callable[[Answer], Awaitable[RawServer]]) -> None:
    garbage = await serve(lambda _: b"SPAM SPAM SPAM\r\n\r\n")
    silent = await serve(lambda _: None)
    poster = Http1Poster(timeout=0.3)
    with pytest.raises(ConnectionError):
        await poster.post(f"http://127.0.0.1:{garbage.port}/", HEADERS, b"{}")
    with pytest.raises(TimeoutError):
        await poster.post(f"http://127.0.0.1:{silent.port}/", HEADERS, b"{}")
    for bad in ("http://user:pw@127.0.0.1:1/", "http:///nohost", "http://exa mple/"):
        with pytest.raises(ValueError):
            await poster.post(bad, HEADERS, b"{}")
    poster.close()
    with pytest.raises(ConnectionError):
        await poster.post(f"http://127.0.0.1:{garbage.port}/", HEADERS, b"{}")


async def test_with_an_egress_policy_only_checked_addresses_are_connected_to(
    serve: Callable[[Answer], Awaitable[RawServer]], monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = await serve(lambda _: b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo

    async def hostile(host: str, port: int, **kw: object) -> object:  # a name that now points at loopback
        if host == "rebind.test":
            return await real("127.0.0.1", port, **kw)  # type: ignore[arg-type]
        return await real(host, port, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "getaddrinfo", hostile)
    strict = Http1Poster(timeout=2.0, egress=EgressPolicy())
    for host in ("127.0.0.1", "rebind.test"):
        with pytest.raises(EgressRefused, match=r"loopback address 127\.0\.0\.1"):
            await strict.post(f"http://{host}:{raw.port}/cb", HEADERS, b"{}")
    assert raw.connections == 0
    allowed = Http1Poster(timeout=2.0, egress=EgressPolicy(("127.0.0.1",)))
    assert await allowed.post(f"http://rebind.test:{raw.port}/cb", HEADERS, b"{}") == (202, None, None)
    assert raw.connections == 1
    strict.close()
    allowed.close()
