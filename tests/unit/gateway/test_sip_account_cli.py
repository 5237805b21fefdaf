"""`opencomms sip-account add|list|delete`: the password comes from --password or a prompt, is never printed and
never stored, only its digest HA1 values for the node's realm."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from opencomms.cli.main import app
from opencomms.directory import Directory
from opencomms.sip.digest import compute_ha1
from opencomms.store import open_store

PASSWORD = "hunter2-but-longer"


def test_add_list_delete(tmp_path: Path) -> None:
    db = tmp_path / "node.db"
    store = f"sqlite:///{db}"
    directory = Directory(open_store(store))
    tenant = directory.create_tenant("Contoso", "contoso.example")
    user = directory.create_user(tenant.id, "Adele Vance")
    directory.store.close()
    runner = CliRunner()
    env = {"OPENCOMMS_SIP__DOMAIN": "voice.contoso.example"}

    added = runner.invoke(
        app,
        [
            "sip-account",
            "add",
            "--tenant",
            "contoso.example",
            "--username",
            "adele",
            "--user",
            user.id,
            "--store",
            store,
        ],
        input=f"{PASSWORD}\n{PASSWORD}\n",  # prompted twice, not echoed back
        env=env,
    )
    assert added.exit_code == 0, added.output
    assert "display_name=Adele Vance" in added.output and "realm=voice.contoso.example" in added.output
    assert PASSWORD not in added.output.replace("Password:", "")

    second = ["sip-account", "add", "--tenant", tenant.id, "--username", "desk", "--password", PASSWORD]
    assert runner.invoke(app, [*second, "--store", store], env=env).exit_code == 0
    duplicate = runner.invoke(app, [*second, "--store", store], env=env)
    assert duplicate.exit_code == 2 and "taken" in duplicate.output

    listed = json.loads(runner.invoke(app, ["sip-account", "list", "--json", "--store", store], env=env).output)
    assert [(a["username"], a["user_id"]) for a in listed] == [("adele", user.id), ("desk", None)]

    dump = "\n".join(sqlite3.connect(db).iterdump())
    assert PASSWORD not in dump
    assert compute_ha1("adele", "voice.contoso.example", PASSWORD, "SHA-256") in dump

    assert runner.invoke(app, ["sip-account", "delete", "desk", "--store", store], env=env).exit_code == 0
    missing = runner.invoke(app, ["sip-account", "delete", "desk", "--store", store], env=env)
    assert missing.exit_code == 2 and "No SIP account" in missing.output
