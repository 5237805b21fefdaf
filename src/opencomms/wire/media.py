"""Readers for the service-hosted media action bodies: playPrompt, recordResponse, subscribeToTone,
sendDtmfTones, cancelMediaProcessing, mute and unmute.

Prompts are Graph's `#microsoft.graph.mediaPrompt` or our `#opencomms.textPrompt` (text-to-speech), read into
`PromptSpec` values; the normalised JSON of each prompt is kept to echo back where Graph would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opencomms.domain.errors import BadRequest
from opencomms.domain.media import PromptSpec
from opencomms.wire import reader as r
from opencomms.wire import tones as wire_tones
from opencomms.wire.calls import media_info

MAX_PROMPTS = 20
"""Graph: at most 20 mediaPrompt items per playPrompt."""
MAX_TEXT = 2000
"""Longest text of one textPrompt, in characters."""
TONES = wire_tones.TONES
"""Graph `tone` names sendDtmfTones accepts."""
MIN_SPEED = 0.5
MAX_SPEED = 2.0
"""textPrompt.speed: the speaking rate relative to the voice's own."""
TEXT_PROMPT = "#opencomms.textPrompt"
MEDIA_PROMPT = "#microsoft.graph.mediaPrompt"
STOP_TONE_KEYS = frozenset("0123456789*#ABCD")
_VOICE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-")


def client_context(obj: dict[str, Any]) -> str | None:
    return r.string(obj, "clientContext", "", max_len=256)


def _prompt_kind(obj: dict[str, Any], path: str) -> str:
    raw = obj.get("@odata.type")
    if raw is None:
        if "text" in obj and "mediaInfo" not in obj:
            return TEXT_PROMPT
        return MEDIA_PROMPT
    if not isinstance(raw, str):
        raise BadRequest(f"'{path}.@odata.type' must be a string.")
    short = raw.lstrip("#").lower()
    if short in ("microsoft.graph.mediaprompt", "mediaprompt"):
        return MEDIA_PROMPT
    if short in ("opencomms.textprompt", "textprompt"):
        return TEXT_PROMPT
    raise BadRequest(
        f"Unknown @odata.type {raw[:64]!r} at '{path}'; "
        f"expected {MEDIA_PROMPT} or {TEXT_PROMPT} (an opencomms extension)."
    )


def _voice(obj: dict[str, Any], key: str, path: str) -> str | None:
    value = r.string(obj, key, f"{path}.", max_len=40)
    if value is not None and (not value or not set(value) <= _VOICE_CHARS):
        raise BadRequest(f"'{path}.{key}' must be a voice or language name such as 'en-us' or 'en-US'.")
    return value


def _speed(obj: dict[str, Any], path: str) -> float | None:
    value = obj.get("speed")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not MIN_SPEED <= value <= MAX_SPEED:
        raise BadRequest(f"'{path}.speed' must be a number from {MIN_SPEED:g} to {MAX_SPEED:g} (1 = the voice's pace).")
    return float(value)


def prompt(value: Any, path: str) -> tuple[PromptSpec, dict[str, Any]]:
    """One prompt: its spec, and its normalised JSON."""
    obj = r.as_object(value, path)
    kind = _prompt_kind(obj, path)
    if kind == TEXT_PROMPT:
        text = r.string(obj, "text", f"{path}.", required=True, max_len=MAX_TEXT) or ""
        if not text.strip():
            raise BadRequest(f"'{path}.text' must contain something to say.")
        spec = PromptSpec(
            text=text,
            voice=_voice(obj, "voice", path),
            language=_voice(obj, "language", path),
            speed=_speed(obj, path),
        )
        return spec, {**obj, "@odata.type": TEXT_PROMPT}
    if obj.get("mediaInfo") is None:
        raise BadRequest(f"'{path}.mediaInfo' is required.")
    info = media_info(obj["mediaInfo"], f"{path}.mediaInfo")
    spec = PromptSpec(uri=info["uri"], resource_id=info.get("resourceId") or None)
    return spec, {**obj, "@odata.type": MEDIA_PROMPT, "mediaInfo": info}


def prompts(obj: dict[str, Any], path: str, *, required: bool, max_items: int) -> list[PromptSpec]:
    items = r.array(obj, "prompts", path, required=required, min_items=1 if required else 0, max_items=max_items)
    return [prompt(item, f"{path}prompts[{i}]")[0] for i, item in enumerate(items or [])]


@dataclass(frozen=True, slots=True)
class PlayPrompt:
    prompts: list[PromptSpec]
    client_context: str | None


def play_prompt(body: Any) -> PlayPrompt:
    obj = r.as_object(body, "")
    return PlayPrompt(
        prompts=prompts(obj, "", required=True, max_items=MAX_PROMPTS), client_context=client_context(obj)
    )


@dataclass(frozen=True, slots=True)
class RecordResponse:
    prompts: list[PromptSpec]
    barge_in_allowed: bool
    initial_silence_timeout: int
    max_silence_timeout: int
    max_record_duration: int
    play_beep: bool
    stop_tones: str
    """Key characters that end the recording ('0'-'9', '*', '#', 'A'-'D')."""
    client_context: str | None


def _seconds(obj: dict[str, Any], key: str) -> int:
    value = r.integer(obj, key, "", lo=1, hi=120)
    return 5 if value is None else value


def record_response(body: Any) -> RecordResponse:
    obj = r.as_object(body, "")
    items = r.array(obj, "stopTones", "", max_items=16) or []
    keys = []
    for i, item in enumerate(items):
        if not isinstance(item, str) or item.upper() not in STOP_TONE_KEYS:
            raise BadRequest(f"'stopTones[{i}]' must be one key character: 0-9, '*', '#' or A-D.")
        keys.append(item.upper())
    barge_in = r.boolean(obj, "bargeInAllowed", "")
    beep = r.boolean(obj, "playBeep", "")
    return RecordResponse(
        prompts=prompts(obj, "", required=False, max_items=1),
        barge_in_allowed=bool(barge_in),
        initial_silence_timeout=_seconds(obj, "initialSilenceTimeoutInSeconds"),
        max_silence_timeout=_seconds(obj, "maxSilenceTimeoutInSeconds"),
        max_record_duration=_seconds(obj, "maxRecordDurationInSeconds"),
        play_beep=True if beep is None else beep,
        stop_tones="".join(dict.fromkeys(keys)),
        client_context=client_context(obj),
    )


@dataclass(frozen=True, slots=True)
class SendDtmfTones:
    tones: list[str]
    """Graph `tone` names, in order."""
    delay_between_tones_ms: int | None
    client_context: str | None


def send_dtmf_tones(body: Any) -> SendDtmfTones:
    obj = r.as_object(body, "")
    items = r.array(obj, "tones", "", required=True, min_items=1, max_items=64) or []
    return SendDtmfTones(
        tones=[r.enum_value(item, f"tones[{i}]", TONES) for i, item in enumerate(items)],
        delay_between_tones_ms=r.integer(obj, "delayBetweenTonesMs", "", lo=0, hi=5000),
        client_context=client_context(obj),
    )


def context_only(body: Any) -> str | None:
    """Bodies that carry only `clientContext` (subscribeToTone, cancelMediaProcessing, mute, unmute)."""
    if body is None:
        return None
    return client_context(r.as_object(body, ""))
