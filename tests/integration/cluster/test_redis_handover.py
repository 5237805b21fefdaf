"""Two nodes on one Redis: node A (its own process) creates a call and dies (`kill -9`) with its notifications still
undelivered (the bots were down); node B claims them from the outbox stream and delivers them in per-call order,
then serves the call itself once A's lease has lapsed (bot-to-bot signalling survives the node)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from opencomms.config import ClusterConfig, NodeConfig, NotifyConfig
from opencomms.directory import Directory
from opencomms.domain.ids import new_id
from opencomms.store.redis_common import RedisTarget
from opencomms.store.redis_sync import RedisStore
from opencomms.testing import GraphClient, RecordingBot, running_node
from opencomms.testing.harness import Responder, app_target
from tests.integration.conftest import ALL_CALL_PERMISSIONS, node_config
from tests.redis_fixtures import redis_url
from tests.sipp.sipp import LOOPBACK, run_sipp

__all__ = ["redis_url"]  # fixtures

CLUSTER = {"LEASE": "1.2", "CLAIM_IDLE": "0.6", "POLL": "0.2"}


def start_node_a(url: str, prefix: str, tmp: Path, **extra: str) -> tuple[subprocess.Popen[bytes], str]:
    ready = tmp / "a.ready"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "OPENCOMMS_LOG_LEVEL": "warning",
        "OPENCOMMS_EGRESS__ALLOW": "127.0.0.1,::1",
        "OPENCOMMS_SIP__PORT": "0",
        "OPENCOMMS_NOTIFY__INITIAL_RETRY_DELAY": "0.1",
        "OPENCOMMS_NOTIFY__MAX_RETRY_DELAY": "0.2",
        "OPENCOMMS_CLUSTER__NODE_ID": "a",
        "OPENCOMMS_CLUSTER__KEY_PREFIX": prefix,
        **{f"OPENCOMMS_CLUSTER__{k}": v for k, v in CLUSTER.items()},
        **extra,
    }
    argv = [sys.executable, "-m", "opencomms.cli.main", "serve", "--store", url, "--port", "0"]
    proc = subprocess.Popen([*argv, "--ready-file", str(ready)], env=env, stderr=(tmp / "a.log").open("wb"))
    deadline = time.monotonic() + 20
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline, (tmp / "a.log").read_text()
        time.sleep(0.05)
    return proc, ready.read_text()


async def start_bots(
    directory: Directory, tenant_id: str, names: tuple[str, ...], responder: Responder | None = None
) -> tuple[dict[str, RecordingBot], dict[str, tuple[str, str]]]:
    """A RecordingBot per name, each with its app (id, secret) calling back to it; jwks_url is set once a node is up."""
    bots: dict[str, RecordingBot] = {}
    apps: dict[str, tuple[str, str]] = {}
    for name in names:
        bots[name] = bot = RecordingBot(app_id="", jwks_url="", responder=responder)
        await bot.start(f"/{name}/calls")
        app, secret = directory.create_app(tenant_id, name, permissions=ALL_CALL_PERMISSIONS, callback_url=bot.url)
        bot.app_id, apps[name] = app.id, (app.id, secret)
    return bots, apps


def node_b_config(redis_url: str, prefix: str, **changes: Any) -> NodeConfig:
    """Node B (in this process): the cluster's short lease and claim times, like node A's."""
    cluster = ClusterConfig(node_id="b", key_prefix=prefix, lease=1.2, claim_idle=0.6, poll=0.2)
    return dataclasses.replace(node_config(), store_url=redis_url, cluster=cluster, **changes)


async def shut_down(
    proc: subprocess.Popen[bytes], bots: dict[str, RecordingBot], store: RedisStore, sipp: Awaitable[Any] | None = None
) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    if sipp is not None:
        await sipp
    for bot in bots.values():
        await bot.stop()
    store.close()


async def test_a_dead_nodes_notifications_are_delivered_by_another_node(redis_url: str, tmp_path: Path) -> None:
    prefix = f"t{new_id()[:8]}:"
    store = RedisStore(RedisTarget(redis_url, "setup", prefix=prefix))
    directory = Directory(store)
    tenant = directory.create_tenant("Contoso", "contoso.example")
    down = True
    bots, apps = await start_bots(directory, tenant.id, ("alice", "bob"), lambda _: 503 if down else 202)
    proc, a_url = await asyncio.to_thread(start_node_a, redis_url, prefix, tmp_path)
    cfg = node_b_config(redis_url, prefix, notify=NotifyConfig(initial_retry_delay=0.1))
    try:
        async with running_node(cfg) as node_b:
            for bot in bots.values():  # the keys are the cluster's: B's JWKS is A's
                bot.jwks_url = f"{node_b.public_url}/common/discovery/v2.0/keys"
            async with GraphClient(a_url, tenant.id, *apps["alice"]) as alice:
                status, call = await alice.create_call(bots["alice"].url, [app_target(apps["bob"][0])])
                assert status == 201, call
            await asyncio.sleep(0.5)  # A tries, the bots answer 503: the notifications wait on A
            proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(proc.wait)
            down = False
            incoming = await bots["bob"].incoming(timeout=8)  # delivered by B, once A's entries went idle
            await bots["alice"].wait_state(call["id"], "establishing", timeout=8)
            assert node_b.dispatcher.stats.delivered >= 2
            async with GraphClient(node_b.public_url, tenant.id, *apps["bob"]) as bob:
                # B serves the call once A's lease has lapsed (503 + Retry-After until then)
                for _ in range(50):
                    if (status := await bob.answer(incoming.call_id)) != 503:
                        break
                    await asyncio.sleep(0.1)
                assert status == 202
            await bots["alice"].wait_state(call["id"], "established", timeout=8)
            async with GraphClient(node_b.public_url, tenant.id, *apps["alice"]) as alice_b:
                assert await alice_b.hang_up(call["id"]) == 204
            await bots["bob"].wait_for(lambda n: n.change_type == "deleted", timeout=8)
            await bots["alice"].wait_state(call["id"], "terminated", timeout=8)
            states: list[Any] = [n.state for n in bots["alice"].for_call(call["id"])]
            assert states == ["establishing", "established", "terminating", "terminated"]  # per-call order
    finally:
        await shut_down(proc, bots, store)


async def test_a_dead_nodes_phone_calls_end_and_its_bot_to_bot_calls_survive(redis_url: str, tmp_path: Path) -> None:
    """kill -9 of the node that held a phone's call and a bot-to-bot call: within a few seconds another node (which
    nobody asked anything) takes both conversations over; the phone's leg, whose dialog and RTP lived on the dead
    node, ends with resultInfo 503/9134 (NODE_LOST) and its bot is told; the bot-to-bot call carries on."""
    prefix = f"t{new_id()[:8]}:"
    store = RedisStore(RedisTarget(redis_url, "setup", prefix=prefix))
    directory = Directory(store)
    tenant = directory.create_tenant("Contoso", "contoso.example")
    bots, apps = await start_bots(directory, tenant.id, ("alice", "bob", "desk"))
    number = "+14255550177"
    directory.create_instance(apps["desk"][0], "Desk", phone_number=number)
    proc, a_url = await asyncio.to_thread(start_node_a, redis_url, prefix, tmp_path)
    for bot in bots.values():
        bot.jwks_url = f"{a_url}/common/discovery/v2.0/keys"
    cfg = node_b_config(redis_url, prefix)
    sipp: asyncio.Task[Any] | None = None
    try:
        async with running_node(cfg) as node_b:
            async with (
                GraphClient(a_url, tenant.id, *apps["alice"]) as alice,
                GraphClient(a_url, tenant.id, *apps["bob"]) as bob,
                GraphClient(a_url, tenant.id, *apps["desk"]) as desk,
            ):
                status, b2b = await alice.create_call(bots["alice"].url, [app_target(apps["bob"][0])])
                assert status == 201
                assert await bob.answer((await bots["bob"].incoming(timeout=5)).call_id) == 202
                await bots["alice"].wait_state(b2b["id"], "established", timeout=5)
                _, health, _ = await alice.request("GET", f"{a_url}/healthz")
                sipp = asyncio.create_task(
                    asyncio.to_thread(
                        run_sipp,
                        "uac_basic.xml",
                        LOOPBACK,
                        health["sip"]["port"],
                        service=number.lstrip("+"),
                        call_duration_ms=20000,
                        timeout=10,
                    )
                )
                phone = await bots["desk"].incoming(timeout=8)
                assert await desk.answer(phone.call_id) == 202
                await bots["desk"].wait_state(phone.call_id, "established", timeout=8)
            killed = time.monotonic()
            proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(proc.wait)
            ended = await bots["desk"].wait_state(phone.call_id, "terminated", timeout=8)
            assert time.monotonic() - killed < 5
            info = ended.resource_data["resultInfo"]
            assert (info["code"], info["subcode"]) == (503, 9134), info
            assert node_b.cluster is not None and node_b.cluster.sweep is not None
            assert node_b.cluster.sweep.taken >= 2
            assert not [n for n in bots["alice"].for_call(b2b["id"]) if n.state == "terminated"]
            async with GraphClient(node_b.public_url, tenant.id, *apps["alice"]) as alice_b:
                status, got, _ = await alice_b.request("GET", f"/communications/calls/{b2b['id']}")
                assert status == 200 and got["state"] == "established"  # survived the node
                assert await alice_b.hang_up(b2b["id"]) == 204
            await bots["alice"].wait_state(b2b["id"], "terminated", timeout=5)
            await bots["bob"].wait_for(lambda n: n.change_type == "deleted", timeout=5)
    finally:
        await shut_down(proc, bots, store, sipp)


async def test_a_dead_nodes_timers_fire_on_another_node(redis_url: str, tmp_path: Path) -> None:
    """A call ringing on node A when A dies: node B takes the conversation over by itself and ends the call when
    its answer window (stored with it) closes; the caller's bot hears it from B."""
    prefix = f"t{new_id()[:8]}:"
    store = RedisStore(RedisTarget(redis_url, "setup", prefix=prefix))
    directory = Directory(store)
    tenant = directory.create_tenant("Contoso", "contoso.example")
    bots, apps = await start_bots(directory, tenant.id, ("alice", "bob"))
    proc, a_url = await asyncio.to_thread(
        start_node_a, redis_url, prefix, tmp_path, OPENCOMMS_CALLS__ANSWER_TIMEOUT="4"
    )
    for bot in bots.values():
        bot.jwks_url = f"{a_url}/common/discovery/v2.0/keys"
    cfg = node_b_config(redis_url, prefix)
    try:
        async with running_node(cfg) as node_b:
            async with GraphClient(a_url, tenant.id, *apps["alice"]) as alice:
                status, call = await alice.create_call(bots["alice"].url, [app_target(apps["bob"][0])])
                assert status == 201
            await bots["bob"].incoming(timeout=10)  # ringing, never answered
            proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(proc.wait)
            ended = await bots["alice"].wait_state(call["id"], "terminated", timeout=20)
            assert ended.resource_data["resultInfo"]["code"] != 503  # the answer window, not a lost node
            assert node_b.cluster is not None and node_b.cluster.sweep is not None and node_b.cluster.sweep.taken >= 1
    finally:
        await shut_down(proc, bots, store)
