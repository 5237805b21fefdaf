"""The CLI manages what delegated sign-in and meetings need: user passwords, public clients and redirect URIs,
application access policies (grant, list, revoke), and the meetings in the store (list, show, delete); mistakes
are one line on stderr with exit code 2."""

from __future__ import annotations

import os
import subprocess

from opencomms.calling.service import Caller
from opencomms.directory import Directory
from opencomms.domain.meeting_resource import OnlineMeeting
from opencomms.meetings.directory import MeetingDirectory
from opencomms.meetings.service import MeetingService
from opencomms.store import open_store
from opencomms.wire.meetings import MeetingFields
from tests.e2e.conftest import CLI, cli


def _fails(store_url: str, *args: str) -> str:
    out = subprocess.run([*CLI, *args, "--store", store_url], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.startswith("error: ") and out.stderr.count("\n") == 1, out
    return out.stderr


def test_passwords_policies_and_meetings(store_url: str) -> None:
    tenant = cli(store_url, "tenant", "create", "--name", "Contoso", "--domain", "contoso.example")[0]
    user = cli(
        store_url, "user", "create", "--tenant", tenant["id"], "--name", "Heidi", "--upn", "heidi@contoso.example"
    )
    uid = user[0]["id"]
    app = cli(
        store_url,
        "app",
        "create",
        "--tenant",
        tenant["id"],
        "--name",
        "CLI",
        "--public-client",
        "--redirect-uri",
        "http://localhost/cb",
    )[0]
    assert app["public_client"] is True and app["redirect_uris"] == "http://localhost/cb"
    assert cli(store_url, "app", "update", app["client_id"], "--confidential-client")[0]["public_client"] is False

    env = {**os.environ, "OPENCOMMS_USER_PASSWORD": "s3cret-enough"}
    done = subprocess.run(
        [*CLI, "user", "set-password", "heidi@contoso.example", "--store", store_url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "password set" in done.stdout, done.stderr
    assert "8 characters" in _fails(store_url, "user", "set-password", uid, "--password", "short")
    store = open_store(store_url)
    d = Directory(store)
    found = d.find_user("HEIDI@contoso.example")
    assert found is not None and d.check_password(found, "s3cret-enough") and "s3cret" not in str(found.to_doc())

    grant = cli(store_url, "policy", "grant", "--app", app["client_id"], "--user", "heidi@contoso.example")[0]
    assert grant["user"] == uid
    cli(store_url, "policy", "grant", "--app", app["client_id"], "--tenant-wide")
    assert {g["user"] for g in cli(store_url, "policy", "list")} == {uid, "*"}
    assert "--tenant-wide" in _fails(store_url, "policy", "grant", "--app", app["client_id"])
    subprocess.run(
        [*CLI, "policy", "revoke", "--app", app["client_id"], "--tenant-wide", "--store", store_url],
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert [g["user"] for g in cli(store_url, "policy", "list")] == [uid]

    service = MeetingService(MeetingDirectory(store), d, public_url="https://node.example")
    caller = Caller(tenant["id"], app["client_id"], frozenset())
    meeting: OnlineMeeting = service.create(caller, found, MeetingFields(subject="Standup"))
    store.close()
    rows = cli(store_url, "meetings", "list", "--user", "heidi@contoso.example")
    assert [(r["id"], r["subject"]) for r in rows] == [(meeting.id, "Standup")]
    shown = cli(store_url, "meetings", "show", meeting.id)
    assert shown["thread_id"] == meeting.thread_id and "passcode" not in shown
    subprocess.run([*CLI, "meetings", "delete", meeting.id, "--store", store_url], check=True, capture_output=True)
    assert cli(store_url, "meetings", "list") == []
    assert "No meeting" in _fails(store_url, "meetings", "show", meeting.id)
