"""Analytics code written for Graph works against the node: Microsoft's own msgraph-sdk (unmodified) subscribes to
`/communications/callRecords` (the node validates the notificationUrl, a real loopback HTTP server, with Graph's
token handshake), receives the `created` change notification after a bot-to-bot call, and lists the records with
`$filter` on startDateTime and `$expand=sessions($expand=segments)`.

The SDK is pointed at the node: base URL http://127.0.0.1:<port>/v1.0 and kiota's bearer-token provider with an
access-token provider that gets a client-credentials token from the node.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from kiota_abstractions.authentication import (
    AccessTokenProvider,
    AllowedHostsValidator,
    BaseBearerTokenAuthenticationProvider,
)
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.communications.call_records.call_records_request_builder import (
    CallRecordsRequestBuilder,
)
from msgraph.generated.models.subscription import Subscription

from opencomms.testing import running_node
from opencomms.testing.harness import GraphClient, app_target
from tests.integration.conftest import ALL_CALL_PERMISSIONS, make_platform, node_config

PERMS = [*ALL_CALL_PERMISSIONS, "CallRecords.Read.All"]


class NodeTokens(AccessTokenProvider):  # type: ignore[misc]
    """Client-credentials tokens from the node's token endpoint, for kiota."""

    def __init__(self, base_url: str, tenant: str, app_id: str, secret: str) -> None:
        self.client = GraphClient(base_url, tenant, app_id, secret)

    async def get_authorization_token(self, uri: str, additional_authentication_context: Any = None) -> str:
        if self.client.token is None:
            async with self.client:
                pass
        assert self.client.token is not None
        return self.client.token

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return AllowedHostsValidator(["127.0.0.1"])


def sdk(base_url: str, tenant: str, app_id: str, secret: str) -> GraphServiceClient:
    adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(NodeTokens(base_url, tenant, app_id, secret)))
    adapter.base_url = f"{base_url}/v1.0"
    return GraphServiceClient(request_adapter=adapter)


class Receiver:
    """A notificationUrl: echoes Graph's validation token, keeps the change notifications it gets."""

    def __init__(self) -> None:
        self.validations: list[str] = []
        self.notifications: list[dict[str, Any]] = []
        self.got = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        token = request.query.get("validationToken")
        if token is not None:
            self.validations.append(token)
            return web.Response(text=token, content_type="text/plain")
        self.notifications.append(await request.json())
        self.got.set()
        return web.Response(status=202)

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/notify", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/notify"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


async def test_msgraph_sdk_subscribes_to_call_records_and_lists_them() -> None:
    async with make_platform(node_config(), ("alice", "bob"), {"alice": PERMS}) as p, Receiver() as receiver:
        alice = p["alice"]
        graph = sdk(p.node.public_url, p.tenant_id, alice.app_id, alice.secret)
        expires = datetime.now(UTC) + timedelta(minutes=60)
        created = await graph.subscriptions.post(
            Subscription(
                change_type="created",
                notification_url=receiver.url,
                resource="/communications/callRecords",
                expiration_date_time=expires,
                client_state="s3cret-state",
            )
        )
        assert created is not None and created.id and len(receiver.validations) == 1
        assert created.resource == "/communications/callRecords" and created.client_state == "s3cret-state"
        before = datetime.now(UTC) - timedelta(seconds=5)

        status, call = await alice.client.create_call(alice.bot.url, [app_target(p["bob"].app_id)])
        assert status == 201, call
        incoming = await p["bob"].bot.incoming(timeout=10)
        assert await p["bob"].client.answer(incoming.call_id) == 202
        await alice.bot.wait_state(call["id"], "established", timeout=10)
        assert await alice.client.hang_up(call["id"]) == 204

        await asyncio.wait_for(receiver.got.wait(), 10)
        (change,) = receiver.notifications[0]["value"]
        chain = call["callChainId"]
        assert change["subscriptionId"] == created.id and change["clientState"] == "s3cret-state"
        assert change["changeType"] == "created" and change["tenantId"] == p.tenant_id
        assert change["resource"] == f"communications/callRecords/{chain}"
        assert change["resourceData"]["id"] == chain
        assert change["resourceData"]["@odata.type"] == "#microsoft.graph.callRecord"

        query = CallRecordsRequestBuilder.CallRecordsRequestBuilderGetQueryParameters(
            filter=f"startDateTime ge {before.strftime('%Y-%m-%dT%H:%M:%SZ')}",
            expand=["sessions($expand=segments)"],
        )
        config = CallRecordsRequestBuilder.CallRecordsRequestBuilderGetRequestConfiguration(query_parameters=query)
        page = await graph.communications.call_records.get(request_configuration=config)
        assert page is not None and page.value is not None
        (record,) = [r for r in page.value if r.id == chain]
        assert record.sessions and record.sessions[0].segments, "bot-to-bot calls have sessions too"
        assert record.sessions[0].caller is not None
        one = await graph.communications.call_records.by_call_record_id(chain).get()
        assert one is not None and one.id == chain and not one.sessions  # no $expand: no sessions, as Graph

        later = CallRecordsRequestBuilder.CallRecordsRequestBuilderGetQueryParameters(
            filter=f"startDateTime gt {(datetime.now(UTC) + timedelta(hours=1)).strftime('%Y-%m-%dT%H:%M:%SZ')}"
        )
        config = CallRecordsRequestBuilder.CallRecordsRequestBuilderGetRequestConfiguration(query_parameters=later)
        empty = await graph.communications.call_records.get(request_configuration=config)
        assert empty is not None and empty.value == []

        listed = await graph.subscriptions.get()
        assert listed is not None and [s.id for s in listed.value or []] == [created.id]
        await graph.subscriptions.by_subscription_id(created.id).delete()
        listed = await graph.subscriptions.get()
        assert listed is not None and listed.value == []


async def test_a_notification_url_that_fails_the_handshake_gets_400() -> None:
    async def wrong(_request: web.Request) -> web.Response:
        return web.Response(text="wrong", content_type="text/plain")

    async with running_node(node_config()) as node:
        tenant = node.directory.create_tenant("Contoso", "contoso.example")
        app, secret = node.directory.create_app(tenant.id, "Analytics", permissions=PERMS, callback_url="")
        async with GraphClient(node.public_url, tenant.id, app.id, secret) as client:
            app_ = web.Application()
            app_.router.add_post("/notify", wrong)
            runner = web.AppRunner(app_)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            url = f"http://127.0.0.1:{runner.addresses[0][1]}/notify"
            body = {
                "changeType": "created",
                "notificationUrl": url,
                "resource": "/communications/callRecords",
                "expirationDateTime": (datetime.now(UTC) + timedelta(minutes=30)).isoformat(),
            }
            try:
                status, answer, _ = await client.request("POST", "/subscriptions", body)
                assert status == 400 and "validation" in answer["error"]["message"], answer
                too_long = {**body, "expirationDateTime": (datetime.now(UTC) + timedelta(minutes=4231)).isoformat()}
                status, answer, _ = await client.request("POST", "/subscriptions", too_long)
                assert status == 400 and "4230 minutes" in answer["error"]["message"], answer
            finally:
                await runner.cleanup()
