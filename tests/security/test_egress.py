"""Server-side request forgery through callbacks, notification redirects and app-hosted media redirects, replayed
against a running node whose egress allow list holds only the bots' address (127.0.0.1). The "forbidden" target is a
real listener on 127.0.0.2 (Linux serves all of 127.0.0.0/8), which must see no connection at all."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import aiohttp
from aiohttp import web

from opencomms.config import EgressConfig, MediaConfig
from opencomms.domain import results
from opencomms.testing.harness import app_target
from tests.integration.conftest import Platform, make_platform, node_config

FORBIDDEN_HOST = "127.0.0.2"
INTERNAL_NAME = "billing.internal.test"
"""A name the test's DNS answers with the forbidden listener's address (what a hostile or internal DNS would do)."""


class Listener:
    """A TCP listener that counts connections and never answers."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> Listener:
        async def accept(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            writer.close()

        self._server = await asyncio.start_server(accept, FORBIDDEN_HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@contextmanager
def hostile_dns(port: int) -> Iterator[None]:
    """INTERNAL_NAME resolves to the forbidden listener; every other name as usual."""
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo

    async def getaddrinfo(host: Any, port_: Any, **kw: Any) -> Any:
        if host == INTERNAL_NAME:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (FORBIDDEN_HOST, int(port_ or port)))]
        return await real(host, port_, **kw)

    loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign]
    try:
        yield
    finally:
        del loop.getaddrinfo  # type: ignore[method-assign]


@asynccontextmanager
async def strict_node() -> AsyncIterator[tuple[Platform, Listener]]:
    listener = await Listener().start()
    config = node_config(
        egress=EgressConfig(allow=("127.0.0.1",)),  # the bots only
        media=MediaConfig(app_hosted_connect_timeout=1.0),
    )
    try:
        with hostile_dns(listener.port):
            async with make_platform(config, names=("alice", "bob")) as p:
                yield p, listener
    finally:
        await listener.stop()


