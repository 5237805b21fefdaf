"""Egress probe: how many forbidden callback, redirect and WebSocket destinations a running node reaches (expected 0).

Run: .venv/bin/python bench/egress_probe.py [--rounds 1]

A node (in-process, on loopback) whose egress allow list holds only 127.0.0.1, where two bots run. The "forbidden"
destinations are real listeners on 127.0.0.2 (and ::1 when the host has IPv6 loopback) that count every TCP
connection, written in every form an attacker would try: the address itself, IPv4-mapped IPv6, decimal, octal, hex
and short encodings, a trailing dot, and a name that DNS answers with 127.0.0.2 (this process's resolver is
patched for that one name, as a hostile or internal DNS would answer). Cloud metadata, private, link-local, CGNAT,
6to4 and NAT64 literals are also tried where the API alone must refuse them (no traffic leaves loopback).

Four ways in, each destination tried through each that applies:
* `callbackUri` on create, and on answer (a new call each): reached = the node accepted it (not 400), i.e. it would
  post there;
* a bot answering a notification with 307 to the destination: reached = a connection or the callback moved;
* an app-hosted media endpoint (allowed) answering the WebSocket handshake with 302 to the destination.

Prints one line per way and, last, "Callback, redirect and WebSocket destinations tried: N; reached: R".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from opencomms.config import EgressConfig, MediaConfig, NodeConfig, SipConfig
from opencomms.server import Node
from opencomms.testing.harness import GraphClient, RecordingBot, app_target, running_node

FORBIDDEN = "127.0.0.2"
HOSTILE_NAME = "billing.internal.probe"
PERMISSIONS = ["Calls.Initiate.All", "Calls.AccessMedia.All"]


class Listener:
    """Counts TCP connections; answers nothing."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> Listener:
        async def accept(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            writer.close()

        self._server = await asyncio.start_server(accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def destinations(v4: Listener, v6: Listener | None) -> tuple[list[str], list[str]]:
    """(observable: they lead to a listener if followed; API-only: non-loopback literals refused at the API)."""
    p = v4.port
    observable = [
        f"http://{FORBIDDEN}:{p}/cb",
        f"http://{FORBIDDEN}.:{p}/cb",
        f"http://[::ffff:{FORBIDDEN}]:{p}/cb",
        f"http://[::ffff:7f00:2]:{p}/cb",
        f"http://2130706434:{p}/cb",
        f"http://017700000002:{p}/cb",
        f"http://0x7f000002:{p}/cb",
        f"http://0x7f.0.0.2:{p}/cb",
        f"http://0177.0.0.02:{p}/cb",
        f"http://127.2:{p}/cb",
        f"http://{HOSTILE_NAME}:{p}/cb",
        f"http://{HOSTILE_NAME.upper()}.:{p}/cb",
    ]
    if v6 is not None:
        observable += [f"http://[::1]:{v6.port}/cb", f"http://[0:0:0:0:0:0:0:1]:{v6.port}/cb"]
    api_only = [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
        "http://0251.0376.0251.0376/latest/meta-data/",
        "http://2852039166/latest/meta-data/",
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
        "http://[2002:a9fe:a9fe::]/latest/meta-data/",
        "http://10.0.0.1/cb",
        "http://172.16.0.1/cb",
        "http://192.168.1.1/cb",
        "http://100.64.0.1/cb",
        "http://[fe80::1%25lo]/cb",
        "http://[fd00::1]/cb",
        "http://0.0.0.0/cb",
        "http://224.0.0.1/cb",
        "http://localhost/cb",
    ]
    return observable, api_only


@contextmanager
def hostile_dns(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    real = loop.getaddrinfo

    async def getaddrinfo(host: Any, port: Any, **kw: Any) -> Any:
        if isinstance(host, str) and host.rstrip(".").lower() == HOSTILE_NAME:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (FORBIDDEN, int(port or 0)))]
        return await real(host, port, **kw)

    loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign]
    try:
        yield
    finally:
        del loop.getaddrinfo  # type: ignore[method-assign]


