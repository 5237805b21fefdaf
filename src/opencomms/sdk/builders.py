"""Builders of the Graph JSON bodies bots send: targets, sources, media configs, prompts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

JsonObj = dict[str, Any]

SERVICE_HOSTED = "#microsoft.graph.serviceHostedMediaConfig"
APP_HOSTED = "#microsoft.graph.appHostedMediaConfig"


def _identity_set(kind: str, ident: JsonObj) -> JsonObj:
    return {"@odata.type": "#microsoft.graph.identitySet", kind: {"@odata.type": "#microsoft.graph.identity", **ident}}


def _target(kind: str, ident: JsonObj) -> JsonObj:
    return {"@odata.type": "#microsoft.graph.invitationParticipantInfo", "identity": _identity_set(kind, ident)}


def application_target(app_id: str, display_name: str | None = None) -> JsonObj:
    """Another bot (an application registered on the platform)."""
    ident: JsonObj = {"id": app_id}
    if display_name:
        ident["displayName"] = display_name
    return _target("application", ident)


def application_instance_target(instance_id: str) -> JsonObj:
    """An application instance (a bot that owns phone numbers)."""
    return _target("applicationInstance", {"id": instance_id})


def user_target(user_id: str, tenant_id: str | None = None) -> JsonObj:
    ident: JsonObj = {"id": user_id}
    if tenant_id:
        ident["tenantId"] = tenant_id
    return _target("user", ident)


def phone_target(number: str) -> JsonObj:
    """A phone number in E.164 (`+14155550100`), reached through the SIP gateway."""
    return _target("phone", {"id": number})


def application_instance_source(instance_id: str, display_name: str | None = None) -> JsonObj:
    """`source` of an outbound call presented as an application instance (its number is the caller id)."""
    ident: JsonObj = {"id": instance_id}
    if display_name:
        ident["displayName"] = display_name
    return {"@odata.type": "#microsoft.graph.participantInfo", "identity": _identity_set("applicationInstance", ident)}


def media_info(uri: str, resource_id: str | None = None) -> JsonObj:
    info: JsonObj = {"@odata.type": "#microsoft.graph.mediaInfo", "uri": uri}
    if resource_id:
        info["resourceId"] = resource_id
    return info


def media_prompt(uri: str, resource_id: str | None = None) -> JsonObj:
    """A WAV file to play (fetched by the node; `resource_id` keys its cache)."""
    return {"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": media_info(uri, resource_id)}


def text_prompt(
    text: str, voice: str | None = None, language: str | None = None, speed: float | None = None
) -> JsonObj:
    """Text the node speaks with text-to-speech (opencomms extension `#opencomms.textPrompt`): English with a
    natural piper voice unless `voice` names an espeak-ng one; `speed` 0.5-2.0 times the voice's pace."""
    prompt: JsonObj = {"@odata.type": "#opencomms.textPrompt", "text": text}
    if voice:
        prompt["voice"] = voice
    if language:
        prompt["language"] = language
    if speed is not None:
        prompt["speed"] = speed
    return prompt


def service_hosted_media(prefetch: Iterable[JsonObj | str] = ()) -> JsonObj:
    """serviceHostedMediaConfig; `prefetch` takes mediaInfo objects or URIs to warm the node's prompt cache."""
    items = [media_info(p) if isinstance(p, str) else p for p in prefetch]
    return {"@odata.type": SERVICE_HOSTED, "preFetchMedia": items}


def app_hosted_media(blob: str) -> JsonObj:
    return {"@odata.type": APP_HOSTED, "blob": blob}
