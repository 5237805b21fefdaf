"""The stateless IVR example (examples/ivr/stateless.py: two workers sharing their state in Redis behind the
example's proxy) against a three-node cluster as `opencomms cluster up` starts it (redis-server, real Kamailio,
three nodes). Three phones call the IVR's number through Kamailio at once: the round robin gives each node one
call (its dialog and media stay there), the IVR, pointed at node 1 only, answers and plays its menus (requests for
the calls of nodes 2 and 3 are forwarded to them), and each caller's keys route through the menu to the end."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from examples.common import BotSettings
from examples.ivr.cluster import run_cluster

from opencomms.cluster.local import LocalCluster
from opencomms.directory import Directory
from opencomms.store.redis_common import RedisTarget
from opencomms.store.redis_sync import RedisStore
from opencomms.testing.caller import VirtualCall, VirtualCaller
from tests.examples.conftest import ivr_menu
from tests.integration.cluster.support import NODE_ENV, healthz, three_nodes
from tests.integration.conftest import ALL_CALL_PERMISSIONS

pytestmark = pytest.mark.skipif(
    shutil.which("kamailio") is None or shutil.which("redis-server") is None,
    reason="needs kamailio and redis-server",
)

# the menus in milliseconds on every node (piper's model starts slowly)
IVR_NODE_ENV = (*NODE_ENV, ("OPENCOMMS_TTS__ENGINE", "espeak"))
NUMBER = "+14255550142"
MENU = ivr_menu(key_timeout=4)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from three_nodes(tmp_path_factory, IVR_NODE_ENV)


def provision(cluster: LocalCluster) -> BotSettings:
    """The IVR's tenant, application and phone number, in the cluster's Redis; the IVR talks to node 1."""
    store = RedisStore(RedisTarget(cluster.redis_url, "setup", prefix=cluster.plan.key_prefix))
    try:
        directory = Directory(store)
        tenant = directory.create_tenant("Contoso", "contoso.example")
        app, secret = directory.create_app(tenant.id, "ivr", permissions=ALL_CALL_PERMISSIONS)
        directory.create_instance(app.id, "Reception", phone_number=NUMBER)
    finally:
        store.close()
    return BotSettings(cluster.nodes[0].url, tenant.id, app.id, secret)


def set_callback(cluster: LocalCluster, app_id: str, url: str) -> None:
    import dataclasses

    store = RedisStore(RedisTarget(cluster.redis_url, "setup", prefix=cluster.plan.key_prefix))
    try:
        directory = Directory(store)
        directory.update_app(dataclasses.replace(directory.require_app(app_id), callback_url=url))
    finally:
        store.close()


async def heard(call: VirtualCall) -> None:
    await call.wait_for_speech(timeout=15)
    await call.wait_for_silence(0.3)


async def navigate(call: VirtualCall) -> None:
    """Main. -> 1 -> Sales. -> 9 -> Main. -> # -> Bye. (the IVR hangs up)."""
    for key in ("1", "9"):
        await call.press(key)
        await heard(call)
    await call.press("#")
    await call.wait_ended(timeout=15)
    assert call.ended_by == "far end"


async def test_the_stateless_ivr_answers_and_routes_keys_on_every_node(cluster: LocalCluster, tmp_path: Path) -> None:
    settings = provision(cluster)
    menu = tmp_path / "menu.yaml"
    menu.write_text(MENU)
    async with run_cluster(settings, cluster.redis_url, config=menu, workers=2, prefix="ivr3") as ivr:
        set_callback(cluster, settings.app_id, f"{ivr.url}/api/calls")
        async with VirtualCaller(("127.0.0.1", cluster.sip_port)) as phone:
            calls = []
            for _ in range(3):  # one after the other: Kamailio's round robin gives each node one
                call = await phone.dial(NUMBER)
                await call.wait_answered(timeout=15)
                calls.append(call)
            await asyncio.gather(*(heard(c) for c in calls))  # "Main." from each call's own node
            leases = [healthz(n.url)["cluster"]["leases"] for n in cluster.nodes]
            assert leases == [1, 1, 1], leases  # each node owns one of the calls
            await asyncio.gather(*(navigate(c) for c in calls))
        async with aioredis.Redis.from_url(cluster.redis_url) as r:
            for _ in range(100):
                results = [json.loads(raw) for raw in await r.lrange("ivr3:results", 0, -1)]
                if len(results) == 3:
                    break
                await asyncio.sleep(0.05)
        assert sorted((x["outcome"], x["keys"]) for x in results) == [("hangup", "19#")] * 3
    assert healthz(cluster.nodes[0].url)["cluster"]["forwarded"] > 0  # the IVR's requests for nodes 2 and 3
