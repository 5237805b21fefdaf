"""The console's ASGI handler for every path under `/console` (mounted in front of the Graph app).

Pages need a signed-in operator (else 303 to the sign-in page); `/console/api/...` answers 401 JSON instead.
Sign-in: a pre-session cookie and a hidden form field must match (login CSRF), the Origin, when sent, must be this
node's, and attempts are rate-limited (429 + Retry-After). Sign-out needs the session's CSRF token. Every answer
carries no-store, a strict Content-Security-Policy (scripts and styles only from /console/static), nosniff, no
framing, and referrers only to this node. Errors are short pages or JSON bodies, never a traceback.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from opencomms.api.http import Receive, Scope, Send
from opencomms.console import pages, views
from opencomms.console.auth import Operators, Session, Sessions, SignInLimiter
from opencomms.console.timeline import Timelines
from opencomms.directory import Directory
from opencomms.store.base import Store

__all__ = ["ConsoleApp", "ConsoleContext"]

log = logging.getLogger("opencomms.console")

PREFIX = "/console"
SESSION_COOKIE = "oc_console"
PRE_COOKIE = "oc_console_pre"
_MAX_FORM = 4096
_CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_SECURITY_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"content-security-policy", _CSP),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),  # no-referrer would make browsers send `Origin: null`
]


@dataclass
class ConsoleContext:
    calls: Any
    directory: Directory
    store: Store
    timelines: Timelines
    operators: Operators
    sessions: Sessions
    limiter: SignInLimiter
    clock: Callable[[], float]
    public_url: str
    secure: bool
    """Cookies get the Secure attribute (the node serves TLS)."""


@dataclass(slots=True)
class _Reply:
    status: int
    body: bytes
    content_type: bytes = b"text/html; charset=utf-8"
    headers: list[tuple[bytes, bytes]] | None = None


def _json(status: int, body: Any) -> _Reply:
    return _Reply(status, orjson.dumps(body), b"application/json")


def _redirect(to: str, headers: list[tuple[bytes, bytes]] | None = None) -> _Reply:
    return _Reply(303, b"", b"text/plain", [(b"location", to.encode()), *(headers or [])])


def _html(status: int, text: str, headers: list[tuple[bytes, bytes]] | None = None) -> _Reply:
    return _Reply(status, text.encode(), headers=headers)


class ConsoleApp:
    def __init__(self, ctx: ConsoleContext) -> None:
        self.ctx = ctx

    def _cookie(self, name: str, value: str, max_age: int | None) -> tuple[bytes, bytes]:
        parts = [f"{name}={value}", "Path=/console", "HttpOnly", "SameSite=Strict"]
        if max_age is not None:
            parts.append(f"Max-Age={max_age}")
        if self.ctx.secure:
            parts.append("Secure")
        return (b"set-cookie", "; ".join(parts).encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            reply = await self._handle(scope, receive, headers)
        except Exception:
            log.exception("console request failed")
            reply = _html(500, pages.layout("Error", "<p>Something went wrong; the node's log has the details.</p>"))
        out = [*_SECURITY_HEADERS, (b"content-type", reply.content_type)]
        out.append((b"content-length", str(len(reply.body)).encode()))
        out.extend(reply.headers or [])
        await send({"type": "http.response.start", "status": reply.status, "headers": out})
        await send({"type": "http.response.body", "body": reply.body if scope["method"] != "HEAD" else b""})

    # -- dispatch -----------------------------------------------------------------------------------------------
    async def _handle(self, scope: Scope, receive: Receive, headers: dict[str, str]) -> _Reply:
        method, path = scope["method"], scope["path"].rstrip("/") or "/"
        rel = path[len(PREFIX) :] or "/"
        cookies = _cookies(headers.get("cookie", ""))
        now = self.ctx.clock()
        if rel == "/static/console.js" and method == "GET":
            return _Reply(200, pages.JS, b"text/javascript; charset=utf-8")
        if rel == "/static/console.css" and method == "GET":
            return _Reply(200, pages.CSS, b"text/css; charset=utf-8")
        if rel == "/signin":
            if method == "GET":
                return self._signin_form()
            if method == "POST":
                return await self._signin(scope, receive, headers, cookies, now)
            return _html(405, pages.layout("Not allowed", "<p>Use the sign-in form.</p>"), [(b"allow", b"GET, POST")])
        session = self.ctx.sessions.get(cookies.get(SESSION_COOKIE), now)
        api = rel.startswith("/api/")
        if session is None:
            if api:
                return _json(401, {"error": {"code": "signInRequired", "message": "Sign in to the console."}})
            return _redirect("/console/signin")
        if rel == "/signout" and method == "POST":
            return await self._signout(receive, headers, session)
        if method != "GET":
            return _html(405, pages.layout("Not allowed", "<p>Only GET here.</p>"), [(b"allow", b"GET")])
        if api:
            return self._api(rel[len("/api") :])
        return self._page(rel, session)

    def _page(self, rel: str, session: Session) -> _Reply:
        c, who, csrf = self.ctx, session.operator, session.csrf
        if rel in ("/", "/live"):
            return _html(200, pages.live_page(views.live(c.calls, c.directory), who, csrf))
        if rel.startswith("/calls/"):
            call_id = rel[len("/calls/") :][:64]
            data = views.timeline(c.timelines, c.calls, call_id)
            return _html(200 if data else 404, pages.timeline_page(call_id, data, who, csrf))
        if rel == "/quality":
            return _html(200, pages.quality_page(views.quality(c.store), who, csrf))
        if rel == "/failures":
            return _html(200, pages.failures_page(views.failures(c.timelines, c.directory), who, csrf))
        if rel == "/apps":
            return _html(200, pages.apps_page(views.apps(c.directory), who, csrf))
        return _html(404, pages.layout("Not found", "<p>No such console page.</p>", operator=who, csrf=csrf))

    def _api(self, rel: str) -> _Reply:
        c = self.ctx
        if rel == "/live":
            return _json(200, views.live(c.calls, c.directory))
        if rel.startswith("/calls/"):
            data = views.timeline(c.timelines, c.calls, rel[len("/calls/") :][:64])
            if data is None:
                return _json(404, {"error": {"code": "itemNotFound", "message": "No timeline for this call."}})
            return _json(200, data)
        if rel == "/quality":
            return _json(200, views.quality(c.store))
        if rel == "/failures":
            return _json(200, views.failures(c.timelines, c.directory))
        if rel == "/apps":
            return _json(200, views.apps(c.directory))
        return _json(404, {"error": {"code": "itemNotFound", "message": "No such console API."}})

    # -- signing in and out ---------------------------------------------------------------------------------------
    def _signin_form(
        self, message: str = "", status: int = 200, extra: list[tuple[bytes, bytes]] | None = None
    ) -> _Reply:
        pre = secrets.token_urlsafe(24)
        return _html(status, pages.signin_page(pre, message), [self._cookie(PRE_COOKIE, pre, 600), *(extra or [])])

    def _same_origin(self, headers: dict[str, str]) -> bool:
        origin = headers.get("origin")
        if origin is None:
            return True  # browsers send Origin on POST; a client without it still needs the cookies checked next
        own = urlsplit(self.ctx.public_url)
        theirs = urlsplit(origin)
        host = headers.get("host", "")
        return (theirs.scheme, theirs.netloc) == (own.scheme, own.netloc) or theirs.netloc == host

    async def _signin(
        self, scope: Scope, receive: Receive, headers: dict[str, str], cookies: dict[str, str], now: float
    ) -> _Reply:
        form = await _form(receive)
        if form is None:
            return self._signin_form("The form was too large or malformed.", 400)
        pre = cookies.get(PRE_COOKIE)
        if not self._same_origin(headers) or not pre or not secrets.compare_digest(pre, form.get("pre", "")):
            return self._signin_form("The sign-in form expired; please try again.", 403)
        name, password = form.get("name", ""), form.get("password", "")
        source = client[0] if (client := scope.get("client")) else ""
        wait = self.ctx.limiter.attempt(source, name, now)
        if wait is not None:
            retry = str(max(1, math.ceil(wait))).encode()
            return self._signin_form("Too many sign-in attempts; wait and try again.", 429, [(b"retry-after", retry)])
        operator = self.ctx.operators.check(name, password)
        if operator is None:
            log.warning("console sign-in refused", extra={"source": source})
            return self._signin_form("Wrong operator name or password.", 401)
        session = self.ctx.sessions.open(operator, now)
        log.info("console sign-in", extra={"operator": operator, "source": source})
        lifetime = int(self.ctx.sessions.lifetime)
        return _redirect(
            "/console/live",
            [self._cookie(SESSION_COOKIE, session.token, lifetime), self._cookie(PRE_COOKIE, "", 0)],
        )

    async def _signout(self, receive: Receive, headers: dict[str, str], session: Session) -> _Reply:
        form = await _form(receive)
        if form is None or not self._same_origin(headers) or not Sessions.csrf_ok(session, form.get("csrf")):
            return _html(403, pages.layout("Refused", "<p>Missing or wrong CSRF token.</p>"))
        self.ctx.sessions.close(session.token)
        return _redirect("/console/signin", [self._cookie(SESSION_COOKIE, "", 0)])


def _cookies(header: str) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return {}
    return {k: m.value for k, m in jar.items()}


async def _form(receive: Receive) -> dict[str, str] | None:
    """An urlencoded form body of at most 4 KiB (None: larger, or not text)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > _MAX_FORM:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    try:
        parsed = parse_qs(b"".join(chunks).decode("utf-8"), keep_blank_values=True, max_num_fields=16)
    except (UnicodeDecodeError, ValueError):
        return None
    return {k: v[0] for k, v in parsed.items()}
