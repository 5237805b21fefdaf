"""Any node serves any REST request: a bot creates a call through node A and acts on it through node B (B forwards
to A, the owner, signed with the cluster secret); /healthz of each node names its role, id, leases and Redis; a
request that claims to be forwarded but is not signed by a node of the cluster is refused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from typer.testing import CliRunner

from opencomms.cli.main import app as cli
from opencomms.config import ClusterConfig, ThrottleConfig
from opencomms.directory import Directory
from opencomms.domain.ids import new_id
from opencomms.server import Node
from opencomms.store.redis_common import RedisTarget
from opencomms.store.redis_sync import RedisStore
from opencomms.testing import GraphClient, RecordingBot, running_node
from opencomms.testing.harness import app_target
from tests.integration.conftest import ALL_CALL_PERMISSIONS, node_config
from tests.redis_fixtures import redis_url

__all__ = ["redis_url"]  # fixtures


@asynccontextmanager
async def two_nodes(url: str, **changes: Any) -> AsyncIterator[tuple[list[Node], str, dict[str, Any]]]:
    """Nodes a and b on one Redis, a tenant with apps alice and bob (their webhooks running)."""
    prefix = f"t{new_id()[:8]}:"
    store = RedisStore(RedisTarget(url, "setup", prefix=prefix))
    directory = Directory(store)
    tenant = directory.create_tenant("Contoso", "contoso.example")
    apps: dict[str, Any] = {}
    async with AsyncExitStack() as stack:
        stack.callback(store.close)
        nodes = []
        for name in ("a", "b"):
            cluster = ClusterConfig(node_id=name, key_prefix=prefix, lease=1.5, claim_idle=0.6, poll=0.2)
            nodes.append(
                await stack.enter_async_context(running_node(node_config(store_url=url, cluster=cluster, **changes)))
            )
        for name in ("alice", "bob"):
            bot = RecordingBot(app_id="", jwks_url=f"{nodes[0].public_url}/common/discovery/v2.0/keys")
            await bot.start(f"/{name}/calls")
            stack.push_async_callback(bot.stop)
            app, secret = directory.create_app(tenant.id, name, permissions=ALL_CALL_PERMISSIONS, callback_url=bot.url)
            bot.app_id = app.id
            apps[name] = (bot, app.id, secret)
        yield nodes, tenant.id, apps


async def test_a_call_created_through_one_node_is_served_through_another(redis_url: str) -> None:
    async with two_nodes(redis_url) as (nodes, tenant, apps):
        a, b = nodes
        alice_bot, alice_id, alice_secret = apps["alice"]
        bob_bot, bob_id, bob_secret = apps["bob"]
        async with (
            GraphClient(a.public_url, tenant, alice_id, alice_secret) as alice_a,
            GraphClient(b.public_url, tenant, alice_id, alice_secret) as alice_b,
            GraphClient(b.public_url, tenant, bob_id, bob_secret) as bob_b,
        ):
            status, call = await alice_a.create_call(alice_bot.url, [app_target(bob_id)])
            assert status == 201, call
            incoming = await bob_bot.incoming(timeout=5)
            assert await bob_b.answer(incoming.call_id) == 202  # B forwards to A, the owner
            await alice_bot.wait_state(call["id"], "established", timeout=5)
            status, got, _ = await alice_b.request("GET", f"/communications/calls/{call['id']}")
            assert status == 200 and got["state"] == "established"
            status, _, _ = await alice_b.request("GET", f"/communications/calls/{new_id()}")
            assert status == 404
            assert b.cluster is not None and b.cluster.forwarder.forwarded >= 2
            assert a.cluster is not None and a.cluster.forwarder.received >= 2
            assert await alice_b.hang_up(call["id"]) == 204
            await alice_bot.wait_state(call["id"], "terminated", timeout=5)
            await bob_bot.wait_for(lambda n: n.change_type == "deleted", timeout=5)


async def test_healthz_names_the_node_and_its_leases(redis_url: str) -> None:
    async with two_nodes(redis_url) as (nodes, tenant, apps):
        a, b = nodes
        alice_bot, alice_id, alice_secret = apps["alice"]
        async with GraphClient(a.public_url, tenant, alice_id, alice_secret) as alice:
            status, call = await alice.create_call(alice_bot.url, [app_target(apps["bob"][1])])
            assert status == 201
            health_a = (await alice.request("GET", f"{a.public_url}/healthz"))[1]["cluster"]
            health_b = (await alice.request("GET", f"{b.public_url}/healthz"))[1]["cluster"]
            assert health_a["node_id"] == "a" and health_a["role"] == "node" and health_a["redis"] == "ok"
            assert health_a["leases"] >= 1 and health_b["leases"] == 0
            env = {"OPENCOMMS_CLUSTER__KEY_PREFIX": a.config.cluster.key_prefix}
            argv = ["calls", "show", call["id"], "--store", redis_url, "--json"]
            shown = await asyncio.to_thread(CliRunner().invoke, cli, argv, env=env)
            assert shown.exit_code == 0, shown.output
            assert json.loads(shown.output)["owner_node"] == "a"  # the operator sees which node serves it
            assert json.loads(shown.output)["owner_url"] == a.public_url
            listed = await asyncio.to_thread(CliRunner().invoke, cli, ["calls", "list", *argv[3:]], env=env)
            assert [row["owner_node"] for row in json.loads(listed.output)] == ["a", "a"]
            status_a = await asyncio.to_thread(CliRunner().invoke, cli, ["status", "--url", a.public_url])
            assert "node a: " in status_a.output and "Redis ok" in status_a.output, status_a.output
            assert await alice.hang_up(call["id"]) == 204


async def test_throttling_counts_an_apps_requests_across_the_cluster(redis_url: str) -> None:
    """Each node alone would let 4 requests a second through (its own bucket holds 10); together they count the
    app's 8 requests against the cluster-wide 3 a second and refuse the next ones on both nodes (429)."""
    async with two_nodes(redis_url, throttle=ThrottleConfig(rate=3, burst=10)) as (nodes, tenant, apps):
        _bot, alice_id, alice_secret = apps["alice"]
        async with (
            GraphClient(nodes[0].public_url, tenant, alice_id, alice_secret) as on_a,
            GraphClient(nodes[1].public_url, tenant, alice_id, alice_secret) as on_b,
        ):
            path = f"/communications/calls/{new_id()}"
            for client in (on_a, on_b):  # tokens fetched before the burst
                assert (await client.request("GET", path))[0] == 404
            # the other 6 at once, so that the 8 land in one or two one-second windows whatever the machine's load
            answers = await asyncio.gather(*(c.request("GET", path) for c in (on_a, on_b) * 3))
            assert [status for status, _, _ in answers] == [404] * 6  # each node's own bucket lets them through
            await asyncio.sleep(0.6)  # the counts meet in Redis (each node adds its own every 0.25 s)
            for client in (on_a, on_b):
                status, _, headers = await client.request("GET", path)
                assert status == 429 and int(headers["Retry-After"]) >= 1


async def test_nodes_behind_one_public_url_forward_to_their_own_addresses(redis_url: str) -> None:
    """Several machines behind one load balancer share its public URL (so a token any node issues is valid at
    every node); each registers its own address for forwarding."""
    async with two_nodes(redis_url, public_url="http://127.0.0.1:9") as (nodes, tenant, apps):
        a, b = nodes
        assert a.cluster is not None and b.cluster is not None
        assert a.cluster.registry.url == f"http://127.0.0.1:{a.port}" != b.cluster.registry.url
        assert await b.cluster.registry.url_of("a") == a.cluster.registry.url
        _bot, alice_id, _secret = apps["alice"]
        token, _ = a.tokens.issue_access_token(
            tenant_id=tenant, app_id=alice_id, roles=(), audience=a.public_url, now=a.clock()
        )
        assert b.tokens.validate_access_token(token, b.clock()).app_id == alice_id
