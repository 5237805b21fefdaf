"""The CLI manages what it creates: `app show/update`, `instance update`, and it shows what a node runs: `calls list`,
`calls show`, `status` (from a running node with --url, or from the store)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

from opencomms.directory import Directory
from opencomms.store import open_store
from tests.e2e.conftest import CLI, cli
from tests.integration.conftest import make_platform, node_config

NUMBER = "+14255550100"
MASKED = "+1425*****00"


def test_app_and_instance_updates(store_url: str) -> None:
    tenant = cli(store_url, "tenant", "create", "--name", "Contoso", "--domain", "contoso.example")[0]
    app = cli(
        store_url,
        *("app", "create", "--tenant", tenant["id"], "--name", "IVR", "-p", "Calls.Initiate.All"),
        *("--redirect-uri", "https://portal.example/auth"),
    )[0]
    cid = app["client_id"]
    assert app["redirect_uris"] == "https://portal.example/auth"
    updated = cli(
        store_url,
        *("app", "update", cid, "--callback-url", "https://bot.example/v2/calls", "--name", "IVR v2"),
        *("--add-permission", "calls.accessmedia.all", "--remove-permission", "Calls.Initiate.All"),
        *("--add-redirect-uri", "http://localhost:3000/cb", "--remove-redirect-uri", "https://portal.example/auth"),
    )[0]
    assert updated["callback_url"] == "https://bot.example/v2/calls" and updated["name"] == "IVR v2"
    assert updated["permissions"] == "Calls.AccessMedia.All"
    assert updated["redirect_uris"] == "http://localhost:3000/cb"
    assert cli(store_url, "app", "update", cid, "-p", "Calls.Initiate.All", "-p", "Calls.JoinGroupCall.All")[0][
        "permissions"
    ] == ("Calls.Initiate.All,Calls.JoinGroupCall.All")
    cli(store_url, "app", "update", cid, "--callback-url", "")  # "" removes the webhook

    inst = cli(store_url, "instance", "create", "--app", cid, "--name", "Main", "--number", NUMBER)[0]
    moved = cli(
        store_url, "instance", "update", inst["id"], "--number", "+14255550111", "--sip-uri", "sip:ivr@x.example"
    )
    assert moved[0]["number"] == "+14255550111" and moved[0]["sip_uri"] == "sip:ivr@x.example"
    directory = Directory(open_store(store_url))
    assert directory.find_instance_by_address(NUMBER) is None  # the old number is free again…
    assert directory.find_instance_by_address("SIP:IVR@x.example").id == inst["id"]  # type: ignore[union-attr]
    directory.store.close()
    cli(store_url, "instance", "create", "--app", cid, "--name", "Reuse", "--number", NUMBER)  # …and can be reused

    shown = cli(store_url, "app", "show", cid)
    assert shown["callback_url"] is None and shown["name"] == "IVR v2" and "client_secret" not in shown
    assert shown["permissions"] == ["Calls.Initiate.All", "Calls.JoinGroupCall.All"]
    assert sorted(i["number"] for i in shown["instances"]) == [NUMBER, "+14255550111"]
    assert len(cli(store_url, "app", "add-secret", cid)[0]["client_secret"]) >= 32
    assert cli(store_url, "app", "show", cid)["secrets"] == 2
    assert cli(store_url, "keys", "rotate")[0]["active_key"]


async def _cli(*args: str) -> Any:
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, "--json", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert NUMBER not in out.decode()  # numbers are masked as the logs mask them
    return json.loads(out)


async def test_calls_and_status_of_a_running_node(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'node.db'}"
    async with make_platform(node_config(store_url=store), names=("alice", "bob")) as p:
        p.node.directory.create_instance(p["bob"].app_id, "Bob's line", phone_number=NUMBER)
        phone = {"identity": {"phone": {"id": NUMBER}}}
        status, call = await p["alice"].client.create_call(p["alice"].bot.url, [phone])
        assert status == 201, call
        incoming = await p["bob"].bot.incoming()
        assert await p["bob"].client.answer(incoming.call_id) == 202
        await p["alice"].bot.wait_state(call["id"], "established")

        listed = await _cli("calls", "list", "--store", store)
        by_id = {row["id"]: row for row in listed}
        assert set(by_id) == {call["id"], incoming.call_id}
        mine = by_id[call["id"]]
        assert mine["state"] == "established" and mine["direction"] == "outgoing"
        assert mine["app_id"] == p["alice"].app_id and mine["to"] == f"phone:{MASKED}" and mine["started"]
        assert [r["id"] for r in await _cli("calls", "list", "--app", p["bob"].app_id, "--store", store)] == [
            incoming.call_id
        ]

        shown = await _cli("calls", "show", call["id"], "--store", store)
        assert shown["call"]["id"] == call["id"] and shown["operations"] == []
        assert shown["conversation"]["id"] == shown["call"]["conversation_id"]

        status_json = await _cli("status", "--url", p.node.public_url)
        assert status_json["ready"] is True and status_json["not_ready"] == [] and status_json["calls"] == 2
        offline = await _cli("status", "--store", store)
        assert offline["calls_by_state"] == {"established": 2} and offline["applications"] == 2


def test_status_text_is_readable(store_url: str) -> None:
    out = subprocess.run([*CLI, "status", "--store", store_url], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "applications" in out.stdout and "{" not in out.stdout.splitlines()[0]
