"""A real node on loopback with three registered bots, each a real webhook HTTP server, and their clients."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from opencomms.config import CallsConfig, EgressConfig, NodeConfig, SipConfig, ThrottleSettings
from opencomms.server import Node
from opencomms.testing import GraphClient, RecordingBot, running_node

ALL_CALL_PERMISSIONS = ["Calls.Initiate.All", "Calls.InitiateGroupCall.All", "Calls.AccessMedia.All"]


@dataclass
class BotHandle:
    app_id: str
    secret: str
    bot: RecordingBot
    client: GraphClient


@dataclass
class Platform:
    node: Node
    tenant_id: str
    bots: dict[str, BotHandle]

    def __getitem__(self, name: str) -> BotHandle:
        return self.bots[name]


@asynccontextmanager
async def make_platform(
    config: NodeConfig,
    names: tuple[str, ...] = ("alice", "bob", "carol"),
    perms: dict[str, list[str]] | None = None,
) -> AsyncIterator[Platform]:
    async with running_node(config) as node:
        tenant = node.directory.create_tenant("Contoso", "contoso.example")
        bots: dict[str, BotHandle] = {}
        try:
            for name in names:
                bot = RecordingBot(app_id="", jwks_url=f"{node.public_url}/common/discovery/v2.0/keys")
                await bot.start(f"/{name}/calls")
                app, secret = node.directory.create_app(
                    tenant.id,
                    f"{name.title()} Bot",
                    permissions=(perms or {}).get(name, ALL_CALL_PERMISSIONS),
                    callback_url=bot.url,
                )
                bot.app_id = app.id
                client = GraphClient(node.public_url, tenant.id, app.id, secret)
                await client.__aenter__()
                bots[name] = BotHandle(app.id, secret, bot, client)
            yield Platform(node, tenant.id, bots)
        finally:
            for handle in bots.values():
                await handle.client.__aexit__(None, None, None)
                await handle.bot.stop()


@dataclass
class HttpEnv:
    """A platform plus a raw HTTP session, for tests that craft requests byte by byte."""

    p: Platform
    http: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return self.p.node.public_url

    def token(self, name: str) -> str:
        token = self.p[name].client.token
        assert token is not None
        return token


def node_config(**changes: Any) -> NodeConfig:
    base = NodeConfig(
        host="127.0.0.1",
        port=0,
        store_url="memory://",
        log_format="text",
        calls=CallsConfig(answer_timeout=15.0),
        throttle=ThrottleSettings(),
        sip=SipConfig(port=0),
        egress=EgressConfig(allow=("127.0.0.1", "::1")),  # the bots run on loopback
    )
    return dataclasses.replace(base, **changes)


@pytest.fixture
async def platform() -> AsyncIterator[Platform]:
    async with make_platform(node_config()) as p:
        yield p


@pytest.fixture(autouse=True)
def _media_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """OPENCOMMS_TEST_MEDIA_PROCESS=1 runs every node of the suite with `[media] process = true`, =0 with false."""
    forced = os.environ.get("OPENCOMMS_TEST_MEDIA_PROCESS")
    if forced not in ("0", "1"):
        return
    original = Node.__init__

    def init(self: Node, config: NodeConfig, *args: Any, **kwargs: Any) -> None:
        media = dataclasses.replace(config.media, process=forced == "1")
        original(self, dataclasses.replace(config, media=media), *args, **kwargs)

    monkeypatch.setattr(Node, "__init__", init)
