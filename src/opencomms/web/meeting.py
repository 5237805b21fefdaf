"""The meeting pages of the web client: what a browser sees at a meeting's joinWebUrl, and how it gets in.

`GET /l/meetup-join/{thread}/{message}` (the joinWebUrl, mounted in front of the Graph app's plain page when the
WebRTC edge runs) is the join page: the meeting's subject, a name field and "Join as guest", and "Sign in" when the
meeting's tenant has registered a public client application with the redirect URI `{public_url}/web/meeting`
(the delegated authorization code + PKCE flow of auth/signin.py runs in the page; `/web/meeting` is where it comes
back). `POST /web/join` `{"thread", "displayName"}` gives a guest a per-join ticket for the meeting's SIP address
(anyone holding the join link may ask; per client address rate-limited; the lobby decides the rest). The page
script (`/web/static/meeting.js`, built by `make web`) then joins over SIP-over-WebSocket and opens the feed
(web/feed.py).

Owns: the page markup and the guest ticket route. Must not: decide who bypasses the lobby (the meeting core does).
"""

from __future__ import annotations

import html
import secrets
from dataclasses import dataclass
from typing import Any

import orjson

from opencomms.domain.meetings import MeetingInfo
from opencomms.gateway.webjoin import WebGrant, ice_servers, normalize_target
from opencomms.ratelimit import KeyedTokenBucket

__all__ = ["JOIN_PREFIX", "SIGNED_IN_PATH", "MeetingPages", "PageReply", "error_reply", "json_object"]

JOIN_PREFIX = "/l/meetup-join"
SIGNED_IN_PATH = "/web/meeting"


@dataclass(frozen=True, slots=True)
class PageReply:
    status: int
    body: bytes
    content_type: bytes = b"application/json"


def error_reply(status: int, code: str, message: str) -> PageReply:
    """A JSON error body in Graph's shape."""
    return PageReply(status, orjson.dumps({"error": {"code": code, "message": message}}))


def json_object(body: bytes) -> dict[str, Any] | PageReply:
    """A request body that must be a JSON object (empty: {}), or the 400 saying it is not."""
    try:
        data = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError:
        return error_reply(400, "BadRequest", "The body must be JSON.")
    if not isinstance(data, dict):
        return error_reply(400, "BadRequest", "The body must be a JSON object.")
    return data


class MeetingPages:
    """The join page, the signed-in landing page and guest tickets (`ctx`: the web app's WebContext)."""

    def __init__(
        self,
        ctx: Any,
        public_url: str,
        dial_in_number: str = "",
        *,
        guests: bool = True,
        guest_rate: float = 0.5,
        guest_burst: int = 10,
    ) -> None:
        self.ctx = ctx
        self.public_url = public_url.rstrip("/")
        self.dial_in_number = dial_in_number
        self.allow_guests = guests
        self.guests = KeyedTokenBucket(guest_rate, guest_burst)
        """Guest tickets per client address: a flood cannot push others' tickets out of the bounded ticket store."""

    def _meeting(self, thread: str) -> MeetingInfo | None:
        lookup = self.ctx.meetings
        return None if lookup is None or not thread or len(thread) > 256 else lookup.by_thread(thread)

    def target(self, meeting: MeetingInfo) -> str:
        return normalize_target(f"sip:meeting-{meeting.join_meeting_id}@{self.ctx.sip_host}")

    def client_id(self, tenant_id: str) -> str:
        """The tenant's public client application registered for the meeting page's sign-in ('' if none)."""
        redirect = self.public_url + SIGNED_IN_PATH
        for app in self.ctx.directory.list_apps(tenant_id):
            if app.public_client and redirect in app.redirect_uris:
                return str(app.id)
        return ""

    def join_page(self, path: str) -> PageReply:
        parts = path[len(JOIN_PREFIX) :].strip("/").split("/")
        meeting = self._meeting(parts[0] if parts else "")
        if meeting is None or not meeting.join_meeting_id:
            return PageReply(404, _document("Meeting not found", None), b"text/html; charset=utf-8")
        data = {
            "thread": meeting.thread_id,
            "subject": meeting.subject or "Online meeting",
            "tenant": meeting.tenant_id,
            "client-id": self.client_id(meeting.tenant_id),
            "target": self.target(meeting),
            "redirect": self.public_url + SIGNED_IN_PATH,
            "guests": "true" if self.allow_guests else "",
        }
        phone = ""
        if self.dial_in_number and meeting.conference_id:
            phone = f"Or join by phone: call {self.dial_in_number} and enter conference id {meeting.conference_id}#."
        document = _document(data["subject"], data, self.ctx.ws_url(), phone)
        return PageReply(200, document, b"text/html; charset=utf-8")

    def signed_in_page(self) -> PageReply:
        """Where the sign-in comes back with ?code=…&state=…: the script finds the rest in sessionStorage."""
        data = {"redirect": self.public_url + SIGNED_IN_PATH}
        return PageReply(200, _document("Online meeting", data, self.ctx.ws_url()), b"text/html; charset=utf-8")

    def guest_ticket(self, body: bytes, source: str) -> PageReply:
        if not self.allow_guests:
            return error_reply(403, "Forbidden", "Guests cannot join from the web page on this node; sign in.")
        now = self.ctx.clock()
        if self.guests.take(source, now) is not None:
            return error_reply(429, "TooManyRequests", "Too many joins from this address; wait a little.")
        data = json_object(body)
        if isinstance(data, PageReply):
            return data
        meeting = self._meeting(str(data.get("thread") or ""))
        if meeting is None or not meeting.join_meeting_id:
            return error_reply(404, "NotFound", "No such meeting.")
        name = " ".join(str(data.get("displayName") or "").split())[:64]
        if not name:
            return error_reply(400, "BadRequest", "Give a 'displayName' to join as a guest.")
        target = self.target(meeting)
        ticket = self.ctx.tickets.issue(WebGrant(meeting.tenant_id, name, target, None, None), now)
        ctx = self.ctx
        ice = ice_servers(ctx.ice_urls, ctx.turn_secret, now, ctx.turn_ttl, secrets.token_hex(4))
        body_out = {
            "ticket": ticket,
            "expiresIn": int(ctx.tickets.ttl),
            "wsUrl": ctx.ws_url(),
            "iceServers": ice,
            "target": target,
        }
        return PageReply(201, orjson.dumps(body_out))


