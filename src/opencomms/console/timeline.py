"""Each conversation's timeline as the console shows it: SIP messages, REST requests, notifications (media
operations' outcomes among them) and the calling core's events, in the order the node saw them, as `make demo`
prints it. Also the recent failures (legs that ended with a resultInfo code of 400 or more).

Bounded: `max_calls` conversations (least recently touched go first) of `max_entries` entries each; the leg ->
conversation and SIP Call-ID -> leg maps are bounded alike. Numbers never enter it: SIP lines carry the method and
status only, and identities are masked as in the logs. The feeds (observer hooks of the API, the dispatcher, the
SIP endpoint, and a subscriber of the calling core) are plain methods; console/wiring.py connects them.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from opencomms.calling.subscribers import Batch, Subscriber
from opencomms.domain import events as ev
from opencomms.logs import mask_name, mask_phone
from opencomms.store.base import OutboxEntry

__all__ = ["Entry", "Failure", "TimelineSubscriber", "Timelines", "party"]

_CALL_IN_PATH = re.compile(r"/communications/calls/([0-9a-fA-F-]{36})")
_IDENTITIES = ("phone", "user", "applicationInstance", "application", "guest", "device")


def party(identity_set: Any, names: Callable[[str], str | None] = lambda _id: None) -> str:
    """`kind:name-or-id` of the first identity of an identitySet (or participantInfo); numbers and people's names
    masked (applications' names are the operator's own configuration: shown)."""
    if isinstance(identity_set, dict) and isinstance(identity_set.get("identity"), dict):
        identity_set = identity_set["identity"]
    if not isinstance(identity_set, dict):
        return ""
    for kind in _IDENTITIES:
        ident = identity_set.get(kind)
        if isinstance(ident, dict):
            value = str(ident.get("id") or "")
            if kind == "phone":
                return f"phone:{mask_phone(value)}"
            shown = str(ident.get("displayName") or "")
            if kind in ("user", "guest", "device"):  # people: their names masked as in the logs
                shown = mask_name(shown)
            return f"{kind}:{names(value) or shown or value[:8]}"
    return ""


@dataclass(frozen=True, slots=True)
class Entry:
    at: float
    kind: str
    """sip, rest, notify or event."""
    leg: str
    """Short id of the leg it concerns ('' for the conversation)."""
    text: str
    raw: bytes = b""
    """A notification's body, formatted only when the timeline is read (`shown`): the hot path does not parse it."""

    def shown(self) -> Entry:
        if not self.raw:
            return self
        return Entry(self.at, self.kind, self.leg, _notification_text(self.raw, self.text))

    def json(self) -> dict[str, Any]:
        return {"at": self.at, "kind": self.kind, "leg": self.leg, "text": self.text}


@dataclass(frozen=True, slots=True)
class Failure:
    at: float
    conversation_id: str
    leg_id: str
    app_id: str
    code: int
    subcode: int
    message: str

    def json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "conversationId": self.conversation_id,
            "callId": self.leg_id,
            "appId": self.app_id,
            "resultInfo": {"code": self.code, "subcode": self.subcode, "message": self.message},
        }


_Row = tuple[float, str, str, str, bytes]
"""(at, kind, leg id, text, raw notification body): an entry as kept."""


