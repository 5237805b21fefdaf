"""Issue 14 items 3, 4 and 9 replayed against a running node: huge heads, long URLs, many headers, big bodies,
slowloris, idle and per-source connection floods, wrong-secret token floods and overlong signed tokens."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest

from opencomms.auth.devcert import make_dev_cert
from opencomms.config import HttpConfig, NodeConfig, SipConfig, TokensConfig
from opencomms.server import Node
from opencomms.testing import running_node

LIMITS = HttpConfig(
    max_request_line=1024,
    max_header_bytes=8192,
    max_headers=20,
    header_timeout=1.0,
    body_timeout=1.0,
    keepalive_timeout=1.0,
    max_connections_per_source=8,
)


def config(**http: Any) -> NodeConfig:
    return NodeConfig(
        host="127.0.0.1",
        port=0,
        store_url="memory://",
        log_format="text",
        max_body_bytes=64 << 10,
        sip=SipConfig(enabled=False),
        http=dataclasses.replace(LIMITS, **http),
    )


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    async with running_node(config()) as n:
        yield n


async def connect(node: Node, source: str = "127.0.0.1") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", node.port, local_addr=(source, 0))


async def read_response(reader: asyncio.StreamReader, timeout: float = 5.0) -> tuple[int, bytes]:
    """Status and body of one response (Content-Length framed)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    lines = head.decode("latin-1").split("\r\n")
    length = next((int(v) for n, _, v in (ln.partition(": ") for ln in lines[1:]) if n.lower() == "content-length"), 0)
    body = await asyncio.wait_for(reader.readexactly(length), timeout) if length else b""
    return int(lines[0].split()[1]), body


async def exchange(node: Node, raw: bytes, source: str = "127.0.0.1") -> tuple[int, bytes, bool]:
    """Send `raw`, read one response; also tells whether the node then closed the connection."""
    reader, writer = await connect(node, source)
    try:
        writer.write(raw)
        status, body = await read_response(reader)
        closed = await asyncio.wait_for(reader.read(1), 3.0) == b""
        return status, body, closed
    finally:
        writer.close()


async def healthz(node: Node) -> float:
    """Seconds /healthz takes on a fresh connection (from another source address)."""
    start = time.perf_counter()
    status, _, closed = await exchange(
        node, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", source="127.0.0.2"
    )
    assert status == 200 and closed
    return time.perf_counter() - start


def rss_kib() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))


async def test_huge_header_is_refused_early_without_buffering_while_others_are_served(node: Node) -> None:
    reader, writer = await connect(node)
    chunk = b"a" * (64 << 10)
    before = rss_kib()
    start = time.perf_counter()
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")

    async def stream(total: int) -> int:
        sent = 0
        try:
            while sent < total:
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
        except (ConnectionError, OSError):
            pass
        return sent

    streaming = asyncio.create_task(stream(64 << 20))  # a 64 MiB header line, as the probe sent
    status, body = await read_response(reader)
    refused_after = time.perf_counter() - start
    others = [await healthz(node) for _ in range(5)]  # served while the attacker still streams
    sent = await asyncio.wait_for(streaming, 10)
    writer.close()
    assert status == 431 and b"requestHeaderFieldsTooLarge" in body
    assert refused_after < 1.0
    assert max(others) < 0.5
    assert rss_kib() - before < 8 << 10  # a few MiB at most (the probe saw +130 MiB)
    assert sent < 8 << 20  # the node reset the connection long before 64 MiB
    assert node.health()["http"]["headers_too_large"] == 1
    print(f"\n64 MiB header: 431 after {refused_after * 1000:.0f} ms, {sent >> 10} KiB sent before the reset")


