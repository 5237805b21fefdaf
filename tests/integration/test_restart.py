"""A node restarted on the same SQLite file: nothing is loaded at start, yet a live call answers its GET (loaded
on demand) and the keepAlive timers of calls nobody touched still fire (the store's deadline index)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from opencomms.config import CallsConfig
from opencomms.testing import GraphClient, running_node
from opencomms.testing.harness import app_target
from tests.integration.conftest import make_platform, node_config

KEEPALIVE = 4.0


async def test_live_calls_survive_a_restart_and_their_keepalive_timers_fire(tmp_path: Path) -> None:
    config = node_config(
        store_url=f"sqlite:///{tmp_path / 'node.db'}",
        calls=CallsConfig(answer_timeout=15.0, keepalive_timeout=KEEPALIVE),
    )
    calls: list[tuple[str, str]] = []
    async with make_platform(config, ("alice", "bob")) as p:
        for i in range(2):
            status, call = await p["alice"].client.create_call(p["alice"].bot.url, [app_target(p["bob"].app_id)])
            assert status == 201
            incoming = await p["bob"].bot.incoming(index=i)
            assert await p["bob"].client.answer(incoming.call_id) == 202
            await p["alice"].bot.wait_state(call["id"], "established")
            calls.append((call["id"], incoming.call_id))
        bots, tenant, port = p.bots, p.tenant_id, p.node.port
    restarted = dataclasses.replace(config, port=port)
    async with running_node(restarted) as node:
        assert node.calls.active_calls == 0  # nothing loaded at start
        for name, handle in bots.items():  # the same webhooks, back on their URLs
            await handle.bot.start(f"/{name}/calls", port=handle.bot.port)
            handle.bot.notifications.clear()
        alice, bob = bots["alice"], bots["bob"]
        try:
            async with GraphClient(node.public_url, tenant, alice.app_id, alice.secret) as client:
                touched, untouched = calls
                status, body, _ = await client.request("GET", f"/communications/calls/{touched[0]}")
                assert status == 200 and body["state"] == "established"
                status, parts, _ = await client.request("GET", f"/communications/calls/{touched[0]}/participants")
                assert status == 200 and len(parts["value"]) == 2
                assert node.calls.active_calls == 2  # only the conversation asked for was loaded
                # nobody keeps the calls alive: every leg ends on its keepAlive deadline, the untouched call's too
                for bot, ids in ((alice.bot, [a for a, _ in calls]), (bob.bot, [b for _, b in calls])):
                    for call_id in ids:
                        await bot.wait_for(
                            lambda n, i=call_id: n.call_id == i and n.change_type == "deleted", timeout=KEEPALIVE + 5
                        )
                status, _, _ = await client.request("GET", f"/communications/calls/{untouched[0]}")
                assert status == 404
                assert node.calls.active_calls == 0 and node.calls.armed_timers == 0
        finally:
            for handle in bots.values():
                await handle.bot.stop()
