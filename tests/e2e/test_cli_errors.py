"""Every `opencomms` command's user errors: one line on stderr naming what is wrong, exit code 2, no traceback.

Each case runs the real command as a process on a SQLite store that holds one tenant, app and instance. The
processes of the cases run a few at a time (`outcomes`), each on its own copy of the store: they share nothing, and
each mostly waits for its imports, so the file takes half the time on a 2-core host."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from opencomms.directory import Directory
from opencomms.store import open_store
from tests.e2e.conftest import CLI, free_port

NUMBER = "+14255550100"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("cli-errors")
    store = f"sqlite:///{tmp / 'node.db'}"
    directory = Directory(open_store(store))
    tenant = directory.create_tenant("Contoso", "contoso.example")
    app, _ = directory.create_app(tenant.id, "IVR", permissions=["Calls.Initiate.All"])
    inst = directory.create_instance(app.id, "Main", phone_number=NUMBER)
    other = directory.create_instance(app.id, "Other", phone_number="+14255550199")
    user = directory.create_user(tenant.id, "Heidi")
    directory.store.close()
    (tmp / "unknown.toml").write_text("prot = 8080\n")
    (tmp / "broken.toml").write_text("port = \n")
    (tmp / "wrongtype.toml").write_text('[calls]\nanswer_timeout = "soon"\n')
    yield {
        "store": store,
        "tmp": str(tmp),
        "app": app.id,
        "inst": inst.id,
        "other": other.id,
        "tenant": tenant.id,
        "user": user.id,
    }


def _run(world: dict[str, str], args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    argv = [a.format(**world) for a in args]
    return subprocess.run(
        [*CLI, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "OPENCOMMS_SIP__PORT": "0", **(env or {})},
    )


def _one_line(out: subprocess.CompletedProcess[str], *needles: str) -> None:
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


S = ["--store", "{store}"]

CONFIG_CASES = [
    # (env, args, what the line must name)
    ({"OPENCOMMS_MEDIA__FETCH_ALLOW_PRIVATE": '["127.0.0.1",'}, ["tenant", "list", *S], ["ALLOW_PRIVATE", "JSON"]),
    ({"OPENCOMMS_EGRESS__ALLOW": "not a host!"}, ["serve", *S], ["OPENCOMMS_EGRESS__ALLOW", "'not a host!'", "CIDR"]),
    ({"OPENCOMMS_PORT": "eighty"}, ["serve", *S], ["OPENCOMMS_PORT", "'eighty'", "whole number"]),
    ({"OPENCOMMS_QUOTAS__PROMPT_MEMORY_MB": "-5"}, ["serve", *S], ["PROMPT_MEMORY_MB", "-5", ">= 0"]),
    ({"OPENCOMMS_THROTTLE__RATE": "0"}, ["app", "list", *S], ["OPENCOMMS_THROTTLE__RATE", "positive"]),
    ({"OPENCOMMS_SIP__ENABLED": "maybe"}, ["serve", *S], ["OPENCOMMS_SIP__ENABLED", "true or false"]),
    ({}, ["tenant", "list", "-c", "{tmp}/unknown.toml", *S], ["prot", "did you mean port"]),
    ({}, ["tenant", "list", "-c", "{tmp}/broken.toml", *S], ["broken.toml", "valid TOML"]),
    ({}, ["serve", "-c", "{tmp}/missing.toml", *S], ["missing.toml", "readable"]),
    ({}, ["serve", "-c", "{tmp}/wrongtype.toml", *S], ["calls.answer_timeout", "'soon'", "a number"]),
    ({"OPENCOMMS_LOG_LEVEL": "loud"}, ["serve", *S], ["OPENCOMMS_LOG_LEVEL", "'loud'", "one of debug"]),
    ({}, ["serve", "--tls-cert", "{tmp}/no.pem", "--tls-key", "{tmp}/no.key", *S], ["tls_cert", "no.pem", "PEM"]),
    ({"OPENCOMMS_SIP__RTP_PORT_MIN": "40001"}, ["serve", *S], ["refused by the node", "even range"]),
    ({"OPENCOMMS_TTS__PIPER_MODEL": "/no/none.onnx"}, ["serve", *S], ["tts.piper_model", "none.onnx", "missing"]),
    ({"OPENCOMMS_TTS__ENGINE": "festival"}, ["serve", *S], ["OPENCOMMS_TTS__ENGINE", "piper"]),
]


@pytest.mark.parametrize(("env", "args", "needles"), CONFIG_CASES)
def test_a_bad_configuration_value_is_one_line(
    outcomes: Outcomes, env: dict[str, str], args: list[str], needles: list[str]
) -> None:
    _one_line(outcomes.result(args, env), *needles)


COMMAND_CASES = [
    (["cluster", "up", "--nodes", "0"], ["nodes", "1 to 64"]),
    (["cluster", "up", "--nodes", "1", "--run-dir", "/etc/hostname/x"], ["run directory /etc/hostname/x"]),
    (["tenant", "create", "--name", "x", "--domain", "contoso.example", *S], ["exists already"]),
    (["tenant", "delete", "nope", *S], ["No tenant 'nope'"]),
    (["tenant", "list", "--store", "memory://"], ["persistent store"]),
    (["tenant", "list", "--store", "sqlite:////etc/hostname/x.db"], ["store /etc/hostname/x.db"]),
    (["app", "create", "--tenant", "nope", "--name", "x", *S], ["No tenant"]),
    (["app", "create", "--tenant", "contoso.example", "--name", "x", "-p", "Calls.Everything", *S], ["Calls."]),
    (["app", "create", "--tenant", "contoso.example", "--name", "x", "--callback-url", "bot:80", *S], ["http(s)"]),
    (["app", "list", "--tenant", "nope", *S], ["No tenant"]),
    (["app", "show", "nope", *S], ["No application 'nope'"]),
    (["app", "update", "nope", "--name", "y", *S], ["No application"]),
    (["app", "update", "{app}", "--callback-url", "ftp://x/y", *S], ["callback URL", "ftp://x/y"]),
    (["app", "update", "{app}", "--add-redirect-uri", "not a url", *S], ["redirect URI"]),
    (["app", "update", "{app}", "--remove-permission", "Calls.JoinGroupCall.All", *S], ["does not have"]),
    (["app", "update", "{app}", *S], ["nothing to change"]),
    (["app", "add-secret", "nope", *S], ["No application"]),
    (["app", "delete", "nope", *S], ["No application"]),
    (["user", "create", "--tenant", "nope", "--name", "x", *S], ["No tenant"]),
    (["user", "list", "--tenant", "nope", *S], ["No tenant"]),
    (["user", "delete", "nope", *S], ["No user"]),
    (["instance", "create", "--app", "nope", "--name", "x", "--number", "+14255550111", *S], ["No application"]),
    (["instance", "create", "--app", "{app}", "--name", "x", "--number", NUMBER, *S], ["belongs to another"]),
    (["instance", "create", "--app", "{app}", "--name", "x", "--number", "555", *S], ["E.164"]),
    (["instance", "list", "--app", "nope", *S], ["No application"]),
    (["instance", "update", "nope", "--name", "x", *S], ["No application instance"]),
    (["instance", "update", "{other}", "--number", NUMBER, *S], ["belongs to another"]),
    (["instance", "update", "{inst}", "--number", "", *S], ["needs a phone number"]),
    (["instance", "update", "{inst}", *S], ["nothing to change"]),
    (["instance", "delete", "nope", *S], ["No application instance"]),
    (["calls", "show", "nope", *S], ["no call 'nope'"]),
    (["calls", "list", "--store", "memory://"], ["persistent store"]),
    (["sip-account", "list", "--tenant", "nope", *S], ["No tenant"]),
    (["sip-account", "delete", "nobody", *S], ["nobody"]),
    (["sip-account", "add", "--tenant", "nope", "--username", "u", "--password", "pw", *S], ["No tenant"]),
    (["user", "set-password", "nope", "--password", "long-enough", *S], ["No user"]),
    (["user", "set-password", "{user}", "--password", "short", *S], ["8 characters"]),
    (["user", "set-role", "nope", "admin", *S], ["No user"]),
    (["user", "set-role", "{user}", "root", *S], ["Unknown role"]),
    (["user", "create", "--tenant", "{tenant}", "--name", "x", "--upn", "not a upn", *S], ["user principal name"]),
    (["meetings", "list", "--user", "nope", *S], ["No user"]),
    (["meetings", "show", "nope", *S], ["No meeting"]),
    (["meetings", "delete", "nope", *S], ["No meeting"]),
    (["policy", "grant", "--app", "nope", "--tenant-wide", *S], ["No application"]),
    (["policy", "grant", "--app", "{app}", *S], ["--tenant-wide"]),
    (["policy", "grant", "--app", "{app}", "--user", "nope", *S], ["No user"]),
    (["policy", "list", "--store", "memory://"], ["persistent store"]),
    (["policy", "revoke", "--app", "{app}", "--tenant-wide", *S], ["No such access policy"]),
    (["dev-cert", "--dir", "/etc/hostname/tls"], ["/etc/hostname/tls", "Not a directory"]),
    (["keys", "rotate", "--store", "sqlite:////etc/hostname/x.db"], ["store"]),
    (["status", "--url", "ftp://127.0.0.1/", *S], ["--url"]),
    (["admin", "create", "bad name!", *S], ["operator name", "'bad name!'"]),
    (["admin", "delete", "nobody", *S], ["no console operator 'nobody'", "admin list"]),
    (["admin", "list", "--store", "memory://"], ["persistent store"]),
    # usage errors (click's): one line too, naming the command's --help
    (["app", "update", *S], ["Missing argument", "app update --help"]),
    (["tenant", "create", "--nam", "x", *S], ["No such option: --nam", "--name"]),
    (["serve", "--port", "eighty", *S], ["--port", "integer"]),
]


@pytest.mark.parametrize(("args", "needles"), COMMAND_CASES, ids=lambda v: " ".join(v[:3]) if v and v[0] else None)
def test_a_user_error_is_one_line(outcomes: Outcomes, args: list[str], needles: list[str]) -> None:
    _one_line(outcomes.result(args), *needles)


class Outcomes:
    """Every case's command, started in the background on first use, a few processes at a time, each on a copy of
    the world's store (a case that writes, or fails to, sees the store as the world made it, like a case alone)."""

    def __init__(self, world: dict[str, str], pool: ThreadPoolExecutor) -> None:
        self._world = world
        self._pool = pool
        self._runs: dict[str, Future[subprocess.CompletedProcess[str]]] = {}
        for env, args, _ in CONFIG_CASES:
            self._start(args, env)
        for args, _ in COMMAND_CASES:
            self._start(args, {})

    def _start(self, args: list[str], env: dict[str, str]) -> None:
        key = json.dumps([args, env])
        tmp = Path(self._world["tmp"])
        own = tmp / f"case-{len(self._runs)}"
        own.mkdir()
        for file in tmp.glob("node.db*"):
            shutil.copy(file, own / file.name)
        world = {**self._world, "store": f"sqlite:///{own / 'node.db'}"}
        self._runs[key] = self._pool.submit(_run, world, args, env)

    def result(self, args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return self._runs[json.dumps([args, env or {}])].result()


@pytest.fixture(scope="module")
def outcomes(world: dict[str, str]) -> Iterator[Outcomes]:
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1)) as pool:
        yield Outcomes(world, pool)


def test_status_without_a_node_and_serve_on_a_taken_port(world: dict[str, str]) -> None:
    dead = free_port()
    _one_line(_run(world, ["status", "--url", f"http://127.0.0.1:{dead}"]), f"127.0.0.1:{dead}", "running")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        _one_line(_run(world, ["serve", *S, "--port", str(port)]), "could not start", "in use")


def test_the_path_of_every_command_is_covered() -> None:
    """Each leaf command of the CLI appears in at least one error case above."""
    from typer.main import get_command

    from opencomms.cli.main import app

    root = get_command(app)
    leaves = set()
    for name, cmd in root.commands.items():  # type: ignore[attr-defined]
        sub = getattr(cmd, "commands", None)
        leaves |= {f"{name} {s}" for s in sub} if sub else {name}
    covered = {" ".join(a[:2]) for a, _ in COMMAND_CASES} | {" ".join(a[:1]) for _, a, _ in CONFIG_CASES}
    covered |= {"status", "serve", "dev-cert"}
    missing = {leaf for leaf in leaves if leaf not in covered and leaf.split()[0] not in covered}
    assert missing == set(), missing
