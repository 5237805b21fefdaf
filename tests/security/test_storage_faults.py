"""Issue 14, storage faults, against `opencomms serve` as a real process: a full disk and a write lock held by
another process fail requests with 503 + Retry-After, never the process, and leave no phantom calls; a read-only
store stops start-up with one line; the store, the key file and the recordings are private to the node's user."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from opencomms.config import SipConfig
from opencomms.store.conversations_sqlite import read_conversations
from opencomms.testing import GraphClient, RecordingBot
from opencomms.testing.harness import app_target
from tests.e2e.conftest import CLI, cli, free_port, serve
from tests.integration.conftest import make_platform, node_config

PERMS = ["--permission", "Calls.Initiate.All"]
FAST = {
    "OPENCOMMS_NOTIFY__INITIAL_RETRY_DELAY": "0.05",
    "OPENCOMMS_NOTIFY__MAX_RETRY_DELAY": "0.2",
    "OPENCOMMS_STORAGE__FAULT_RETRY": "0.2",
}


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A small filesystem of its own (root only), unmounted on exit."""
    path.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Fill the filesystem of `directory` up to the last byte."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        size = 1 << 16
        while size:
            try:
                os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                size //= 2
    finally:
        os.close(fd)
    return filler


def stored_calls(db: Path) -> dict[str, str]:
    """Call id -> state, read from the store file by another connection (what exists)."""
    return {leg["id"]: leg["state"] for doc in read_conversations(str(db)) for leg in doc["legs"]}


