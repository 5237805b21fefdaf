"""Media streams in Twilio Media Streams' WebSocket format (#opencomms.startMediaStream), the wire side.

Owns the startMediaStream / stopMediaStream bodies and the JSON messages of one stream both ways, so that voice-AI
frameworks that speak Twilio's format (Pipecat's TwilioFrameSerializer, ...) work unmodified:

* node -> bot: `connected`, `start` (streamSid, callSid, accountSid, tracks, customParameters, mediaFormat
  audio/x-mulaw 8000 Hz mono), `media` (base64 µ-law, 20 ms, with sequenceNumber, track, chunk, timestamp in ms since
  the stream started), `dtmf` (digit), `mark` (the echo of a bot's mark once the audio queued before it has played),
  `stop`. `sequenceNumber` counts every message after `connected` from 1, as strings, as Twilio does; so do
  `chunk` (per track) and `timestamp`.
* bot -> node: `media` (base64 µ-law 8 kHz, any length, played into the call in order), `mark` (named point in the
  played audio), `clear` (drop the queued audio; its marks are echoed at once).

Pure: no sockets, no clock (the caller passes timestamps). Must not convert audio (calling/mediastreams.py does).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from opencomms.domain.errors import BadRequest
from opencomms.wire import reader as r

__all__ = [
    "ENCODING",
    "MAX_MESSAGE_BYTES",
    "SAMPLE_RATE",
    "TRACKS",
    "Clear",
    "Mark",
    "Media",
    "StartMediaStream",
    "StopMediaStream",
    "StreamEncoder",
    "StreamError",
    "new_stream_sid",
    "parse_inbound",
    "start_media_stream",
    "stop_media_stream",
]

SAMPLE_RATE = 8000
ENCODING = "audio/x-mulaw"
TRACKS = ("inbound", "outbound", "both")
"""`track` of startMediaStream: what the caller (or the participant) says, what the bot's call says, or both."""
MAX_MESSAGE_BYTES = 64 * 1024
"""Largest message accepted from the bot (a `media` of up to ~4 s of audio)."""
MAX_PARAMETERS = 16
MAX_MARK_NAME = 256


class StreamError(ValueError):
    """A message from the bot that is not one of Twilio's (or not well formed): counted and skipped."""


def new_stream_sid() -> str:
    """A Twilio-shaped stream id: 'MZ' and 32 hex digits."""
    return "MZ" + secrets.token_hex(16)


@dataclass(frozen=True, slots=True)
class StartMediaStream:
    url: str
    """ws:// or wss:// URL the node connects to (judged by the node's egress policy)."""
    track: str
    """inbound, outbound or both."""
    participant_id: str | None
    """Stream this meeting participant's own audio as the inbound track instead of what the call hears."""
    custom_parameters: dict[str, str]
    """Echoed in `start.customParameters` (Twilio's <Parameter>s)."""
    client_context: str | None


def start_media_stream(body: Any) -> StartMediaStream:
    obj = r.as_object(body, "")
    url = r.string(obj, "url", "", required=True, max_len=2048) or ""
    if not url.lower().startswith(("ws://", "wss://")):
        raise BadRequest("'url' must be a ws:// or wss:// URL.")
    track = r.string(obj, "track", "", max_len=16) or "inbound"
    if track not in TRACKS:
        raise BadRequest("'track' must be 'inbound', 'outbound' or 'both'.")
    params = obj.get("customParameters")
    custom: dict[str, str] = {}
    if params is not None:
        params = r.as_object(params, "customParameters")
        if len(params) > MAX_PARAMETERS:
            raise BadRequest(f"'customParameters' may hold at most {MAX_PARAMETERS} entries.")
        for key, value in params.items():
            if not isinstance(value, str) or len(key) > 128 or len(value) > 512:
                raise BadRequest("'customParameters' maps names (up to 128 characters) to strings (up to 512).")
            custom[key] = value
    return StartMediaStream(
        url=url,
        track=track,
        participant_id=r.string(obj, "participantId", "", max_len=64) or None,
        custom_parameters=custom,
        client_context=r.string(obj, "clientContext", "", max_len=256),
    )