def refused_callbacks(port: int) -> list[tuple[str, str]]:
    return [
        (f"http://{FORBIDDEN_HOST}:{port}/cb", f"loopback address {FORBIDDEN_HOST} is not allowed"),
        ("http://10.0.0.1/cb", "private address 10.0.0.1 is not allowed"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata address 169.254.169.254 is not allowed"),
        (f"http://[::1]:{port}/cb", "loopback address ::1 is not allowed"),
        (f"http://localhost:{port}/cb", "localhost resolves to loopback address ::1"),  # ::1 is not allowed
        (f"http://{INTERNAL_NAME}:{port}/cb", f"{INTERNAL_NAME} resolves to loopback address {FORBIDDEN_HOST}"),
        ("http://2130706433/cb", "non-canonical numeric host '2130706433' (127.0.0.1)"),
        ("http://0xa9.0xfe.0xa9.0xfe/", "non-canonical numeric host"),
    ]


def assert_refused(status: int, data: Any, why: str) -> None:
    assert status == 400, data
    assert data["error"]["code"] == "invalidRequest"
    message = data["error"]["message"]
    assert message.startswith("callbackUri: ") and why in message, message


async def test_refused_callback_uri_on_create_and_answer_is_a_400_with_the_reason() -> None:
    async with strict_node() as (p, listener):
        alice, bob = p["alice"], p["bob"]
        for url, why in refused_callbacks(listener.port):
            status, data = await alice.client.create_call(url, [app_target(bob.app_id)])
            assert_refused(status, data, why)
        assert p.node.calls.active_calls == 0  # nothing was created

        status, call = await alice.client.create_call(alice.bot.url, [app_target(bob.app_id)])
        assert status == 201, call
        incoming = await bob.bot.incoming()
        for url, why in refused_callbacks(listener.port):
            body = {
                "acceptedModalities": ["audio"],
                "callbackUri": url,
                "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
            }
            status, data, _ = await bob.client.request("POST", f"/communications/calls/{incoming.call_id}/answer", body)
            assert_refused(status, data, why)
        assert await bob.client.answer(incoming.call_id) == 202  # the call itself is fine
        await alice.bot.wait_state(call["id"], "established")
        await asyncio.sleep(0.2)
        assert listener.connections == 0


async def test_a_redirect_to_a_refused_address_is_dropped_counted_and_never_moves_the_callback() -> None:
    async with strict_node() as (p, listener):
        alice, bob = p["alice"], p["bob"]
        targets = [
            f"http://{FORBIDDEN_HOST}:{listener.port}/stolen",
            f"http://{INTERNAL_NAME}:{listener.port}/stolen",  # checked when connecting: the name is private
            f"http://[::ffff:{FORBIDDEN_HOST}]:{listener.port}/stolen",
        ]
        redirects = list(targets)

        def responder(body: dict[str, Any]) -> int | tuple[int, dict[str, str]]:
            state = (body["value"][0].get("resourceData") or {}).get("state")
            if state == "establishing" and redirects:  # each call's first notification is redirected
                return 307, {"Location": redirects.pop(0)}
            return 202

        alice.bot.responder = responder
        call_ids = []
        for _ in targets:
            status, call = await alice.client.create_call(alice.bot.url, [app_target(bob.app_id)])
            assert status == 201, call
            rung = sum(1 for n in bob.bot.notifications if n.change_type == "created")
            incoming = await bob.bot.incoming(index=rung)
            assert await bob.client.answer(incoming.call_id) == 202
            await alice.bot.wait_state(call["id"], "established")  # later notifications still reach the bot
            call_ids.append(call["id"])
        assert not redirects
        stats = p.node.dispatcher.stats
        assert stats.refused == len(targets) and stats.dropped == len(targets)
        async with aiohttp.ClientSession() as http, http.get(f"{p.node.public_url}/healthz") as resp:
            health = await resp.json()
        assert health["notifications"]["refused"] == len(targets)
        assert all(p.node.calls.calls[c].callback_uri == alice.bot.url for c in call_ids)
        assert listener.connections == 0


async def test_an_app_hosted_media_handshake_redirected_to_a_refused_address_fails_the_call() -> None:
    async with strict_node() as (p, listener):
        hits: list[str] = []

        async def redirect(request: web.Request) -> web.Response:
            hits.append(request.path)
            hop = request.match_info["hop"]
            location = {
                "literal": f"http://{FORBIDDEN_HOST}:{listener.port}/media",
                "name": f"http://{INTERNAL_NAME}:{listener.port}/media",
                "mapped": f"http://[::ffff:{FORBIDDEN_HOST}]:{listener.port}/media",
            }[hop]
            raise web.HTTPFound(location)

        app = web.Application()
        app.router.add_get("/{hop}", redirect)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            alice, bob = p["alice"], p["bob"]
            for hop in ("literal", "name", "mapped"):
                blob = {"v": 1, "url": f"ws://127.0.0.1:{port}/{hop}", "key": "k", "secret": "s" * 32}
                config = {"@odata.type": "#microsoft.graph.appHostedMediaConfig", "blob": json.dumps(blob)}
                status, call = await alice.client.create_call(alice.bot.url, [app_target(bob.app_id)])
                assert status == 201, call
                rung = sum(1 for n in bob.bot.notifications if n.change_type == "created")
                incoming = await bob.bot.incoming(index=rung)
                body = {"acceptedModalities": ["audio"], "mediaConfig": config}
                status, data, _ = await bob.client.request(
                    "POST", f"/communications/calls/{incoming.call_id}/answer", body
                )
                assert status == 202, data
                note = await bob.bot.wait_state(incoming.call_id, "terminated", timeout=5)
                info = note.resource_data["resultInfo"]
                assert (info["code"], info["subcode"]) == (410, results.APP_MEDIA_UNREACHABLE.subcode)
            assert set(hits) == {"/literal", "/name", "/mapped"}  # the allowed first hop was reached
            assert p.node.app_hosted.stats.refused == 3 and p.node.app_hosted.stats.connections == 0
            assert listener.connections == 0
        finally:
            await runner.cleanup()


async def test_reject_and_redirect_judge_their_callback_uri_too() -> None:
    async with strict_node() as (p, listener):
        alice, bob = p["alice"], p["bob"]
        status, call = await alice.client.create_call(alice.bot.url, [app_target(bob.app_id)])
        assert status == 201, call
        incoming = await bob.bot.incoming()
        url, why = refused_callbacks(listener.port)[2]  # cloud metadata
        for action, body in (
            ("reject", {"reason": "busy", "callbackUri": url}),
            ("redirect", {"targets": [app_target(alice.app_id)], "callbackUri": url}),
        ):
            status, data, _ = await bob.client.request(
                "POST", f"/communications/calls/{incoming.call_id}/{action}", body
            )
            assert_refused(status, data, why)


async def test_a_registered_webhook_at_a_refused_address_is_dropped_and_counted() -> None:
    async with strict_node() as (p, listener):
        alice, bob = p["alice"], p["bob"]
        app = p.node.directory.require_app(bob.app_id)
        forbidden = f"http://{FORBIDDEN_HOST}:{listener.port}/calls"
        p.node.directory.update_app(dataclasses.replace(app, callback_url=forbidden))
        status, call = await alice.client.create_call(alice.bot.url, [app_target(bob.app_id)])
        assert status == 201, call
        for _ in range(100):
            if p.node.dispatcher.stats.refused:
                break
            await asyncio.sleep(0.02)
        assert p.node.dispatcher.stats.refused == 1  # the incoming-call notification, dropped
        assert listener.connections == 0 and not bob.bot.notifications
