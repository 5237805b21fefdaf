"""`opencomms serve` as a real process: bots registered with the CLI call each other through it; a node killed
with SIGKILL while notifications are undelivered delivers every one of them after a restart."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp

from opencomms.testing import GraphClient, RecordingBot
from opencomms.testing.harness import app_target
from tests.e2e.conftest import cli, free_port, serve

PERMS = ["--permission", "Calls.Initiate.All"]


async def _register(
    store: str, base: str, names: tuple[str, ...]
) -> tuple[str, dict[str, tuple[str, str, RecordingBot]]]:
    tenant = cli(store, "tenant", "create", "--name", "Fabrikam", "--domain", "fabrikam.example")[0]
    out: dict[str, tuple[str, str, RecordingBot]] = {}
    for name in names:
        bot = await RecordingBot(app_id="", jwks_url=f"{base}/common/discovery/v2.0/keys").start(f"/{name}")
        row = cli(
            store, "app", "create", "--tenant", "fabrikam.example", "--name", name, *PERMS, "--callback-url", bot.url
        )[0]
        bot.app_id = row["client_id"]
        out[name] = (row["client_id"], row["client_secret"], bot)
    return tenant["id"], out


async def test_bot_to_bot_through_serve_process(store_url: str, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    _, bots = await _register(store_url, base, ("alice", "bob"))
    with serve(store_url, port, tmp_path):
        async with (
            GraphClient(base, "fabrikam.example", bots["alice"][0], bots["alice"][1]) as alice,
            GraphClient(base, "fabrikam.example", bots["bob"][0], bots["bob"][1]) as bob,
        ):
            a_bot, b_bot = bots["alice"][2], bots["bob"][2]
            status, call = await alice.create_call(a_bot.url, [app_target(bots["bob"][0])])
            assert status == 201
            incoming = await b_bot.incoming()
            assert await bob.answer(incoming.call_id) == 202
            await a_bot.wait_state(call["id"], "established")
            assert await alice.hang_up(call["id"]) == 204
            await b_bot.wait_for(lambda n: n.change_type == "deleted")
            async with aiohttp.ClientSession() as s, s.get(f"{base}/healthz") as resp:
                health = await resp.json()
            assert health["status"] == "ok" and health["calls"] == 0
    for _, _, bot in bots.values():
        await bot.stop()


async def test_kill_mid_delivery_loses_nothing(store_url: str, tmp_path: Path) -> None:
    """Bob's webhook is down (503) while alice places calls; the node is SIGKILLed with notifications
    pending and in flight, restarted on the same store, and then every notification arrives, once per
    delivery id, in order per call."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"OPENCOMMS_NOTIFY__INITIAL_RETRY_DELAY": "0.05", "OPENCOMMS_NOTIFY__MAX_RETRY_DELAY": "0.2"}
    _, bots = await _register(store_url, base, ("alice", "bob"))
    a_bot, b_bot = bots["alice"][2], bots["bob"][2]
    b_bot.responder = lambda body: 503
    calls = 20
    with serve(store_url, port, tmp_path, env=env) as proc:
        async with GraphClient(base, "fabrikam.example", bots["alice"][0], bots["alice"][1]) as alice:
            ids = []
            for _ in range(calls):
                status, call = await alice.create_call(a_bot.url, [app_target(bots["bob"][0])])
                assert status == 201
                ids.append(call["id"])
            await a_bot.wait_for(lambda n: n.state == "establishing", count=calls)
            await asyncio.sleep(0.3)  # let bob's deliveries fail and retry a few times
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert not b_bot.notifications
    b_bot.responder = None
    with serve(store_url, port, tmp_path, env=env):
        found = await b_bot.wait_for(lambda n: n.change_type == "created", count=calls, timeout=20)
        assert len({n.delivery_id for n in found}) == calls
        async with GraphClient(base, "fabrikam.example", bots["bob"][0], bots["bob"][1]) as bob:
            # the calls survived the restart too: bob can answer them
            for n in found[:3]:
                assert await bob.answer(n.call_id) == 202
            await a_bot.wait_for(lambda n: n.state == "established", count=3, timeout=10)
    for _, _, bot in bots.values():
        await bot.stop()
