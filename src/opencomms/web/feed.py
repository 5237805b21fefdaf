"""MeetingFeed: the meeting page's live view of its own meeting (roster, dominant speaker, recording), and its mute.

A browser in a meeting opens `GET /web/feed` (a WebSocket on the WebRTC edge's port) with the same ticket or access
token its SIP WebSocket was opened with; the feed serves the meeting of the call that SIP WebSocket made, and only
while it lasts: no other credential, no meeting chosen by the page. The page gets a snapshot (`roster`, as
`participants_for` its own leg shows it: the lobby sees only itself), then changes: `participant` (joined or
updated), `left`, `speaker` (the engine's dominant speaker, by sourceId), `recording` (updateRecordingStatus),
`caption` (live transcription: a speaker's name and the words of one utterance, from the same captions the
transcribing bot gets; the same utterance heard by two transcribing bots is sent once), `ended`. The page sends
`{"type": "mute", "muted": bool}`: the leg mutes itself, which the roster shows as isMuted (and the mix follows),
as a bot's own mute does.

Owns: the listeners (a bounded queue each), the page's view of a roster entry (no phone number in it). Must not:
decide who is in a meeting (the conversation core does) or touch media beyond the leg's own mute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from opencomms.calling.model import Call
from opencomms.calling.subscribers import Batch, Subscriber
from opencomms.calling.transcription import HeardCaption
from opencomms.domain import commands as c
from opencomms.domain import events as ev
from opencomms.domain.participants import Participant
from opencomms.domain.rules import ConversationKind
from opencomms.gateway.webrtc import WebRtcEdge, credential_key
from opencomms.media import engine as eng

__all__ = ["FEED_PATH", "MeetingFeed", "page_entry"]

log = logging.getLogger("opencomms.web.feed")

FEED_PATH = "/web/feed"
QUEUE = 256
"""Messages queued toward one page; a page that does not read beyond that loses its feed (it may reopen it)."""
FIND_TRIES = 20
"""Tenths of a second the feed waits for the page's call to reach the meeting (the INVITE is being answered)."""
CAPTION_CHARS = 500
"""Longest caption text sent to a page (an utterance is at most [speech] max_utterance seconds anyway)."""
_RECENT_CAPTIONS = 32
_KINDS = ("user", "guest", "phone", "application", "applicationInstance")
_NUMBERISH = re.compile(r"^[+\d\s().-]{4,}$")


def page_name(identity: dict[str, Any] | None) -> tuple[str, str]:
    """(name, kind) of an identitySet as the page shows it: a phone's number only as its last two digits."""
    identity = identity or {}
    kind = next((k for k in _KINDS if isinstance(identity.get(k), dict)), "unknown")
    inner = identity.get(kind) or {}
    name = str(inner.get("displayName") or "").strip()
    if kind == "phone" and (not name or _NUMBERISH.match(name)):
        digits = re.sub(r"\D", "", name or str(inner.get("id") or ""))
        name = f"Phone ··{digits[-2:]}" if digits else "Phone"
    if not name:
        name = "Bot" if kind.startswith("application") else "Guest"
    return name[:64], kind


def page_entry(p: Participant, me: str = "") -> dict[str, Any]:
    """A roster entry as the page shows it: a name, a kind, the sourceId, mute and lobby state; a phone's number
    only as its last two digits."""
    name, kind = page_name(p.identity)
    return {
        "id": p.id,
        "name": name,
        "kind": kind,
        "sourceId": p.source_id,
        "isMuted": p.muted,
        "serverMuted": p.server_muted,
        "isInLobby": p.in_lobby,
        "me": p.id == me,
    }


@dataclass(eq=False)
class _Listener:
    conversation_id: str
    leg_id: str
    participant_id: str
    in_lobby: bool
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(QUEUE))
    closed: bool = False

    def put(self, message: dict[str, Any]) -> None:
        if self.closed:
            return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.closed = True  # the writer sees it and closes the feed