class Timelines:
    def __init__(self, max_calls: int, max_entries: int, clock: Callable[[], float]) -> None:
        self.max_calls = max_calls
        self.max_entries = max_entries
        self.clock = clock
        self._by_conv: collections.OrderedDict[str, collections.deque[_Row]] = collections.OrderedDict()
        self._conv_of: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._leg_of_sip: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._sip_pending: collections.OrderedDict[str, list[tuple[float, str]]] = collections.OrderedDict()
        self.failures: collections.deque[Failure] = collections.deque(maxlen=100)
        self.sip_leg: Callable[[str], str | None] = lambda _call_id: None
        """SIP Call-ID -> leg id (the gateway's view), set by the wiring when SIP is on."""
        self.watched_until = float("-inf")
        """Timelines are recorded only while an operator is signed in (until this time): nobody watching, the
        console costs the hot path one clock read per hook (failures are kept whatever)."""

    def watch(self, until: float) -> None:
        """An operator's session is active until `until`: record timelines until then."""
        if until > self.watched_until:
            self.watched_until = until

    @property
    def watching(self) -> bool:
        return self.clock() < self.watched_until

    # -- storage ------------------------------------------------------------------------------------------------
    @staticmethod
    def _bounded_put(table: collections.OrderedDict[str, Any], key: str, value: Any, limit: int) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > limit:
            table.popitem(last=False)

    def link(self, leg_id: str, conv_id: str) -> None:
        if self._conv_of.get(leg_id) != conv_id:
            self._bounded_put(self._conv_of, leg_id, conv_id, self.max_calls * 8)

    def conversation_of(self, leg_id: str) -> str | None:
        return self._conv_of.get(leg_id)

    def add(
        self, conv_id: str, kind: str, text: str, leg_id: str = "", at: float | None = None, raw: bytes = b""
    ) -> None:
        entries = self._by_conv.get(conv_id)
        if entries is None:
            entries = collections.deque(maxlen=self.max_entries)
            self._bounded_put(self._by_conv, conv_id, entries, self.max_calls)
        else:
            self._by_conv.move_to_end(conv_id)
        entries.append((self.clock() if at is None else at, kind, leg_id, text, raw))  # a tuple: cheap on the hot path

    def entries(self, conv_id: str) -> list[Entry]:
        rows = sorted(self._by_conv.get(conv_id, ()), key=lambda r: r[0])
        return [Entry(at, kind, leg[:8], text, raw).shown() for at, kind, leg, text, raw in rows]

    # -- feeds --------------------------------------------------------------------------------------------------
    def rest(self, method: str, path: str, status: int, location: str | None, at: float | None = None) -> None:
        """A Graph request on a call (or creating one, whose Location names it), placed when it arrived (`at`)."""
        found = _CALL_IN_PATH.search(path) or (_CALL_IN_PATH.search(location) if location else None)
        if found is None:
            return
        leg_id = found.group(1).lower()
        conv = self._conv_of.get(leg_id)
        if conv is None:
            return
        shown = _CALL_IN_PATH.sub(lambda m: f"/communications/calls/{m.group(1)[:8]}…", path)
        self.add(conv, "rest", f"-> {method} {shown[:120]} {status}", leg_id, at=at)

    def notification(self, entry: OutboxEntry) -> None:
        """A notification committed for delivery to a bot (order key: the call id)."""
        if not self.watching:
            return
        conv = self._conv_of.get(entry.order_key)
        if conv is not None:
            self.add(conv, "notify", entry.order_key, entry.order_key, raw=entry.body)

    def sip(self, sent: bool, call_id: str, line: str) -> None:
        """A SIP message of dialog `call_id` (the method and status line only; no URIs, no numbers)."""
        if not self.watching:
            return
        text = f"{'->' if sent else '<-'} SIP {line}"
        leg_id = self._leg_of_sip.get(call_id) or self.sip_leg(call_id)
        conv = self._conv_of.get(leg_id) if leg_id else None
        if conv is None or leg_id is None:  # the INVITE before its leg exists: kept until the leg is known
            pending = self._sip_pending.get(call_id)
            if pending is None:
                pending = []
                self._bounded_put(self._sip_pending, call_id, pending, self.max_calls)
            if len(pending) < 16:
                pending.append((self.clock(), text))
            return
        self._bounded_put(self._leg_of_sip, call_id, leg_id, self.max_calls * 4)
        for at, early in self._sip_pending.pop(call_id, ()):
            self.add(conv, "sip", early, leg_id, at=at)
        self.add(conv, "sip", text, leg_id)


