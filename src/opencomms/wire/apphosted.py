"""Application-hosted media on the wire (ours; Microsoft's blob and transport are unpublished): the
`appHostedMediaConfig.blob` the SDK's LocalMediaSession makes, and the WebSocket frame protocol between the node
(client) and the bot's media endpoint (server). Sans-I/O and stdlib-only: the node and `opencomms.sdk.media`
both use it.

Blob (`appHostedMediaConfig.blob`, a JSON string of at most 2048 characters)::

    {"v": 1, "url": "ws://127.0.0.1:40123/media", "key": "<call key>", "secret": "<per-call secret>"}

`url` is ws:// or wss:// with a host and no credentials; `key` (1-128 of A-Z a-z 0-9 . _ -) names the call at
the bot; `secret` (22-256 URL-safe characters) proves the node is the one the bot gave the blob to. Unknown
members are ignored. A blob that breaks these rules makes create/answer fail with 400.

Session: the node connects a WebSocket to `url` once the bot's leg is established, and sends `hello` (text). The
bot answers `ready`, or closes with code 4401 when key or secret do not match. Then, both ways, in any order:

* Binary messages: 20 ms of audio, 16 kHz mono s16le. Little-endian header (16 bytes)::

      u8 version (1) | u8 kind (1 = audio) | u16 unmixed count n | u32 sequence | u64 timestamp (100 ns ticks)

  then 640 bytes of mixed PCM, then n times: u8 source id length L | L bytes source id (ASCII) | 640 bytes PCM.
  Node to bot: one message per engine tick (50/s), the mixed frame the bot's leg hears plus the unmixed frame of
  each other participant (at most 4, the loudest), tagged with its mediaStream sourceId; the timestamp is the
  frame's time on the node's monotonic clock (only differences mean something). Bot to node: n = 0, the frame
  the bot's leg says; the node queues it for its next tick (8 frames at most, the oldest dropped).
* Text messages: one JSON object with a `type`:
  `hello` {v, key, secret, callId, sourceId} node -> bot; `ready` {} bot -> node;
  `dtmf` {key, tone, at} node -> bot, a key heard on the bot's leg (`tone` as Graph's toneInfo.tone);
  `dominantSpeaker` {sourceId | null, history} node -> bot, when the dominant speaker (engine VAD) changes;
  `bye` {reason} either way: the sender is closing on purpose (no reconnect).
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "APP_HOSTED_TYPE",
    "FRAME_BYTES",
    "MAX_BLOB_CHARS",
    "MAX_UNMIXED",
    "UNAUTHORIZED_CLOSE",
    "AudioMessage",
    "BlobError",
    "FrameError",
    "MediaBlob",
    "decode_audio",
    "decode_control",
    "encode_audio",
    "encode_control",
    "parse_blob",
    "read_blob",
]

APP_HOSTED_TYPE = "#microsoft.graph.appHostedMediaConfig"
BLOB_VERSION = 1
PROTOCOL_VERSION = 1
KIND_AUDIO = 1
FRAME_BYTES = 640
"""20 ms of 16 kHz mono s16le."""
MAX_BLOB_CHARS = 2048
MAX_URL_CHARS = 1024
MAX_UNMIXED = 4
"""Unmixed frames the node sends per tick (as Microsoft's library: the top four speakers)."""
MAX_UNMIXED_DECODED = 16
MAX_SOURCE_ID = 64
MAX_CONTROL_CHARS = 4096
UNAUTHORIZED_CLOSE = 4401
"""WebSocket close code of a bot refusing the node's hello (unknown key or wrong secret)."""
TICKS_PER_SECOND = 10_000_000

_HEADER = struct.Struct("<BBHIQ")
_KEY = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_SECRET = re.compile(r"^[A-Za-z0-9_-]{22,256}$")
_CONTROL_TYPES = frozenset({"hello", "ready", "dtmf", "dominantSpeaker", "bye"})


class FrameError(ValueError):
    """A WebSocket message that is not valid in this protocol."""


@dataclass(frozen=True, slots=True)
class MediaBlob:
    """What the node needs to reach the bot's media endpoint for one call."""

    url: str
    key: str
    secret: str

    def to_json(self) -> str:
        return json.dumps({"v": BLOB_VERSION, "url": self.url, "key": self.key, "secret": self.secret})

    def __repr__(self) -> str:  # never show the secret in logs or tracebacks
        return f"MediaBlob(url={self.url!r}, key={self.key!r}, secret=***)"


class BlobError(ValueError):
    """A media blob that is not valid; the message names the field. The node answers it as BadRequest (400)."""


def _bad(message: str, path: str) -> BlobError:
    return BlobError(f"'{path}' is not a valid opencomms media blob: {message}.")


def check_ws_url(url: str) -> str:
    """`url` if it is an absolute ws:// or wss:// URL with a host, no credentials, no fragment; else ValueError."""
    if len(url) > MAX_URL_CHARS:
        raise ValueError(f"the URL is longer than {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a bad port
    except ValueError as exc:
        raise ValueError(f"malformed URL ({exc})") from None
    if parts.scheme.lower() not in ("ws", "wss"):
        raise ValueError("only ws:// and wss:// URLs are allowed")
    if not parts.hostname:
        raise ValueError("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials in the URL are not allowed")
    if parts.fragment:
        raise ValueError("a fragment is not allowed in the URL")
    if port == 0:
        raise ValueError("port 0 is not a valid port")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise ValueError("the URL contains spaces or control characters")
    return url


def read_blob(text: Any, path: str = "mediaConfig.blob") -> MediaBlob:
    """`parse_blob` for the node: BadRequest (400) naming `path` if the blob is not valid."""
    from opencomms.domain.errors import BadRequest  # here, so that the SDK importing this module does not

    try:
        return parse_blob(text, path)
    except BlobError as exc:
        raise BadRequest(str(exc)) from None


def parse_blob(text: Any, path: str = "mediaConfig.blob") -> MediaBlob:
    """Parse and validate a blob made by LocalMediaSession (hostile input); BlobError naming `path` if not."""
    if not isinstance(text, str):
        raise _bad("it must be a string", path)
    if len(text) > MAX_BLOB_CHARS:
        raise _bad(f"longer than {MAX_BLOB_CHARS} characters", path)
    try:
        doc = json.loads(text)
    except ValueError:
        raise _bad("it is not JSON", path) from None
    if not isinstance(doc, dict):
        raise _bad("it must be a JSON object", path)
    if doc.get("v") != BLOB_VERSION:
        raise _bad(f"'v' must be {BLOB_VERSION}", path)
    url, key, secret = doc.get("url"), doc.get("key"), doc.get("secret")
    if not isinstance(url, str):
        raise _bad("'url' (a ws:// or wss:// URL) is required", path)
    try:
        check_ws_url(url)
    except ValueError as exc:
        raise _bad(f"'url': {exc}", path) from None
    if not isinstance(key, str) or not _KEY.match(key):
        raise _bad("'key' must be 1 to 128 of A-Z a-z 0-9 . _ -", path)
    if not isinstance(secret, str) or not _SECRET.match(secret):
        raise _bad("'secret' must be 22 to 256 URL-safe characters", path)
    return MediaBlob(url=url, key=key, secret=secret)


# -- audio -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AudioMessage:
    """One binary message: a mixed frame and the unmixed frames (source id, PCM) of the same 20 ms."""

    sequence: int
    timestamp: int
    pcm: bytes
    unmixed: tuple[tuple[str, bytes], ...] = ()


def encode_audio(sequence: int, timestamp: int, pcm: bytes, unmixed: tuple[tuple[str, bytes], ...] = ()) -> bytes:
    """The binary message for one 20 ms frame (sequence wraps at 2**32; timestamp must be >= 0)."""
    if len(pcm) != FRAME_BYTES:
        raise FrameError(f"a frame is {FRAME_BYTES} bytes, got {len(pcm)}")
    if len(unmixed) > MAX_UNMIXED_DECODED:
        raise FrameError(f"at most {MAX_UNMIXED_DECODED} unmixed frames")
    parts = [_HEADER.pack(PROTOCOL_VERSION, KIND_AUDIO, len(unmixed), sequence & 0xFFFFFFFF, timestamp), pcm]
    for source_id, data in unmixed:
        raw = source_id.encode("ascii")
        if not 0 < len(raw) <= MAX_SOURCE_ID or len(data) != FRAME_BYTES:
            raise FrameError("an unmixed frame needs a 1-64 character source id and 640 bytes")
        parts += [bytes((len(raw),)), raw, data]
    return b"".join(parts)


def decode_audio(data: bytes) -> AudioMessage:
    """Parse one binary message; FrameError when it is malformed (wrong version, kind, lengths)."""
    if len(data) < _HEADER.size + FRAME_BYTES:
        raise FrameError(f"an audio message is at least {_HEADER.size + FRAME_BYTES} bytes, got {len(data)}")
    version, kind, count, sequence, timestamp = _HEADER.unpack_from(data)
    if version != PROTOCOL_VERSION or kind != KIND_AUDIO:
        raise FrameError(f"unsupported message version {version} kind {kind}")
    if count > MAX_UNMIXED_DECODED:
        raise FrameError(f"{count} unmixed frames (at most {MAX_UNMIXED_DECODED})")
    pos = _HEADER.size + FRAME_BYTES
    pcm = bytes(data[_HEADER.size : pos])
    unmixed: list[tuple[str, bytes]] = []
    for _ in range(count):
        if pos >= len(data):
            raise FrameError("truncated unmixed frame")
        length = data[pos]
        end = pos + 1 + length + FRAME_BYTES
        if not 0 < length <= MAX_SOURCE_ID or end > len(data):
            raise FrameError("truncated unmixed frame or bad source id length")
        try:
            source_id = bytes(data[pos + 1 : pos + 1 + length]).decode("ascii")
        except UnicodeDecodeError:
            raise FrameError("a source id must be ASCII") from None
        unmixed.append((source_id, bytes(data[pos + 1 + length : end])))
        pos = end
    if pos != len(data):
        raise FrameError("trailing bytes after the last frame")
    return AudioMessage(sequence, timestamp, pcm, tuple(unmixed))


# -- control ------------------------------------------------------------------------------------------------


def encode_control(kind: str, **fields: Any) -> str:
    """A text message `{"type": kind, **fields}`."""
    if kind not in _CONTROL_TYPES:
        raise FrameError(f"unknown control message type {kind!r}")
    return json.dumps({"type": kind, **fields}, separators=(",", ":"))


def decode_control(text: str) -> dict[str, Any]:
    """Parse one text message: a JSON object of at most 4096 characters with a known `type`; else FrameError."""
    if len(text) > MAX_CONTROL_CHARS:
        raise FrameError(f"a control message is at most {MAX_CONTROL_CHARS} characters")
    try:
        doc = json.loads(text)
    except ValueError:
        raise FrameError("a control message must be JSON") from None
    if not isinstance(doc, dict) or doc.get("type") not in _CONTROL_TYPES:
        raise FrameError("a control message must be an object with a known 'type'")
    return doc