class MeetingFeed(Subscriber):
    """A conversation subscriber and media observer that feeds the meeting pages of one node."""

    def __init__(self, calls: Any, gateway: Any, edge: WebRtcEdge) -> None:
        self.calls = calls
        self.gateway = gateway
        self.edge = edge
        self._listeners: dict[str, set[_Listener]] = {}
        self._recent: dict[str, deque[tuple[str, str, float]]] = {}
        """Per meeting with listeners: the latest captions sent (speaker leg, text, start), to send each once."""

    @property
    def listening(self) -> int:
        return sum(len(s) for s in self._listeners.values())

    # -- conversation events (Subscriber) -----------------------------------------------------------------------
    def committed(self, batch: Batch, event: ev.Event) -> None:
        listeners = self._listeners.get(batch.conversation_id)
        if not listeners:
            return
        for listener in list(listeners):
            self._deliver(listener, event)

    def _deliver(self, listener: _Listener, event: ev.Event) -> None:
        if isinstance(event, ev.ParticipantJoined | ev.ParticipantUpdated):
            p = event.participant
            if p.id == listener.participant_id and listener.in_lobby and not p.in_lobby:
                listener.in_lobby = False
                listener.put({"type": "admitted"})  # the writer sends the whole roster the page may now see
            elif p.id == listener.participant_id or not listener.in_lobby:
                listener.put({"type": "participant", "participant": page_entry(p, listener.participant_id)})
        elif isinstance(event, ev.ParticipantLeft):
            if event.participant.id == listener.participant_id:
                listener.put({"type": "ended"})
            elif not listener.in_lobby:
                listener.put({"type": "left", "id": event.participant.id})
        elif isinstance(event, ev.RecordingStatusChanged) and not listener.in_lobby:
            listener.put({"type": "recording", "status": event.status})
        elif (isinstance(event, ev.LegEnded) and event.leg_id == listener.leg_id) or isinstance(
            event, ev.ConversationEnded
        ):
            listener.put({"type": "ended"})

    # -- live transcription (CallTranscription.heard) -----------------------------------------------------------------
    def caption(self, heard: HeardCaption) -> None:
        """A final caption of a transcribed meeting: to its pages (not the lobby), once per utterance."""
        listeners = self._listeners.get(heard.conversation_id)
        if not listeners:
            self._recent.pop(heard.conversation_id, None)
            return
        text = " ".join(heard.text.split())[:CAPTION_CHARS]
        recent = self._recent.setdefault(heard.conversation_id, deque(maxlen=_RECENT_CAPTIONS))
        if any(leg == heard.speaker_leg and t == text and abs(at - heard.start) < 3.0 for leg, t, at in recent):
            return  # a second transcribing bot heard the same utterance
        recent.append((heard.speaker_leg, text, heard.start))
        call = self.calls.leg(heard.speaker_leg)
        name, _ = page_name(heard.identity)
        message = {
            "type": "caption",
            "speaker": name,
            "participantId": call.my_participant_id if call is not None else "",
            "sourceId": call.source_id if call is not None else "",
            "text": text,
            "start": round(heard.start, 3),
        }
        for listener in list(listeners):
            if not listener.in_lobby:
                listener.put(message)

    # -- media events (LegObserver) ------------------------------------------------------------------------------
    def connected(self, call: Call) -> None:
        """(LegObserver) nothing."""

    def ending(self, call: Call) -> None:
        """(LegObserver) nothing: the conversation's events end the feed."""

    def on_events(self, events: Sequence[eng.MediaEvent]) -> None:
        if not self._listeners:
            return
        for event in events:
            if isinstance(event, eng.DominantSpeakerChanged):
                source = str(event.source_id) if event.source_id else None
                for listener in self._listeners.get(event.mix_id, ()):
                    if not listener.in_lobby:
                        listener.put({"type": "speaker", "sourceId": source})

    # -- the page's WebSocket --------------------------------------------------------------------------------------
    def _origin_ok(self, origin: str | None) -> bool:
        return origin is None or origin.rstrip("/") in {self.edge.public_url, *self.edge.config.allowed_origins}

    async def _find(self, credential: str) -> Call | None:
        """The meeting leg of the call the SIP WebSocket opened with `credential` made (waiting a little for it)."""
        for _ in range(FIND_TRIES):
            conn = self.edge.by_credential.get(credential_key(credential)) if credential else None
            if conn is None:
                return None
            for leg_id in self.gateway.browser_legs(conn.transport, conn.peer):
                call = self.calls.leg(leg_id)
                if call is not None and self.calls.conversation_kind(call.conversation_id) is ConversationKind.MEETING:
                    return call  # type: ignore[no-any-return]
            await asyncio.sleep(0.1)
        return None

    async def handler(self, request: web.Request) -> web.StreamResponse:
        if not self._origin_ok(request.headers.get("Origin")):
            return web.Response(status=403, text="origin not allowed\n")
        ws = web.WebSocketResponse(max_msg_size=1024, heartbeat=30.0)
        if not ws.can_prepare(request).ok:
            return web.Response(status=400, text="a WebSocket is required\n")
        credential = request.query.get("ticket") or request.query.get("access_token") or ""
        if not credential or self.edge.by_credential.get(credential_key(credential)) is None:
            return web.Response(status=401, text="the ticket or token of an open call is required\n")
        call = await self._find(credential)
        if call is None:
            return web.Response(status=404, text="this credential's call is not in a meeting\n")
        conv = await self.calls.conversation(call.conversation_id)
        if conv is None:
            return web.Response(status=404, text="the meeting is over\n")
        me = conv.roster.get(call.my_participant_id)
        listener = _Listener(call.conversation_id, call.id, call.my_participant_id, me is not None and me.in_lobby)
        self._listeners.setdefault(listener.conversation_id, set()).add(listener)
        await ws.prepare(request)
        self.edge.sockets.add(ws)
        writer = asyncio.get_running_loop().create_task(self._write(ws, listener))
        try:
            await self._snapshot(ws, listener)
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    break
                await self._command(listener, msg.data)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            self.edge.sockets.discard(ws)
            members = self._listeners.get(listener.conversation_id)
            if members is not None:
                members.discard(listener)
                if not members:
                    del self._listeners[listener.conversation_id]
                    self._recent.pop(listener.conversation_id, None)
            if not ws.closed:
                await ws.close()
        return ws

    async def _snapshot(self, ws: web.WebSocketResponse, listener: _Listener) -> None:
        conv = await self.calls.conversation(listener.conversation_id)
        if conv is None:
            await ws.send_str(orjson.dumps({"type": "ended"}).decode())
            return
        try:
            entries = conv.participants_for(listener.leg_id)
        except Exception:  # the leg left meanwhile
            await ws.send_str(orjson.dumps({"type": "ended"}).decode())
            return
        me = listener.participant_id
        recording = None if conv.meeting is None else conv.meeting.recording
        body = {
            "type": "roster",
            "me": me,
            "inLobby": listener.in_lobby,
            "recording": recording,
            "participants": [page_entry(p, me) for p in entries],
        }
        await ws.send_str(orjson.dumps(body).decode())

    async def _write(self, ws: web.WebSocketResponse, listener: _Listener) -> None:
        while not listener.closed or not listener.queue.empty():
            message = await listener.queue.get()
            if message["type"] == "admitted":
                await self._snapshot(ws, listener)
                continue
            await ws.send_str(orjson.dumps(message).decode())
            if message["type"] == "ended":
                break
        await ws.close()

    async def _command(self, listener: _Listener, text: str) -> None:
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            return
        if isinstance(data, dict) and data.get("type") == "mute" and isinstance(data.get("muted"), bool):
            try:
                await self.calls.execute(listener.conversation_id, c.MuteSelf(listener.leg_id, data["muted"]))
            except Exception as exc:  # the leg ended or is in the lobby: nothing to mute
                log.info("page mute refused: %s", type(exc).__name__)
