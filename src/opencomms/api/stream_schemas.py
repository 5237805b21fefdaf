"""Request schemas of the #opencomms media-stream actions (api/routes/streams.py), merged into api/schemas.py."""

from __future__ import annotations

from typing import Any

from opencomms.wire import mediastreams as wire

Schema = dict[str, Any]

START_MEDIA_STREAM: Schema = {
    "type": "object",
    "required": ["url"],
    "description": "opencomms extension: Twilio Media Streams' WebSocket format (connected, start, media as base64 "
    "µ-law 8 kHz in 20 ms, dtmf, mark, stop; from the WebSocket: media, mark, clear). The node connects to `url` "
    "(judged by its egress policy); hang up through this API, not Twilio's.",
    "properties": {
        "url": {"type": "string", "maxLength": 2048, "pattern": "^[wW][sS][sS]?://"},
        "track": {
            "type": ["string", "null"],
            "enum": [*wire.TRACKS, None],
            "description": "inbound (default): what the call hears (the caller), or the participant's own audio; "
            "outbound: what the bot's call says; both.",
        },
        "participantId": {
            "type": ["string", "null"],
            "maxLength": 64,
            "description": "In a group call or meeting: stream this participant's own (unmixed) audio as inbound.",
        },
        "customParameters": {
            "type": ["object", "null"],
            "maxProperties": wire.MAX_PARAMETERS,
            "additionalProperties": {"type": "string", "maxLength": 512},
            "description": "Echoed in start.customParameters.",
        },
        "clientContext": {"type": ["string", "null"], "maxLength": 256},
    },
    "examples": [{"url": "wss://bot.example/stream", "track": "inbound", "customParameters": {"lang": "en"}}],
}
STOP_MEDIA_STREAM: Schema = {
    "type": "object",
    "properties": {
        "streamSid": {"type": ["string", "null"], "maxLength": 64},
        "clientContext": {"type": ["string", "null"], "maxLength": 256},
    },
    "examples": [{"streamSid": "MZ0123456789abcdef0123456789abcdef"}, {}],
}

REQUEST_SCHEMAS: dict[str, Schema] = {
    "startMediaStream": START_MEDIA_STREAM,
    "stopMediaStream": STOP_MEDIA_STREAM,
}
