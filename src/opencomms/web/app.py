"""The browser side served by the node under `/web` (mounted in front of the Graph app, like the console).

`GET /web/call` is the call page: one button calls the SIP address the page's ticket was issued for, one hangs
up; the ticket (and the target and name) travel in the URL fragment, so they never reach a server log.
`GET /web/static/call.js` and `meeting.js` are the JsSIP bundles built by `make web` (src/opencomms/web/client; no
CDN at run time). The meeting pages (`/l/meetup-join/…`, `/web/meeting`, `POST /web/join`) are web/meeting.py's.
`POST /web/tickets` issues a per-join ticket to an application (its app-only bearer token) for one SIP address of
one of its own instances (`{"target": "sip:…", "displayName": "…"}`) or for a meeting of its tenant
(`{"joinMeetingId": "…"}`, the meeting's SIP address `sip:meeting-<id>@host`) -> `{"ticket", "expiresIn", "wsUrl",
"callUrl"}`; the bot's own web page hands the `callUrl` to its visitor.
Every answer carries no-store, nosniff, a strict Content-Security-Policy (scripts only from /web/static, media and
WebSocket to the edge), no framing. Errors are short JSON bodies, never a traceback.
"""

from __future__ import annotations

import base64
import html
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

from opencomms.api.http import Receive, Scope, Send, read_body
from opencomms.auth.tokens import TokenError, TokenService
from opencomms.directory import Directory
from opencomms.domain.errors import PayloadTooLarge
from opencomms.gateway.webjoin import TicketBook, WebGrant, ice_servers, normalize_target
from opencomms.store.base import StoreUnavailable
from opencomms.web.meeting import JOIN_PREFIX, SIGNED_IN_PATH, MeetingPages, PageReply, error_reply, json_object

__all__ = ["PREFIX", "WebApp", "WebContext"]

log = logging.getLogger("opencomms.web")

PREFIX = "/web"
STATIC = Path(__file__).parent / "static"
BUNDLE = STATIC / "call.js"
MEETING_BUNDLE = STATIC / "meeting.js"
_MAX_BODY = 4096


@dataclass
class WebContext:
    tokens: TokenService
    directory: Directory
    tickets: TicketBook
    ws_url: Any
    """() -> the WebSocket URL browsers open (known once the edge listens)."""
    clock: Any
    meetings: Any = None
    """The live meetings' lookup (`by_join_id`), for tickets to a meeting; None: bots only."""
    sip_host: str = "127.0.0.1"
    """Host of the meeting SIP addresses (`sip:meeting-<joinMeetingId>@host`)."""
    ice_urls: tuple[str, ...] = ()
    """STUN/TURN URLs for the browsers."""
    turn_secret: bytes | None = None
    """coturn's static-auth-secret (TURN credentials per ticket); None: no TURN credentials."""
    turn_ttl: float = 3600.0
    pages: Any = None
    """The meeting pages (web/meeting.py `MeetingPages`): the joinWebUrl's join page and guest tickets."""


def _json(status: int, body: dict[str, Any]) -> PageReply:
    return PageReply(status, orjson.dumps(body))


