"""A node on Redis (`store_url = "redis://..."`) serves what it serves on SQLite: a bot-to-bot call and a phone's
call to a bot, with its directory, keys, conversations and notifications all in a real redis-server."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from opencomms.cli.main import app
from opencomms.config import ClusterConfig, NodeConfig
from opencomms.domain.ids import new_id
from opencomms.gateway.register import Registrations
from opencomms.store.conversations import stored_conversations
from opencomms.store.redis_common import RedisTarget
from opencomms.store.redis_sync import RedisStore
from opencomms.testing.harness import app_target
from tests.integration import test_bot_to_bot as b2b
from tests.integration.conftest import make_platform, node_config
from tests.redis_fixtures import PersistentRedis, redis_url
from tests.sipp import sipp as harness
from tests.sipp.sipp import LOOPBACK, run_sipp

__all__ = ["redis_url"]  # fixtures

NUMBER = "+14255550100"


def redis_config(url: str, node_id: str = "n1", prefix: str = "") -> NodeConfig:
    cluster = ClusterConfig(node_id=node_id, key_prefix=prefix or f"t{new_id()[:8]}:")
    return dataclasses.replace(node_config(), store_url=url, cluster=cluster)


async def test_bot_to_bot_call_on_redis(redis_url: str) -> None:
    cfg = redis_config(redis_url)
    async with make_platform(cfg) as p:
        assert isinstance(p.node.store, RedisStore)
        await b2b.test_call_answer_and_hang_up(p)  # the whole SQLite test, on Redis
        a_id, _ = await b2b.place_call(p)
        live = await stored_conversations(p.node.conversations)
        assert len(live) == 1  # the conversation is in Redis, leased by this node
        other = RedisStore(RedisTarget(redis_url, "observer", prefix=cfg.cluster.key_prefix))
        assert other.get("tenant", p.tenant_id) is not None  # the directory too: any node sees it
        env = {"OPENCOMMS_CLUSTER__KEY_PREFIX": cfg.cluster.key_prefix}
        listed = await asyncio.to_thread(
            CliRunner().invoke, app, ["calls", "list", "--store", redis_url, "--json"], env=env
        )
        assert listed.exit_code == 0, listed.output
        assert a_id in {row["id"] for row in json.loads(listed.output)}  # the CLI reads the cluster's calls
        assert await p["alice"].client.hang_up(a_id) == 204
        await p["bob"].bot.wait_for(lambda n: n.call_id != a_id and n.change_type == "deleted")
        assert await stored_conversations(p.node.conversations) == []
        await asyncio.wait_for(p.node.dispatcher.wait_idle(), 5)
        assert other.outbox_load() == []  # every notification delivered and acknowledged
        other.close()


async def test_phone_calls_bot_on_redis(redis_url: str) -> None:
    async with make_platform(redis_config(redis_url), ("bob",)) as p:
        p.node.directory.create_instance(p["bob"].app_id, "Reception", phone_number=NUMBER)
        assert p.node.sip is not None
        sipp = asyncio.create_task(
            asyncio.to_thread(
                run_sipp,
                "uac_basic.xml",
                LOOPBACK,
                p.node.sip.port,
                service=NUMBER.lstrip("+"),
                call_duration_ms=1000,
            )
        )
        incoming = await p["bob"].bot.incoming(timeout=10)
        assert await p["bob"].client.answer(incoming.call_id) == 202
        await p["bob"].bot.wait_state(incoming.call_id, "established", timeout=10)
        result = await sipp
        assert result.ok, result.describe()
        end = await p["bob"].bot.wait_for(lambda n: n.change_type == "deleted", timeout=10)
        assert end[0].resource_data["resultInfo"]["subcode"] == 4097
        assert p.node.calls.active_calls == 0 and p.node.sip.active == 0


async def test_redis_down_is_503_and_the_node_recovers_when_it_returns(tmp_path: Path) -> None:
    server = PersistentRedis(tmp_path)
    await server.astart()
    try:
        async with make_platform(redis_config(server.url), ("alice", "bob")) as p:
            a_id, b_id = await b2b.place_call(p)
            await asyncio.to_thread(server.stop)  # Redis goes away (its data is on disk)
            status, body = await p["alice"].client.create_call(p["alice"].bot.url, [app_target(p["bob"].app_id)])
            assert status == 503 and body["error"]["code"] == "serviceNotAvailable", body
            status, _, headers = await p["bob"].client.request("POST", f"/communications/calls/{b_id}/reject", {})
            assert status == 503 and int(headers["Retry-After"]) >= 1
            await server.astart()  # back on the same port: no node restart
            assert await p["bob"].client.answer(b_id) == 202
            await p["alice"].bot.wait_state(a_id, "established")
            assert await p["alice"].client.hang_up(a_id) == 204
            await p["bob"].bot.wait_for(lambda n: n.call_id == b_id and n.change_type == "deleted")
            a2, _ = await b2b.place_call(p)  # new calls work again
            assert await p["alice"].client.hang_up(a2) == 204
    finally:
        await asyncio.to_thread(server.stop)


async def test_registrar_bindings_and_sip_accounts_are_shared(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(harness, "WORKDIR_BASE", tmp_path)
    cfg = redis_config(redis_url)
    async with make_platform(cfg, ()) as p:
        assert p.node.sip is not None
        p.node.sip.registrations.accounts.add(p.tenant_id, "alice", "correct horse")
        result = await asyncio.to_thread(
            run_sipp,
            "uac_register.xml",
            LOOPBACK,
            p.node.sip.port,
            service="alice",
            timeout=10,
            keys={"auth_user": "alice", "auth_pass": "correct horse"},
        )
        assert result.ok, result.describe()
        other = RedisStore(RedisTarget(redis_url, "n2", prefix=cfg.cluster.key_prefix))  # another node's store
        [binding] = Registrations(cfg.sip, other).bindings("alice")
        assert binding.contact.startswith("sip:alice@127.0.0.1:")
        other.close()