async def test_long_url_is_414_and_too_many_headers_is_431(node: Node) -> None:
    status, body, closed = await exchange(node, b"GET /healthz?" + b"q" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, closed) == (414, True) and b"requestUriTooLong" in body
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(21))
    status, _, closed = await exchange(node, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    assert (status, closed) == (431, True)
    ok = b"".join(b"X-H%d: v\r\n" % i for i in range(18))
    status, _, _ = await exchange(node, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + ok + b"\r\n")
    assert status == 200


async def test_within_limits_a_head_and_big_body_in_one_write_and_pipelined_requests_are_served(node: Node) -> None:
    body = b"grant_type=client_credentials&pad=" + b"a" * (60 << 10)  # > the head budget, < the body limit
    head = b"POST /contoso.example/oauth2/v2.0/token HTTP/1.1\r\nHost: x\r\n"
    head += b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n" % len(body)
    reader, writer = await connect(node)
    writer.write(head + body + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
    statuses = [(await read_response(reader))[0] for _ in range(3)]
    writer.close()
    assert statuses == [400, 200, 200]  # 400: no such tenant, from the application, which read the whole body


async def test_big_body_with_or_without_content_length_is_413(node: Node) -> None:
    path = b"POST /contoso.example/oauth2/v2.0/token HTTP/1.1\r\nHost: x\r\n"
    # declared too large: refused on the head, nothing of the body is read
    status, body, closed = await exchange(node, path + b"Content-Length: 100000000\r\n\r\n")
    assert (status, closed) == (413, True) and b"larger than 65536 bytes" in body
    # chunked, no length: refused once the bytes pass the limit
    reader, writer = await connect(node)
    writer.write(path + b"Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n")
    piece = b"%x\r\n%s\r\n" % (16 << 10, b"a" * (16 << 10))
    try:
        for _ in range(64):  # 1 MiB, 16 times the limit
            writer.write(piece)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    status, _ = await read_response(reader)
    writer.close()
    assert status == 413


async def test_slowloris_head_is_closed_after_header_timeout(node: Node) -> None:
    reader, writer = await connect(node)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    start = time.perf_counter()
    answer = b""
    with pytest.raises((ConnectionError, OSError)):
        while time.perf_counter() - start < 5:
            writer.write(b"X")  # one byte of a header every 100 ms, never finishing it
            await writer.drain()
            await asyncio.sleep(0.1)
            try:
                answer += await asyncio.wait_for(reader.read(1024), 0.01)
            except TimeoutError:
                continue
            if reader.at_eof():
                raise ConnectionResetError
    writer.close()
    assert 1.0 <= time.perf_counter() - start < 2.5
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert node.health()["http"]["header_timeouts"] >= 1


async def test_slow_body_is_closed_after_header_plus_body_timeout(node: Node) -> None:
    reader, writer = await connect(node)
    head = b"POST /contoso.example/oauth2/v2.0/token HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
    writer.write(head + b"Content-Type: application/x-www-form-urlencoded\r\n\r\n")
    start = time.perf_counter()

    async def trickle() -> None:
        with contextlib.suppress(ConnectionError, OSError):
            for _ in range(50):
                writer.write(b"a")  # a byte every 100 ms: 1000 bytes would take 100 s
                await writer.drain()
                await asyncio.sleep(0.1)

    trickling = asyncio.create_task(trickle())
    status, _ = await read_response(reader)
    took = time.perf_counter() - start
    trickling.cancel()
    writer.close()
    assert status == 408 and 2.0 <= took < 3.5
    assert node.health()["http"]["body_timeouts"] == 1


async def test_idle_connections_are_closed_fresh_or_kept_alive(node: Node) -> None:
    fresh_reader, fresh_writer = await connect(node)  # connects and never sends
    reader, writer = await connect(node)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await read_response(reader))[0] == 200
    start = time.perf_counter()
    assert await asyncio.wait_for(reader.read(), 3.0) == b""  # keep-alive connection closed when idle
    assert 0.8 <= time.perf_counter() - start < 2.0
    assert (await asyncio.wait_for(fresh_reader.read(), 3.0)).startswith(b"HTTP/1.1 408 ")
    writer.close()
    fresh_writer.close()


async def test_per_source_cap_refuses_one_address_and_serves_another() -> None:
    async with running_node(config(header_timeout=30.0, keepalive_timeout=30.0)) as node:
        held = [await connect(node) for _ in range(8)]  # idle connections filling 127.0.0.1's share
        await asyncio.sleep(0.05)
        assert node.health()["http"]["connections"] == 8
        status, body, closed = await exchange(node, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (status, closed) == (503, True) and b"serviceNotAvailable" in body
        assert await healthz(node) < 0.5  # another source address is served
        for _, w in held:
            w.close()
        await asyncio.sleep(0.1)
        status, _, _ = await exchange(node, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status == 200  # the share is free again
        assert node.health()["http"]["refused_per_source"] == 1


async def test_total_cap_refuses_beyond_it() -> None:
    async with running_node(config(header_timeout=30.0, max_connections=4)) as node:
        held = [await connect(node, f"127.0.0.{i}") for i in range(3, 7)]
        await asyncio.sleep(0.05)
        status, _, closed = await exchange(node, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", "127.0.0.2")
        assert (status, closed) == (503, True)
        for _, w in held:
            w.close()


async def test_healthz_reports_the_raised_descriptor_limit(node: Node) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    http = node.health()["http"]
    assert http["descriptor_limit"] == soft > 0
    assert hard == resource.RLIM_INFINITY or soft == hard
    assert 0 < http["max_connections"] < soft


async def test_wrong_secret_flood_is_throttled_before_hashing_and_the_node_stays_responsive() -> None:
    cfg = dataclasses.replace(config(max_connections_per_source=100), tokens=TokensConfig())
    async with running_node(cfg) as node:
        tenant = node.directory.create_tenant("Contoso", "contoso.example")
        app, secret = node.directory.create_app(tenant.id, "Bot", permissions=["Calls.Initiate.All"])
        url = f"{node.public_url}/{tenant.id}/oauth2/v2.0/token"

        def form(s: str) -> dict[str, str]:
            return {
                "grant_type": "client_credentials",
                "client_id": app.id,
                "client_secret": s,
                "scope": f"{node.public_url}/.default",
            }

        async with aiohttp.ClientSession() as http:

            async def attempt(s: str) -> tuple[int, Any, str | None]:
                async with http.post(url, data=form(s)) as resp:
                    return resp.status, await resp.json(), resp.headers.get("Retry-After")

            assert (await attempt(secret))[0] == 200  # the bot signed in once: its secret is remembered
            start = time.perf_counter()
            results = await asyncio.gather(*(attempt(f"wrong-{i}") for i in range(50)))
            elapsed = time.perf_counter() - start
            health = await healthz(node)
            statuses = [r[0] for r in results]
            throttled = [r for r in results if r[0] == 429]
            assert statuses.count(401) <= 10 and len(throttled) >= 40, sorted({r[0] for r in results})
            assert node.api.secrets.hashed <= 11  # 429s cost no scrypt
            assert throttled[0][1]["error"] == "temporarily_unavailable" and throttled[0][1]["error_codes"]
            assert throttled[0][2] is not None and int(throttled[0][2]) >= 1
            assert elapsed < 3.0 and health < 0.5
            # the flood does not lock out the real bot: its remembered secret needs no hashing and no budget
            assert (await attempt(secret))[0] == 200
            assert node.api.secrets.hashed <= 11
            print(f"\n50 wrong secrets: {len(throttled)} x 429 in {elapsed:.2f} s; healthz {health * 1000:.0f} ms")


async def test_correctly_signed_token_with_absurd_lifetime_is_401(node: Node) -> None:
    tenant = node.directory.create_tenant("Contoso", "contoso.example")
    app, _ = node.directory.create_app(tenant.id, "Bot", permissions=["Calls.Initiate.All"])
    key = node.keyring.active
    now = int(time.time())
    claims = {
        "aud": node.public_url,
        "iss": node.tokens.issuer_for(tenant.id),
        "iat": now,
        "nbf": now,
        "exp": 253_402_300_799,  # 9999-12-31
        "tid": tenant.id,
        "appid": app.id,
        "roles": ["Calls.Initiate.All"],
    }
    token = jwt.encode(claims, key.private_key(), algorithm="RS256", headers={"kid": key.kid, "typ": "JWT"})
    path = b"/v1.0/communications/calls/00000000-0000-0000-0000-000000000000"
    raw = b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token.encode() + b"\r\n\r\n"
    status, body, _ = await exchange(node, raw)
    assert status == 401 and b"lifetime" in body


async def test_limits_hold_over_tls(tmp_path: Path) -> None:
    paths = make_dev_cert(tmp_path / "tls")
    cfg = dataclasses.replace(config(), tls_cert=str(paths.cert), tls_key=str(paths.key))
    ctx = ssl.create_default_context(cafile=str(paths.ca_cert))
    async with running_node(cfg) as node:

        async def tls() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            return await asyncio.open_connection("127.0.0.1", node.port, ssl=ctx, server_hostname="localhost")

        reader, writer = await tls()
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20))
        status, _ = await read_response(reader)
        writer.close()
        assert status == 431
        reader, writer = await tls()
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and then nothing more
        start = time.perf_counter()
        status, _ = await read_response(reader)
        assert status == 408 and 1.0 <= time.perf_counter() - start < 2.5
        writer.close()
        reader, writer = await tls()
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await read_response(reader))[0] == 200
        writer.close()
        # a client that connects and never starts its TLS handshake is dropped after header_timeout, not 60 s
        reader, writer = await connect(node)
        start = time.perf_counter()
        with contextlib.suppress(ConnectionError):
            assert await asyncio.wait_for(reader.read(), 5.0) == b""
        assert time.perf_counter() - start < 2.5
        writer.close()


async def test_upgrade_requests_stay_plain_http_and_are_counted_out(node: Node) -> None:
    raw = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    raw += b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    reader, writer = await connect(node)
    writer.write(raw)
    assert (await read_response(reader))[0] == 200
    writer.close()
    await asyncio.sleep(0.1)
    assert node.health()["http"]["connections"] == 0


async def test_at_the_total_cap_a_new_source_takes_an_idle_place_of_the_biggest() -> None:
    async with running_node(config(header_timeout=30.0, max_connections=6)) as node:
        hog = [await connect(node, "127.0.0.3") for _ in range(5)]  # idle, from one address (under its cap of 8)
        quiet = await connect(node, "127.0.0.4")
        await asyncio.sleep(0.05)
        assert node.health()["http"]["connections"] == 6
        assert await healthz(node) < 0.5  # the table is full, yet a newcomer is served
        assert node.health()["http"]["evicted_for_fairness"] == 1
        assert await asyncio.wait_for(hog[0][0].read(), 2.0) == b""  # the hog's oldest idle connection went
        quiet[1].write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await read_response(quiet[0]))[0] == 200  # the small source kept its place
        for _, w in [*hog, quiet]:
            w.close()
