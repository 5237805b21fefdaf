"""Console building blocks without a node: operators' credentials, session expiry (lifetime and idleness), CSRF,
sign-in rate limits, bounded timelines, and escaping in the SVG charts."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from opencomms.config import ConsoleConfig
from opencomms.console.auth import Operators, Sessions, SignInLimiter, create_operator
from opencomms.console.timeline import Timelines
from opencomms.console.views import quality_svg
from opencomms.directory import Directory
from opencomms.domain.errors import BadRequest
from opencomms.store.base import OutboxEntry
from opencomms.store.memory import MemoryStore

CONFIG = ConsoleConfig(session_lifetime=100.0, idle_timeout=30.0, sign_in_burst=3, sign_in_rate=0.5)


def test_operators_check_stored_and_bootstrap_passwords(tmp_path: Path) -> None:
    store = MemoryStore()
    password = create_operator(store, "Ops", 0.0)
    secret = tmp_path / "admin.txt"
    secret.write_text("a-long-bootstrap-password\n")
    ops = Operators(store, str(secret))
    assert ops.check("ops", password) == "ops" and ops.check(" OPS ", password) == "ops"
    assert ops.check("ops", password + "x") is None and ops.check("ops", "") is None
    assert ops.check("admin", "a-long-bootstrap-password") == "admin"
    assert ops.check("bad name!", password) is None
    assert "hash" in str(store.get("consoleAdmin", "ops")) and password not in str(store.get("consoleAdmin", "ops"))
    short = tmp_path / "short.txt"
    short.write_text("short")
    with pytest.raises(ValueError, match="at least 12"):
        Operators(store, str(short))


def test_directory_users_with_the_admin_role_are_operators() -> None:
    store = MemoryStore()
    directory = Directory(store)
    tenant = directory.create_tenant("contoso.example", "Contoso")
    alice = directory.create_user(tenant.id, "Alice", upn="alice@contoso.example")
    directory.set_password(alice.id, "correct horse battery")
    ops = Operators(store, directory=directory)
    assert ops.check("alice@contoso.example", "correct horse battery") is None  # no admin role yet
    directory.set_roles(alice.id, ["Admin"])
    assert directory.require_user(alice.id).roles == ("admin",)
    assert ops.check("Alice@Contoso.example", "correct horse battery") == "alice@contoso.example"
    assert ops.check("alice@contoso.example", "wrong horse battery") is None
    directory.set_roles(alice.id, [])
    assert ops.check("alice@contoso.example", "correct horse battery") is None
    with pytest.raises(BadRequest, match="Unknown role"):
        directory.set_roles(alice.id, ["root"])


def test_timelines_record_only_while_an_operator_may_be_watching() -> None:
    now = [0.0]
    t = Timelines(max_calls=4, max_entries=8, clock=lambda: now[0])
    sessions = Sessions(CONFIG, on_active=t.watch)
    t.link("leg-1", "conv-1")
    t.add("conv-1", "event", "kept")  # add itself is unconditional; the hooks ask `watching`
    assert not t.watching
    t.sip_leg = lambda _call_id: "leg-1"
    t.sip(False, "sip-a", "INVITE")
    assert [e.text for e in t.entries("conv-1")] == ["kept"]  # nobody signed in: the SIP hook records nothing
    session = sessions.open("ops", now[0])
    assert t.watching
    t.sip(False, "sip-a", "BYE")
    assert t.entries("conv-1")[-1].text.endswith("SIP BYE")
    now[0] = CONFIG.idle_timeout + 1  # the session went idle: recording stops with it
    assert not t.watching and sessions.get(session.token, now[0]) is None


def test_sessions_expire_by_lifetime_and_idleness_and_check_csrf() -> None:
    sessions = Sessions(CONFIG)
    s = sessions.open("ops", 0.0)
    assert sessions.get(s.token, 20.0) is s
    assert sessions.get(s.token, 45.0) is s  # idle clock restarted at 20
    assert sessions.get(s.token, 80.0) is None  # idle 35 s > 30
    s = sessions.open("ops", 100.0)
    for at in range(110, 200, 20):
        assert sessions.get(s.token, float(at)) is s
    assert sessions.get(s.token, 200.0) is None  # lifetime 100 s, however active
    s = sessions.open("ops", 300.0)
    assert Sessions.csrf_ok(s, s.csrf) and not Sessions.csrf_ok(s, None) and not Sessions.csrf_ok(s, "x")
    assert sessions.get("forged", 300.0) is None and sessions.get(None, 300.0) is None
    sessions.close(s.token)
    assert sessions.get(s.token, 301.0) is None


def test_sign_in_attempts_are_limited_per_source_and_per_name() -> None:
    limiter = SignInLimiter(CONFIG)
    assert all(limiter.attempt("10.0.0.1", "ops", 0.0) is None for _ in range(3))
    wait = limiter.attempt("10.0.0.1", "other", 0.0)
    assert wait is not None and wait > 0  # the source is out of attempts
    wait = limiter.attempt("10.0.0.2", "OPS", 0.0)
    assert wait is not None  # the name is out of attempts from any source
    assert limiter.attempt("10.0.0.2", "someone", 0.0) is None
    assert limiter.attempt("10.0.0.1", "ops", 2.0) is None  # refilled at 0.5/s


def test_timelines_are_bounded_and_link_sip_messages_to_their_leg() -> None:
    now = [0.0]
    t = Timelines(max_calls=2, max_entries=3, clock=lambda: now[0])
    t.sip_leg = lambda call_id: "leg-1" if call_id == "sip-a" else None
    t.watch(100.0)  # an operator is signed in
    t.sip(False, "sip-a", "INVITE")  # before the leg is linked: held back
    t.link("leg-1", "conv-1")
    now[0] = 1.0
    t.sip(True, "sip-a", "200 OK (INVITE)")
    assert [e.text for e in t.entries("conv-1")] == ["<- SIP INVITE", "-> SIP 200 OK (INVITE)"]
    for i in range(5):
        t.add("conv-1", "event", f"e{i}")
    assert [e.text for e in t.entries("conv-1")] == ["e2", "e3", "e4"]
    t.add("conv-2", "event", "x")
    t.add("conv-3", "event", "y")
    assert t.entries("conv-1") == []  # the least recently touched conversation went
    t.link("leg-2", "conv-3")
    note = {
        "changeType": "updated",
        "resourceUrl": "/communications/calls/leg-2",
        "resourceData": {"state": "established"},
    }
    body = orjson.dumps({"value": [note]})
    t.notification(OutboxEntry("d", "leg-2", "app", "tenant", "http://x", body, 0.0, 0.0))
    assert t.entries("conv-3")[-1].text.startswith("<- updated /communications/calls/leg-2") and "established" in (
        t.entries("conv-3")[-1].text
    )


def test_quality_chart_escapes_and_marks_bad_values() -> None:
    rows = [{"jitterMs": 5.0}, {"jitterMs": 50.0}, {"jitterMs": None}]
    svg = quality_svg(rows, "jitterMs", "<b>Jitter</b>", "ms", 30.0)
    assert "<b>" not in svg and "&lt;b&gt;" in svg
    assert svg.count('class="bar"') == 1 and svg.count('class="bar warn"') == 1
    assert "no data yet" in quality_svg([], "jitterMs", "Jitter", "ms", 30.0)


async def test_cookies_are_secure_under_tls_and_pages_need_a_session() -> None:
    from typing import Any

    from opencomms.console.app import ConsoleApp, ConsoleContext
    from opencomms.directory import Directory

    store = MemoryStore()
    ctx = ConsoleContext(
        calls=None,
        directory=Directory(store),
        store=store,
        timelines=Timelines(4, 4, lambda: 0.0),
        operators=Operators(store),
        sessions=Sessions(CONFIG),
        limiter=SignInLimiter(CONFIG),
        clock=lambda: 0.0,
        public_url="https://node.example",
        secure=True,
    )
    app = ConsoleApp(ctx)

    async def get(path: str) -> tuple[int, dict[bytes, bytes]]:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": path, "headers": [], "client": ("127.0.0.1", 1)}
        await app(scope, receive, send)
        return sent[0]["status"], dict(sent[0]["headers"])

    status, headers = await get("/console/signin")
    assert status == 200 and b"Secure" in headers[b"set-cookie"] and b"HttpOnly" in headers[b"set-cookie"]
    status, headers = await get("/console/failures")
    assert status == 303 and headers[b"location"] == b"/console/signin"
    assert (await get("/console/api/apps"))[0] == 401


def test_parties_mask_numbers_and_peoples_names_not_apps() -> None:
    from opencomms.console.timeline import party

    assert party({"phone": {"id": "+14255550123"}}) == "phone:+1425*****23"
    assert party({"identity": {"user": {"id": "u1", "displayName": "Adele Vance"}}}) == "user:A**** V****"
    assert party({"application": {"id": "a1"}}, lambda i: "Reception bot" if i == "a1" else None) == (
        "application:Reception bot"
    )