def _notification_text(body: bytes, call_id: str) -> str:
    try:
        note = orjson.loads(body)["value"][0]
        change, url = str(note.get("changeType", "")), str(note.get("resourceUrl", ""))
        detail = describe(change, note.get("resourceData"))
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
        return "<- notification (unreadable)"
    url = url.replace(call_id, call_id[:8] + "…") if call_id else url
    return f"<- {change} {url[:100]} {detail}".rstrip()


def describe(change_type: str, data: Any) -> str:
    """One line for a notification's resource: the state, an operation's outcome, a tone, who calls."""
    data = data if isinstance(data, dict) else {}
    detail = str(data.get("state") or "")
    kind = str(data.get("@odata.type", "")).rsplit(".", 1)[-1]
    if kind.endswith("Operation"):
        detail = f"{kind} {data.get('status')}"
        if data.get("completionReason"):
            detail += f" ({data['completionReason']})"
    if isinstance(data.get("toneInfo"), dict):
        detail = f"toneInfo {data['toneInfo'].get('tone')}"
    if change_type == "created" and isinstance(data.get("source"), dict):
        detail = f"incoming call from {party(data['source'])}"
    result = data.get("resultInfo")
    if isinstance(result, dict):
        detail += f"  resultInfo {result.get('code')}/{result.get('subcode')} ({result.get('message')})"
    return detail


class TimelineSubscriber(Subscriber):
    """The calling core's events onto the timelines (and failures), once committed."""

    def __init__(self, timelines: Timelines) -> None:
        self.t = timelines

    def committed(self, batch: Batch, event: ev.Event) -> None:
        """Subscribers hear a commit's events before its notifications are released: the leg is linked to its
        conversation here, so the notifications (an incoming call's `created`) land on the right timeline."""
        t, conv = self.t, batch.conversation_id
        if not t.watching:
            if isinstance(event, ev.LegEnded) and event.result.code >= 400:
                r, app_id = event.result, str(event.leg.get("app_id") or "")
                t.failures.append(Failure(t.clock(), conv, event.leg_id, app_id, r.code, r.subcode, r.message))
            return
        leg_id: str = getattr(event, "leg_id", "")
        if leg_id:
            t.link(leg_id, conv)
        if isinstance(event, ev.LegRinging):
            view = batch.view(event.leg)
            t.add(conv, "event", f"leg {event.kind} ringing: {party(view.source)} -> {party(view.identity)}", leg_id)
        elif isinstance(event, ev.LegEstablishing):
            t.add(conv, "event", f"leg {event.kind} establishing", leg_id)
        elif isinstance(event, ev.LegEstablished):
            t.add(conv, "event", f"leg {event.kind} established (media joined)", leg_id)
        elif isinstance(event, ev.LegStateChanged):
            t.add(conv, "event", f"leg {event.kind} {event.state}", leg_id)
        elif isinstance(event, ev.LegMuted):
            t.add(conv, "event", f"leg {event.kind} {'muted' if event.muted else 'unmuted'}", leg_id)
        elif isinstance(event, ev.LegEnded):
            r = event.result
            t.add(conv, "event", f"leg {event.kind} ended: resultInfo {r.code}/{r.subcode} ({r.message})", leg_id)
            if r.code >= 400:
                app_id = str(event.leg.get("app_id") or "")
                t.failures.append(Failure(t.clock(), conv, leg_id, app_id, r.code, r.subcode, r.message))
        elif isinstance(event, ev.ParticipantJoined | ev.ParticipantLeft):
            verb = "joined" if isinstance(event, ev.ParticipantJoined) else "left"
            t.add(conv, "event", f"participant {verb}: {party(event.participant.identity)}")
        elif isinstance(event, ev.TransferStarted | ev.TransferCompleted | ev.TransferFailed):
            t.add(conv, "event", type(event).__name__.replace("Transfer", "transfer "))
        elif isinstance(event, ev.ConversationEnded):
            t.add(conv, "event", "conversation ended")