@dataclass(frozen=True, slots=True)
class StopMediaStream:
    stream_sid: str | None
    """The stream to stop (None: every stream of the call)."""
    client_context: str | None


def stop_media_stream(body: Any) -> StopMediaStream:
    obj = r.as_object(body if body is not None else {}, "")
    return StopMediaStream(
        stream_sid=r.string(obj, "streamSid", "", max_len=64) or None,
        client_context=r.string(obj, "clientContext", "", max_len=256),
    )


@dataclass(eq=False)
class StreamEncoder:
    """The node's messages of one stream, numbered."""

    stream_sid: str
    call_sid: str
    account_sid: str
    tracks: tuple[str, ...]
    custom_parameters: dict[str, str] = field(default_factory=dict)
    sequence: int = 0
    chunks: dict[str, int] = field(default_factory=dict)

    def _message(self, event: str, **fields: Any) -> str:
        self.sequence += 1
        return json.dumps(
            {"event": event, "sequenceNumber": str(self.sequence), **fields, "streamSid": self.stream_sid},
            separators=(",", ":"),
        )

    @staticmethod
    def connected() -> str:
        return json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}, separators=(",", ":"))

    def start(self) -> str:
        return self._message(
            "start",
            start={
                "streamSid": self.stream_sid,
                "accountSid": self.account_sid,
                "callSid": self.call_sid,
                "tracks": list(self.tracks),
                "customParameters": self.custom_parameters,
                "mediaFormat": {"encoding": ENCODING, "sampleRate": SAMPLE_RATE, "channels": 1},
            },
        )

    def media(self, track: str, ulaw: bytes, timestamp_ms: int) -> str:
        chunk = self.chunks.get(track, 0) + 1
        self.chunks[track] = chunk
        payload = base64.b64encode(ulaw).decode("ascii")
        media = {"track": track, "chunk": str(chunk), "timestamp": str(timestamp_ms), "payload": payload}
        return self._message("media", media=media)

    def dtmf(self, digit: str) -> str:
        return self._message("dtmf", dtmf={"track": "inbound_track", "digit": digit})

    def mark(self, name: str) -> str:
        return self._message("mark", mark={"name": name})

    def stop(self) -> str:
        return self._message("stop", stop={"accountSid": self.account_sid, "callSid": self.call_sid})


@dataclass(frozen=True, slots=True)
class Media:
    ulaw: bytes


@dataclass(frozen=True, slots=True)
class Mark:
    name: str


@dataclass(frozen=True, slots=True)
class Clear:
    pass


def parse_inbound(text: str | bytes) -> Media | Mark | Clear | None:
    """One message from the bot: Media, Mark, Clear, or None for the events a node ignores (Twilio ignores
    unknown events too). StreamError for a malformed one."""
    try:
        message = json.loads(text)
    except ValueError:
        raise StreamError("not JSON") from None
    if not isinstance(message, dict):
        raise StreamError("not a JSON object")
    event = message.get("event")
    if event == "media":
        media = message.get("media")
        payload = media.get("payload") if isinstance(media, dict) else None
        if not isinstance(payload, str):
            raise StreamError("media without media.payload")
        try:
            return Media(base64.b64decode(payload, validate=True))
        except (binascii.Error, ValueError):
            raise StreamError("media.payload is not base64") from None
    if event == "mark":
        mark = message.get("mark")
        name = mark.get("name") if isinstance(mark, dict) else None
        if not isinstance(name, str) or len(name) > MAX_MARK_NAME:
            raise StreamError("mark without a mark.name (up to 256 characters)")
        return Mark(name)
    if event == "clear":
        return Clear()
    if not isinstance(event, str):
        raise StreamError("no event")
    return None