async def health(base: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(f"{base}/healthz") as resp:
        assert resp.status == 200
        return await resp.json()  # type: ignore[no-any-return]


async def register(store: str, base: str) -> tuple[dict[str, tuple[str, str]], RecordingBot, RecordingBot]:
    cli(store, "tenant", "create", "--name", "Fabrikam", "--domain", "fabrikam.example")
    bots = {}
    apps = {}
    for name in ("alice", "bob"):
        bot = await RecordingBot(app_id="", jwks_url=f"{base}/common/discovery/v2.0/keys").start(f"/{name}")
        row = cli(
            store, "app", "create", "--tenant", "fabrikam.example", "--name", name, *PERMS, "--callback-url", bot.url
        )[0]
        bot.app_id = row["client_id"]
        apps[name] = (row["client_id"], row["client_secret"])
        bots[name] = bot
    return apps, bots["alice"], bots["bob"]


def assert_unavailable(status: int, body: Any, headers: dict[str, str]) -> None:
    assert status == 503, (status, body)
    assert body["error"]["code"] == "serviceNotAvailable"
    assert int({k.lower(): v for k, v in headers.items()}["retry-after"]) >= 1


async def test_disk_full_fails_requests_not_the_node(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "fs", "3m") as fs:
        db = fs / "node.db"
        store = f"sqlite:///{db}"
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        apps, a_bot, b_bot = await register(store, base)
        env = {**FAST, "OPENCOMMS_MEDIA__RECORDINGS_DIR": str(fs / "rec")}
        with serve(store, port, tmp_path, env=env) as proc:
            async with (
                GraphClient(base, "fabrikam.example", *apps["alice"]) as alice,
                GraphClient(base, "fabrikam.example", *apps["bob"]) as bob,
            ):
                for i in range(3):  # established calls before the disk fills
                    status, call = await alice.create_call(a_bot.url, [app_target(apps["bob"][0])])
                    assert status == 201
                    incoming = await b_bot.incoming(index=i)
                    assert await bob.answer(incoming.call_id) == 202
                    await a_bot.wait_state(call["id"], "established")
                # notifications in flight when the disk fills: delivered then, their removal cannot commit
                a_bot.responder = lambda body: 503
                ended = a_bot.notifications[-1].call_id
                assert await alice.hang_up(ended) == 204
                await asyncio.sleep(0.3)  # alice's webhook refuses: the deliveries wait for a retry
                filler = fill(fs)
                seen = len(a_bot.for_call(ended))
                a_bot.responder = None
                await a_bot.wait_for(lambda n: n.call_id == ended, count=seen + 1)  # delivered on a full disk
                refused = created = 0
                subject = "x" * 1000  # bigger documents: the WAL must grow
                for _ in range(300):
                    status, body, headers = await alice.request(
                        "POST",
                        "/communications/calls",
                        {
                            "@odata.type": "#microsoft.graph.call",
                            "callbackUri": a_bot.url,
                            "targets": [app_target(apps["bob"][0])],
                            "requestedModalities": ["audio"],
                            "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
                            "subject": subject,
                        },
                    )
                    if status == 201:
                        created += 1
                        continue
                    assert_unavailable(status, body, headers)
                    refused += 1
                    if refused >= 10:
                        break
                assert refused >= 10, f"the disk never filled up ({created} creates went through)"
                await asyncio.sleep(1.0)  # notifications of the calls that made it: their removals fail too
                assert proc.poll() is None
                h = await health(base)
                exists = stored_calls(db)
                assert h["calls"] == len(exists)  # no phantom legs
                assert h["media"]["legs"] == sum(1 for s in exists.values() if s == "established")
                assert h["store"]["unit_faults"] >= refused

                filler.unlink()  # space returns
                deadline = time.monotonic() + 10
                while True:
                    status, call = await alice.create_call(a_bot.url, [app_target(apps["bob"][0])])
                    if status == 201:
                        break
                    assert status == 503 and time.monotonic() < deadline
                    await asyncio.sleep(0.2)
                h = await health(base)
                assert h["calls"] == len(stored_calls(db))
                # the removals went through at last, and the call's later notifications followed
                await a_bot.wait_for(lambda n: n.call_id == ended and n.change_type == "deleted")
                assert proc.poll() is None
        for bot in (a_bot, b_bot):
            await bot.stop()


async def test_write_lock_held_elsewhere_does_not_freeze_the_node(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'node.db'}"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    apps, a_bot, b_bot = await register(store_url, base)
    db = store_url.removeprefix("sqlite:///")
    with serve(store_url, port, tmp_path, env=FAST) as proc:
        async with GraphClient(base, "fabrikam.example", *apps["alice"]) as alice:
            status, call = await alice.create_call(a_bot.url, [app_target(apps["bob"][0])])
            assert status == 201
            holder = subprocess.Popen(  # noqa: ASYNC220 - a second process, like an operator's sqlite3 shell
                [
                    sys.executable,
                    "-c",
                    "import sqlite3, sys\n"
                    f"db = sqlite3.connect({db!r}, isolation_level=None)\n"
                    "db.execute('BEGIN IMMEDIATE'); print('held', flush=True)\n"
                    "sys.stdin.readline(); db.execute('ROLLBACK')\n",  # held until told (or the test ends)
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            try:
                assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
                slowest = 0.0
                outcomes = set()
                until = time.monotonic() + 2.5
                while time.monotonic() < until:
                    start = time.monotonic()
                    await health(base)
                    status, _, _ = await alice.request("GET", f"/communications/calls/{call['id']}")
                    assert status == 200
                    slowest = max(slowest, time.monotonic() - start)
                    start = time.monotonic()
                    status, body, headers = await alice.request("POST", f"/communications/calls/{call['id']}/keepAlive")
                    slowest = max(slowest, time.monotonic() - start)
                    if status != 200:
                        assert_unavailable(status, body, headers)
                    outcomes.add(status)
                    await asyncio.sleep(0.05)
                assert slowest < 0.2, f"a request took {slowest * 1000:.0f} ms while the lock was held"
                assert 503 in outcomes  # writes could not commit while the lock was held
            finally:
                assert holder.stdin is not None
                holder.stdin.close()  # the lock is released
                holder.wait(10)
            status, _, _ = await alice.request("POST", f"/communications/calls/{call['id']}/keepAlive")
            assert status == 200  # and succeed once it is released
            assert (await health(base))["calls"] == len(stored_calls(Path(db)))
        assert proc.poll() is None
    for bot in (a_bot, b_bot):
        await bot.stop()


def test_read_only_store_is_one_line_at_start(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "fs", "2m") as fs:
        store = f"sqlite:///{fs / 'node.db'}"
        cli(store, "tenant", "create", "--name", "Fabrikam")
        subprocess.run(["mount", "-o", "remount,ro", str(fs)], check=True)
        out = subprocess.run(
            [*CLI, "serve", "--store", store, "--port", str(free_port())],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "OPENCOMMS_SIP__PORT": "0"},
        )
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("opencomms serve: store") and "read-only" in lines[0], out.stderr


async def test_files_are_private_and_partial_recordings_go(tmp_path: Path) -> None:
    db = tmp_path / "node.db"
    store = f"sqlite:///{db}"
    recordings = tmp_path / "rec"
    recordings.mkdir(mode=0o755)
    os.chmod(recordings, 0o755)
    stray = recordings / "0b5a6f1e-crash.part"
    stray.write_bytes(b"RIFF")
    key_file = tmp_path / "keys" / "signing.json"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    apps, a_bot, b_bot = await register(store, base)
    env = {"OPENCOMMS_MEDIA__RECORDINGS_DIR": str(recordings), "OPENCOMMS_TOKENS__KEY_FILE": str(key_file)}
    with serve(store, port, tmp_path, env=env):
        async with GraphClient(base, "fabrikam.example", *apps["alice"]) as alice:  # tokens signed by the key file
            status, _ = await alice.create_call(a_bot.url, [app_target(apps["bob"][0])])
            assert status == 201
            await a_bot.wait_for(lambda n: n.state == "establishing")  # a callback token verified with the JWKS
        for suffix in ("", "-wal", "-shm"):
            assert stat.S_IMODE(os.stat(f"{db}{suffix}").st_mode) == 0o600, suffix
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(recordings.stat().st_mode) == 0o700
        assert not stray.exists()
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM docs WHERE kind='signing_key'").fetchone()[0] == 0  # not in the store
    conn.close()
    for bot in (a_bot, b_bot):
        await bot.stop()


NUMBER = "+14255550177"
SIP_SDP = (
    b"v=0\r\no=probe 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 7078 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def invite_statuses(sip_port: int, seconds: float = 2.0) -> list[int]:
    """Send one INVITE over UDP and return the statuses received until a final one (blocking: run in a thread)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    call_id, tag, branch = os.urandom(8).hex(), os.urandom(4).hex(), "z9hG4bK" + os.urandom(8).hex()
    head = [
        f"INVITE sip:{NUMBER.lstrip('+')}@127.0.0.1 SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:probe@127.0.0.1:{port}>;tag={tag}",
        f"To: <sip:{NUMBER.lstrip('+')}@127.0.0.1>",
        f"Call-ID: {call_id}",
        "CSeq: 1 INVITE",
        f"Contact: <sip:probe@127.0.0.1:{port}>",
        "Content-Type: application/sdp",
        f"Content-Length: {len(SIP_SDP)}",
    ]
    sock.sendto(("\r\n".join(head) + "\r\n\r\n").encode() + SIP_SDP, ("127.0.0.1", sip_port))
    statuses: list[int] = []
    deadline = time.monotonic() + seconds
    try:
        while (left := deadline - time.monotonic()) > 0 and not (statuses and statuses[-1] >= 200):
            sock.settimeout(left)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            statuses.append(int(data.split(b" ", 2)[1]))
    finally:
        sock.close()
    return statuses


async def test_sip_invite_is_503_while_the_store_cannot_write(tmp_path: Path) -> None:
    db = tmp_path / "node.db"
    config = node_config(store_url=f"sqlite:///{db}", sip=SipConfig(port=0))
    async with make_platform(config, ("bob",)) as p:
        assert p.node.sip is not None
        p.node.directory.create_instance(p["bob"].app_id, "Reception", phone_number=NUMBER)
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process (here: connection) holds the write lock
        try:
            statuses = await asyncio.to_thread(invite_statuses, p.node.sip.port)
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert statuses and statuses[-1] == 503, statuses
        await asyncio.sleep(0.1)
        assert p.node.sip.active == 0 and p.node.calls.active_calls == 0  # nothing left behind
        assert 180 in await asyncio.to_thread(invite_statuses, p.node.sip.port, 0.5)  # rings once released
        await p["bob"].bot.incoming(timeout=5)