_STYLE = """
:root { color-scheme: light; --ok: #1b7f3b; --bad: #b3261e; --focus: #1a4fd6; }
* { box-sizing: border-box; }
body { font: 1.05rem/1.5 system-ui, sans-serif; margin: 0; padding: 1rem; max-width: 46rem; margin-inline: auto; }
h1 { font-size: 1.4rem; margin: .2rem 0 .8rem; overflow-wrap: anywhere; }
h2 { font-size: 1.1rem; margin: 1rem 0 .4rem; }
button, select, input { font: inherit; }
button { padding: .7rem 1.1rem; border-radius: .4rem; border: 1px solid #666; background: #f4f4f4; min-height: 44px; }
button:focus-visible, select:focus-visible, input:focus-visible {
  outline: 3px solid var(--focus); outline-offset: 2px;
}
button.primary { background: var(--ok); color: #fff; border-color: var(--ok); }
button.danger { background: var(--bad); color: #fff; border-color: var(--bad); }
button[aria-pressed="true"] { background: #333; color: #fff; }
input, select { padding: .5rem; width: 100%; border: 1px solid #666; border-radius: .3rem; min-height: 44px; }
.row { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; }
.hidden { display: none !important; }
#recording { color: var(--bad); font-weight: 600; }
#captions {
  list-style: none; padding: .4rem .6rem; margin: .6rem 0; background: #111; color: #fff; border-radius: .4rem;
}
#captions li { padding: .15rem 0; }
#captions .who { font-weight: 600; margin-right: .4rem; }
#roster { list-style: none; padding: 0; margin: 0; }
#roster li {
  display: flex; justify-content: space-between; gap: .5rem; padding: .5rem .6rem; border-bottom: 1px solid #ddd;
}
#roster li.speaking { background: #e6f4ea; border-left: 4px solid var(--ok); }
#roster .tags { color: #555; font-size: .9rem; white-space: nowrap; }
#dialpad { display: grid; grid-template-columns: repeat(3, minmax(3.5rem, 5rem)); gap: .4rem; }
#dialpad button { font-size: 1.3rem; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; }
@media (max-width: 40rem) { .grid { grid-template-columns: 1fr; } body { padding: .6rem; } }
"""


def _document(title: str, data: dict[str, str] | None, ws_url: str = "", phone: str = "") -> bytes:
    if data is None:
        body = "<main><h1>Meeting not found</h1><p>This join link does not lead to a meeting on this node.</p></main>"
        return _html(title, body, script=False)
    attrs = " ".join(f'data-{k}="{html.escape(v, quote=True)}"' for k, v in data.items())
    name = html.escape(title)
    body = f"""<main id="meeting-config" data-ws-url="{html.escape(ws_url, quote=True)}" {attrs}>
<h1 id="title">{name}</h1>
<p id="status" role="status" aria-live="polite">Join the meeting.</p>
<section id="join" aria-labelledby="join-heading">
<h2 id="join-heading">Join</h2>
<form id="guest-form">
<p><label for="name">Your name</label><br><input id="name" name="name" autocomplete="name" maxlength="64" required></p>
<div class="row"><button id="guest" class="primary" type="submit">Join as guest</button>
<button id="signin" type="button" class="hidden">Sign in</button></div>
</form>
<p id="phone">{html.escape(phone)}</p>
</section>
<section id="meeting" class="hidden" aria-labelledby="roster-heading">
<p id="recording" class="hidden" role="status" aria-live="polite">● Recording</p>
<ol id="captions" class="hidden" aria-live="polite" aria-relevant="additions" aria-label="Captions"></ol>
<div class="row" role="group" aria-label="Call controls">
<button id="mute" type="button" aria-pressed="false">Mute</button>
<button id="leave" type="button" class="danger">Leave</button>
</div>
<div class="grid">
<div>
<h2 id="roster-heading">Participants</h2>
<ul id="roster" aria-live="polite" aria-relevant="additions removals text" aria-labelledby="roster-heading"></ul>
<p id="speaker" class="sr-note" aria-live="off"></p>
</div>
<div>
<h2 id="dialpad-heading">Dial pad</h2>
<div id="dialpad" role="group" aria-labelledby="dialpad-heading"></div>
<h2>Devices</h2>
<p><label for="mic">Microphone</label><br><select id="mic"></select></p>
<p><label for="speaker-out">Speaker</label><br><select id="speaker-out"></select></p>
</div>
</div>
</section>
<audio id="remote" autoplay></audio>
</main>"""
    return _html(title, body, script=True)


def _html(title: str, body: str, *, script: bool) -> bytes:
    tag = '<script src="/web/static/meeting.js"></script>' if script else ""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{_STYLE}</style>
</head>
<body>
{body}
{tag}
</body>
</html>
""".encode()