class Probe:
    def __init__(self, node: Node, listeners: list[Listener]) -> None:
        self.node = node
        self.listeners = listeners
        self.bots: dict[str, tuple[RecordingBot, GraphClient]] = {}
        self.tried = 0
        self.reached = 0

    def connections(self) -> int:
        return sum(listener.connections for listener in self.listeners)

    async def add_bot(self, tenant_id: str, name: str) -> None:
        bot = RecordingBot(app_id="", jwks_url=f"{self.node.public_url}/common/discovery/v2.0/keys")
        await bot.start(f"/{name}/calls")
        app, secret = self.node.directory.create_app(tenant_id, name, permissions=PERMISSIONS, callback_url=bot.url)
        bot.app_id = app.id
        client = GraphClient(self.node.public_url, tenant_id, app.id, secret)
        await client.__aenter__()
        self.bots[name] = (bot, client)

    async def close(self) -> None:
        for bot, client in self.bots.values():
            await client.__aexit__(None, None, None)
            await bot.stop()

    async def ring(self) -> tuple[str, str]:
        """Alice calls Bob; returns (Alice's call id, Bob's incoming call id), not answered yet."""
        alice, a_client = self.bots["alice"]
        bob, _ = self.bots["bob"]
        status, call = await a_client.create_call(alice.url, [app_target(bob.app_id)])
        assert status == 201, call
        rung = sum(1 for n in bob.notifications if n.change_type == "created")
        incoming = await bob.incoming(index=rung)
        return call["id"], incoming.call_id

    def count(self, way: str, url: str, reached: bool) -> None:
        self.tried += 1
        if reached:
            self.reached += 1
            print(f"  REACHED via {way}: {url}")

    async def callbacks_on_create(self, urls: list[str]) -> int:
        _, a_client = self.bots["alice"]
        bob, _ = self.bots["bob"]
        for url in urls:
            status, _data = await a_client.create_call(url, [app_target(bob.app_id)])
            self.count("callbackUri on create", url, status != 400)
        return len(urls)

    async def callbacks_on_answer(self, urls: list[str]) -> int:
        _, b_client = self.bots["bob"]
        media = {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}
        for url in urls:
            _, b_id = await self.ring()
            body = {"acceptedModalities": ["audio"], "callbackUri": url, "mediaConfig": media}
            status, _, _ = await b_client.request("POST", f"/communications/calls/{b_id}/answer", body)
            self.count("callbackUri on answer", url, status != 400)
            await b_client.hang_up(b_id)
        return len(urls)

    async def redirects(self, urls: list[str]) -> int:
        alice, _ = self.bots["alice"]
        _, b_client = self.bots["bob"]
        pending: list[str] = []

        def responder(body: dict[str, Any]) -> int | tuple[int, dict[str, str]]:
            state = (body["value"][0].get("resourceData") or {}).get("state")
            if state == "establishing" and pending:
                return 307, {"Location": pending.pop(0)}
            return 202

        alice.responder = responder
        try:
            for url in urls:
                before = self.connections()
                pending.append(url)
                a_id, b_id = await self.ring()
                assert await b_client.answer(b_id) == 202
                try:
                    await alice.wait_state(a_id, "established", timeout=3)
                except TimeoutError:  # the redirected notification is being retried there: it was followed
                    pass
                call = self.node.calls.calls.get(a_id)
                moved = call is not None and call.callback_uri != alice.url
                self.count("notification redirect", url, moved or self.connections() > before)
                await b_client.hang_up(b_id)
        finally:
            alice.responder = None
        return len(urls)

    async def websockets(self, urls: list[str]) -> int:
        bob, b_client = self.bots["bob"]
        targets: dict[str, str] = {}

        async def redirect(request: web.Request) -> web.Response:
            raise web.HTTPFound(targets[request.match_info["n"]])

        app = web.Application()
        app.router.add_get("/{n}", redirect)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            for i, url in enumerate(urls):
                targets[str(i)] = url
                before = self.connections()
                blob = {"v": 1, "url": f"ws://127.0.0.1:{port}/{i}", "key": "probe", "secret": "s" * 32}
                config = {"@odata.type": "#microsoft.graph.appHostedMediaConfig", "blob": json.dumps(blob)}
                _, b_id = await self.ring()
                body = {"acceptedModalities": ["audio"], "mediaConfig": config}
                status, data, _ = await b_client.request("POST", f"/communications/calls/{b_id}/answer", body)
                assert status == 202, data
                note = await bob.wait_state(b_id, "terminated", timeout=10)
                info = (note.resource_data or {}).get("resultInfo", {})
                failed_right = (info.get("code"), info.get("subcode")) == (410, 9140)
                self.count("app-hosted WebSocket redirect", url, self.connections() > before or not failed_right)
        finally:
            await runner.cleanup()
        return len(urls)


async def run(rounds: int, allow: tuple[str, ...] = ()) -> int:
    v4 = await Listener(FORBIDDEN).start()
    v6: Listener | None = None
    if socket.has_ipv6:
        try:
            v6 = await Listener("::1").start()
        except OSError:
            v6 = None
    listeners = [v4] + ([v6] if v6 is not None else [])
    observable, api_only = destinations(v4, v6)
    config = NodeConfig(
        host="127.0.0.1",
        port=0,
        store_url="memory://",
        log_level="error",
        log_format="text",
        sip=SipConfig(enabled=False, port=0),
        media=MediaConfig(app_hosted_connect_timeout=2.0),
        egress=EgressConfig(allow=("127.0.0.1", *allow)),  # the bots' address only (unless --allow adds some)
    )
    try:
        with hostile_dns(asyncio.get_running_loop()):
            async with running_node(config) as node:
                tenant = node.directory.create_tenant("Probe", "probe.example")
                probe = Probe(node, listeners)
                try:
                    await probe.add_bot(tenant.id, "alice")
                    await probe.add_bot(tenant.id, "bob")
                    for _ in range(rounds):
                        ways = [
                            ("callbackUri on create", await probe.callbacks_on_create(observable + api_only)),
                            ("callbackUri on answer", await probe.callbacks_on_answer(observable + api_only)),
                            ("notification redirect (307)", await probe.redirects(observable)),
                            ("app-hosted WebSocket redirect (302)", await probe.websockets(observable)),
                        ]
                        for way, n in ways:
                            print(f"{way}: {n} destinations")
                    await asyncio.sleep(0.2)  # a late connection would still be counted
                    stats = node.dispatcher.stats
                    print(
                        f"node counters: notifications refused {stats.refused}, "
                        f"app-hosted refused {node.app_hosted.stats.refused}; "
                        f"listener connections {probe.connections()}"
                    )
                    reached = probe.reached
                    print(f"Callback, redirect and WebSocket destinations tried: {probe.tried}; reached: {reached}")
                    return reached
                finally:
                    await probe.close()
    finally:
        for listener in listeners:
            await listener.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1, help="times every destination is tried (default 1)")
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        help="extra egress allow entry (e.g. 127.0.0.2: shows the probe counting destinations it reached)",
    )
    parser.add_argument("--verbose", action="store_true", help="show the node's warnings (each refusal)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING if args.verbose else logging.ERROR, format="%(name)s %(message)s")
    reached = asyncio.run(run(args.rounds, tuple(args.allow)))
    sys.exit(1 if reached else 0)


if __name__ == "__main__":
    main()
