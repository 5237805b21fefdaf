"""A real node on loopback and SDK bots: each a CommsClient plus a NotificationReceiver served on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest

from opencomms.sdk import ClientCredentials, CommsClient, Notification, NotificationReceiver, jwks_url_for
from opencomms.sdk.serve import serve_receiver
from opencomms.server import Node
from opencomms.testing import running_node
from tests.integration.conftest import ALL_CALL_PERMISSIONS, node_config


@dataclass
class Inbox:
    """Notifications a bot's handler received, with waiting helpers."""

    items: list[Notification] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def handle(self, note: Notification) -> None:
        self.items.append(note)
        async with self.changed:
            self.changed.notify_all()

    async def wait_for(self, pred: Callable[[Notification], bool], timeout: float = 5.0) -> Notification:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(lambda: any(pred(n) for n in self.items)), timeout)
        return next(n for n in self.items if pred(n))


@dataclass
class SdkBot:
    app_id: str
    secret: str
    client: CommsClient
    receiver: NotificationReceiver
    url: str
    inbox: Inbox


@dataclass
class SdkEnv:
    node: Node
    tenant_id: str
    stack: AsyncExitStack

    def credentials(self, app_id: str, secret: str) -> ClientCredentials:
        return ClientCredentials(self.node.public_url, self.tenant_id, app_id, secret)

    def register(self, name: str, permissions: list[str] | None = None) -> tuple[str, str]:
        app, secret = self.node.directory.create_app(
            self.tenant_id, f"{name.title()} Bot", permissions=permissions or ALL_CALL_PERMISSIONS
        )
        return app.id, secret

    def set_callback(self, app_id: str, url: str) -> None:
        app = self.node.directory.require_app(app_id)
        self.node.directory.update_app(dataclasses.replace(app, callback_url=url))

    async def bot(self, name: str, **receiver_args: Any) -> SdkBot:
        """A registered app with a client and a receiver (its registered callback URL) on loopback."""
        app_id, secret = self.register(name)
        inbox = Inbox()
        receiver = NotificationReceiver(
            app_id=app_id, jwks_url=jwks_url_for(self.node.public_url), handler=inbox.handle, **receiver_args
        )
        base = await self.stack.enter_async_context(serve_receiver(receiver))
        url = f"{base}/{name}/calls"
        self.set_callback(app_id, url)
        client = await self.stack.enter_async_context(
            CommsClient(self.node.public_url, self.credentials(app_id, secret))
        )
        return SdkBot(app_id, secret, client, receiver, url, inbox)


@pytest.fixture
async def env() -> AsyncIterator[SdkEnv]:
    async with running_node(node_config()) as node, AsyncExitStack() as stack:
        tenant = node.directory.create_tenant("Contoso", "contoso.example")
        yield SdkEnv(node, tenant.id, stack)
