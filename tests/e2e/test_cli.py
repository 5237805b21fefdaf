"""The directory CLI: create, list and delete tenants, apps, users and instances; secrets shown once, stored hashed."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

from opencomms.auth.secrets import verify_secret
from tests.e2e.conftest import CLI, cli


def test_directory_lifecycle(store_url: str, tmp_path: Path) -> None:
    tenant = cli(store_url, "tenant", "create", "--name", "Contoso", "--domain", "contoso.example")[0]
    assert cli(store_url, "tenant", "list")[0]["id"] == tenant["id"]
    app = cli(
        store_url,
        "app",
        "create",
        "--tenant",
        "contoso.example",
        "--name",
        "IVR",
        "--permission",
        "Calls.Initiate.All",
        "--permission",
        "calls.accessmedia.all",
        "--callback-url",
        "https://bot.example/api/calls",
    )[0]
    assert app["permissions"] == "Calls.AccessMedia.All,Calls.Initiate.All"
    secret = app["client_secret"]
    listed = cli(store_url, "app", "list")[0]
    assert "client_secret" not in listed and listed["secrets"] == 1
    # the secret is nowhere in the database, only its hash
    db = sqlite3.connect(tmp_path / "node.db")
    dump = "\n".join(db.iterdump())
    assert secret not in dump
    doc = json.loads(db.execute("SELECT doc FROM docs WHERE kind='app'").fetchone()[0])
    assert verify_secret(secret, doc["secret_hashes"][0])

    user = cli(store_url, "user", "create", "--tenant", tenant["id"], "--name", "Adele Vance")[0]
    inst = cli(
        store_url, "instance", "create", "--app", app["client_id"], "--name", "Main line", "--number", "+14255550100"
    )[0]
    assert cli(store_url, "instance", "list")[0]["number"] == "+14255550100"
    dup = subprocess.run(
        [
            *CLI,
            "instance",
            "create",
            "--app",
            app["client_id"],
            "--name",
            "x",
            "--number",
            "+14255550100",
            "--store",
            store_url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dup.returncode == 2 and "belongs to another" in dup.stderr
    bad = subprocess.run(
        [
            *CLI,
            "app",
            "create",
            "--tenant",
            tenant["id"],
            "--name",
            "x",
            "--permission",
            "Calls.Everything",
            "--store",
            store_url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "Calls.Initiate.All" in bad.stderr

    rotated = subprocess.run([*CLI, "keys", "rotate", "--store", store_url], capture_output=True, text=True, timeout=60)
    assert rotated.returncode == 0 and "active key" in rotated.stdout

    for args in (
        ("instance", "delete", inst["id"]),
        ("user", "delete", user["id"]),
        ("tenant", "delete", tenant["id"]),
    ):
        done = subprocess.run([*CLI, *args, "--store", store_url], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    assert cli(store_url, "app", "list") == [] and cli(store_url, "tenant", "list") == []


def test_dev_cert_command(tmp_path: Path) -> None:
    out = subprocess.run([*CLI, "dev-cert", "--dir", str(tmp_path / "tls")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "tls" / "ca.pem").exists() and (tmp_path / "tls" / "cert.pem").exists()
    assert oct((tmp_path / "tls" / "key.pem").stat().st_mode & 0o777) == "0o600"
