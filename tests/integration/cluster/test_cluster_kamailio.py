"""A local cluster as `opencomms cluster up` starts it: redis-server, real Kamailio with the generated
configuration, and three `opencomms serve` nodes. SIPp calls a bot's number through Kamailio: the calls spread over
the three nodes (each node delivers notifications of calls it owns), the bot, pointed at node 1 only, answers every
one (requests for calls owned elsewhere are forwarded), and the in-dialog ACK and BYE reach the owner through
Kamailio's Record-Route. A node that stops answering leaves the dispatcher set: the next calls all succeed."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opencomms.cluster.local import LocalCluster
from opencomms.config import SipConfig
from opencomms.directory import Directory
from opencomms.domain.ids import new_id
from opencomms.gateway.register import Registrations
from opencomms.store.redis_common import RedisTarget
from opencomms.store.redis_sync import RedisStore
from opencomms.testing import GraphClient, RecordingBot
from tests.integration.cluster.support import healthz, three_nodes
from tests.integration.conftest import ALL_CALL_PERMISSIONS
from tests.sipp.sipp import LOOPBACK, run_sipp, sipp_available

pytestmark = pytest.mark.skipif(
    shutil.which("kamailio") is None or shutil.which("redis-server") is None or not sipp_available(),
    reason="needs kamailio, redis-server and sipp",
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from three_nodes(tmp_path_factory)


bot_numbers: list[str] = []


async def answering_bot(cluster: LocalCluster) -> tuple[RecordingBot, GraphClient, list[asyncio.Task[int]]]:
    """A bot on the first node only: answers every incoming call."""
    store = RedisStore(RedisTarget(cluster.redis_url, "setup", prefix=cluster.plan.key_prefix))
    directory = Directory(store)
    tenant = directory.create_tenant("Contoso", f"c{new_id()[:8]}.example")
    node1 = cluster.nodes[0].url
    bot = RecordingBot(app_id="", jwks_url=f"{node1}/common/discovery/v2.0/keys")
    answers: list[asyncio.Task[int]] = []
    client: GraphClient

    def respond(body: dict[str, Any]) -> int:
        for item in body["value"]:
            if item["changeType"] == "created" and (item.get("resourceData") or {}).get("state") == "incoming":
                call_id = item["resourceUrl"].split("/")[3]
                answers.append(asyncio.get_running_loop().create_task(client.answer(call_id)))
        return 202

    bot.responder = respond
    await bot.start()
    app, secret = directory.create_app(tenant.id, "ivr", permissions=ALL_CALL_PERMISSIONS, callback_url=bot.url)
    bot.app_id = app.id
    number = f"+1425555{len(bot_numbers):04d}"
    bot_numbers.append(number)
    directory.create_instance(app.id, "Reception", phone_number=number)
    store.close()
    client = GraphClient(node1, tenant.id, app.id, secret)
    await client.__aenter__()
    return bot, client, answers


async def call_the_bot(
    cluster: LocalCluster, workdir: Path, *, calls: int, rate: int, hold_ms: int, timeout: float
) -> Any:
    """SIPp's basic scenario through Kamailio to the last answering bot's number."""
    return await asyncio.to_thread(
        run_sipp,
        "uac_basic.xml",
        LOOPBACK,
        cluster.sip_port,
        calls=calls,
        rate=rate,
        service=bot_numbers[-1].lstrip("+"),
        call_duration_ms=hold_ms,
        recv_timeout_ms=8000,
        timeout=timeout,
        workdir=workdir,
    )


async def test_calls_through_kamailio_spread_over_three_nodes(cluster: LocalCluster, tmp_path: Path) -> None:
    bot, client, answers = await answering_bot(cluster)
    try:
        result = await call_the_bot(cluster, tmp_path / "sipp", calls=9, rate=6, hold_ms=300, timeout=40)
        assert result.ok, result.describe()
        assert result.counter("SuccessfulCall") == 9
        assert [await a for a in answers] == [202] * 9  # answered through node 1, whoever owns the call
        served = [healthz(n.url)["notifications"]["delivered"] for n in cluster.nodes]
        assert all(count > 0 for count in served), served  # every node owned some of the calls
        health = healthz(cluster.nodes[0].url)["cluster"]
        assert health["node_id"] == "node1" and health["redis"] == "ok"
        assert health["forwarded"] > 0  # answers for calls of nodes 2 and 3
    finally:
        await client.__aexit__(None, None, None)
        await bot.stop()


async def test_a_node_that_stops_answering_leaves_the_set(cluster: LocalCluster, tmp_path: Path) -> None:
    bot, client, _answers = await answering_bot(cluster)
    frozen = cluster.nodes[2].process
    os.kill(frozen.pid, signal.SIGSTOP)  # alive but silent: its OPTIONS probes time out
    try:
        await asyncio.sleep(4)  # a probe every second, one failure takes it out
        result = await call_the_bot(cluster, tmp_path / "sipp", calls=4, rate=4, hold_ms=200, timeout=30)
        assert result.ok, result.describe()
        assert result.counter("SuccessfulCall") == 4
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
        await client.__aexit__(None, None, None)
        await bot.stop()


async def test_a_phone_registers_through_kamailio_with_any_node(cluster: LocalCluster, tmp_path: Path) -> None:
    """REGISTER goes to any node (the challenge from one, the answer to it possibly at another): the registrar and
    its accounts are shared in Redis, and the binding is there for every node."""
    store = RedisStore(RedisTarget(cluster.redis_url, "setup", prefix=cluster.plan.key_prefix))
    tenant = Directory(store).create_tenant("Fabrikam", f"f{new_id()[:8]}.example")
    Registrations(SipConfig(), store).accounts.add(tenant.id, "alice", "correct horse")
    try:
        for i in range(3):  # the round robin sends them to each node in turn
            result = await asyncio.to_thread(
                run_sipp,
                "uac_register.xml",
                LOOPBACK,
                cluster.sip_port,
                service="alice",
                timeout=10,
                keys={"auth_user": "alice", "auth_pass": "correct horse"},
                workdir=tmp_path / f"sipp{i}",
            )
            assert result.ok, result.describe()
        bindings = Registrations(SipConfig(), store).bindings("alice")
        assert len(bindings) == 3  # one per SIPp run (its own port each), whichever node took it
        assert all(b.contact.startswith("sip:alice@127.0.0.1:") for b in bindings)
    finally:
        store.close()


async def test_calls_in_progress_survive_a_kamailio_restart(cluster: LocalCluster, tmp_path: Path) -> None:
    bot, client, _answers = await answering_bot(cluster)
    try:
        sipp = call_the_bot(cluster, tmp_path / "sipp", calls=3, rate=10, hold_ms=4000, timeout=30)
        calls = asyncio.create_task(sipp)
        await bot.wait_for(lambda n: n.state == "established", count=3, timeout=10)
        await asyncio.to_thread(cluster.restart_kamailio)  # mid-call: the BYEs go through the new Kamailio
        result = await calls
        assert result.ok, result.describe()
        assert result.counter("SuccessfulCall") == 3
        await bot.wait_for(lambda n: n.change_type == "deleted", count=3, timeout=10)
    finally:
        await client.__aexit__(None, None, None)
        await bot.stop()