class WebApp:
    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            reply = await self._handle(scope, receive, headers)
        except PayloadTooLarge:
            reply = error_reply(413, "payloadTooLarge", "The request body is too large.")
        except StoreUnavailable:  # the cluster's Redis (tickets) is unreachable: try again, not a crash
            log.warning("web request failed: the store is unavailable")
            reply = error_reply(503, "serviceUnavailable", "The node cannot reach its store; try again shortly.")
        except Exception:
            log.exception("web request failed")
            reply = error_reply(500, "internalError", "Something went wrong; the node's log has the details.")
        ws = self.ctx.ws_url()
        origin = ws.split("/sip/", 1)[0]
        csp = (
            f"default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self' {origin}; "
            "media-src 'self' blob: mediastream:; frame-ancestors 'none'; base-uri 'none'"
        ).encode()
        out = [
            (b"content-type", reply.content_type),
            (b"content-length", str(len(reply.body)).encode()),
            (b"cache-control", b"no-store"),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"content-security-policy", csp),
        ]
        await send({"type": "http.response.start", "status": reply.status, "headers": out})
        await send({"type": "http.response.body", "body": reply.body if scope["method"] != "HEAD" else b""})

    async def _handle(self, scope: Scope, receive: Receive, headers: dict[str, str]) -> PageReply:
        method, path = scope["method"], scope["path"].rstrip("/")
        if path == f"{PREFIX}/call" and method in ("GET", "HEAD"):
            return PageReply(200, _page(self.ctx.ws_url()), b"text/html; charset=utf-8")
        bundles = {f"{PREFIX}/static/call.js": BUNDLE, f"{PREFIX}/static/meeting.js": MEETING_BUNDLE}
        if path in bundles and method in ("GET", "HEAD"):
            try:
                return PageReply(200, bundles[path].read_bytes(), b"text/javascript; charset=utf-8")
            except OSError:
                return error_reply(503, "clientNotBuilt", "The web client is not built: run `make web`.")
        pages = self.ctx.pages
        if pages is not None and (reply := await self._meeting(pages, scope, receive, method, path)) is not None:
            return reply
        if path == f"{PREFIX}/tickets":
            if method != "POST":
                return error_reply(405, "methodNotAllowed", "POST a target to get a ticket.")
            return self._ticket(headers, await read_body(receive, _MAX_BODY))
        return error_reply(404, "notFound", "No such page.")

    @staticmethod
    async def _meeting(pages: MeetingPages, scope: Scope, receive: Receive, method: str, path: str) -> PageReply | None:
        """The meeting pages' routes (web/meeting.py), or None for another path."""
        if path.startswith(JOIN_PREFIX + "/") and method in ("GET", "HEAD"):
            return pages.join_page(path)
        if path == SIGNED_IN_PATH and method in ("GET", "HEAD"):
            return pages.signed_in_page()
        if path == f"{PREFIX}/join":
            if method != "POST":
                return PageReply(405, b'{"error":{"code":"methodNotAllowed","message":"POST to join."}}')
            client = scope.get("client") or ("", 0)
            return pages.guest_ticket(await read_body(receive, _MAX_BODY), str(client[0]))
        return None

    def _ticket(self, headers: dict[str, str], body: bytes) -> PageReply:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return error_reply(401, "InvalidAuthenticationToken", "Send 'Authorization: Bearer <app token>'.")
        try:
            claims = self.ctx.tokens.validate_access_token(token.strip(), self.ctx.clock())
        except TokenError as exc:
            return error_reply(401, "InvalidAuthenticationToken", f"Access token validation failure: {exc}")
        if claims.user_id is not None:
            return error_reply(403, "Forbidden", "Tickets are issued to applications, not to signed-in users.")
        data = json_object(body)
        if isinstance(data, PageReply):
            return data
        name = str(data.get("displayName") or "Guest").strip()[:64] or "Guest"
        join_id = str(data.get("joinMeetingId") or "")
        if join_id:
            meeting = None if self.ctx.meetings is None else self.ctx.meetings.by_join_id(join_id)
            if meeting is None or meeting.tenant_id != claims.tenant_id:
                return error_reply(404, "NotFound", "No meeting of this tenant has that joinMeetingId.")
            target = normalize_target(f"sip:meeting-{join_id}@{self.ctx.sip_host}")
        else:
            target = normalize_target(str(data.get("target") or ""))
            if not target:
                return error_reply(400, "BadRequest", "Give 'target' (a SIP address sip:user@host) or 'joinMeetingId'.")
            inst = self.ctx.directory.find_instance_by_address(target)
            if inst is None or inst.app_id != claims.app_id:
                return error_reply(
                    403, "Forbidden", "'target' is not an address of one of this application's instances."
                )
        grant = WebGrant(claims.tenant_id, name, target, None, claims.app_id)
        now = self.ctx.clock()
        ticket = self.ctx.tickets.issue(grant, now)
        ice = ice_servers(self.ctx.ice_urls, self.ctx.turn_secret, now, self.ctx.turn_ttl, secrets.token_hex(4))
        fragment = f"ticket={quote(ticket)}&target={quote(target)}&name={quote(name)}"
        if ice:
            fragment += "&ice=" + base64.urlsafe_b64encode(orjson.dumps(ice)).decode().rstrip("=")
        return _json(
            201,
            {
                "ticket": ticket,
                "expiresIn": int(self.ctx.tickets.ttl),
                "wsUrl": self.ctx.ws_url(),
                "iceServers": ice,
                "callUrl": f"{PREFIX}/call#{fragment}",
            },
        )


def _page(ws_url: str) -> bytes:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Call</title>
<style>
body {{ font: 1.1rem/1.5 system-ui, sans-serif; max-width: 28rem; margin: 2rem auto; padding: 0 1rem; }}
button {{ font-size: 1.1rem; padding: .8rem 1.4rem; margin: .3rem .3rem .3rem 0; border-radius: .4rem; }}
#call {{ background: #1b7f3b; color: #fff; border: 0; }}
#hangup {{ background: #b3261e; color: #fff; border: 0; }}
button:disabled {{ opacity: .4; }}
button:focus-visible {{ outline: 3px solid #1a4fd6; outline-offset: 2px; }}
meter {{ width: 100%; }}
</style>
</head>
<body>
<main id="call-config" data-ws-url="{html.escape(ws_url)}">
<h1>Call <span id="target-name"></span></h1>
<p id="status" role="status" aria-live="polite">Ready.</p>
<button id="call" type="button">Call</button>
<button id="hangup" type="button" disabled>Hang up</button>
<p><label for="level">Incoming audio</label><br><meter id="level" min="0" max="1" value="0"></meter></p>
<audio id="remote" autoplay></audio>
</main>
<script src="/web/static/call.js"></script>
</body>
</html>
""".encode()
