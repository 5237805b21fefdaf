"""opencomms.sdk: write calling bots in Python against opencomms (or Microsoft Graph cloud communications).

Core (stateless): `CommsClient` (REST, client-credentials auth, retries), `NotificationReceiver` (an ASGI
callback endpoint validating the node's JWT), body builders, meetings (`parse_join_url`, `OnlineMeeting`,
`Roster`), and `RedisCallState` for bots run as several
workers. Calling (stateful): `opencomms.sdk.calling`. Application-hosted media: `opencomms.sdk.media`.
Importing this package does not import the server (nor numpy, uvicorn or typer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opencomms.sdk.auth import ClientCredentials, TokenCache
from opencomms.sdk.builders import (
    app_hosted_media,
    application_instance_source,
    application_instance_target,
    application_target,
    media_info,
    media_prompt,
    phone_target,
    service_hosted_media,
    text_prompt,
    user_target,
)
from opencomms.sdk.client import CommsClient
from opencomms.sdk.errors import AuthenticationError, CallbackAuthError, GraphError, SdkError
from opencomms.sdk.jwks import DEFAULT_CALLBACK_ISSUER, CallbackValidator, JwksCache, jwks_url_for
from opencomms.sdk.meetings import (
    JoinUrlError,
    JoinUrlInfo,
    chat_info,
    join_meeting_id_meeting_info,
    organizer_meeting_info,
    outgoing_call_options,
    parse_join_url,
)
from opencomms.sdk.models import (
    CallInfo,
    OnlineMeeting,
    Operation,
    Participant,
    ResultInfo,
    ToneInfo,
    Transcript,
    tone_key,
    tone_names,
)
from opencomms.sdk.notifications import Notification, NotificationError, ResourceKind, parse_notifications
from opencomms.sdk.ordering import CallSequencer, Deduper
from opencomms.sdk.receiver import NotificationReceiver
from opencomms.sdk.retry import RetryPolicy
from opencomms.sdk.roster import Roster, RosterChange
from opencomms.sdk.serve import serve_receiver

if TYPE_CHECKING:
    from opencomms.sdk.media import AudioFrame, AudioSocket, LocalMediaSession
    from opencomms.sdk.state import RedisCallState

_LAZY = {
    "RedisCallState": "opencomms.sdk.state",
    "LocalMediaSession": "opencomms.sdk.media",
    "AudioSocket": "opencomms.sdk.media",
    "AudioFrame": "opencomms.sdk.media",
}


def __getattr__(name: str) -> Any:
    """Heavier optional parts (redis, app-hosted media) are imported on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'opencomms.sdk' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "DEFAULT_CALLBACK_ISSUER",
    "AudioFrame",
    "AudioSocket",
    "AuthenticationError",
    "CallInfo",
    "CallSequencer",
    "CallbackAuthError",
    "CallbackValidator",
    "ClientCredentials",
    "CommsClient",
    "Deduper",
    "GraphError",
    "JoinUrlError",
    "JoinUrlInfo",
    "JwksCache",
    "LocalMediaSession",
    "Notification",
    "NotificationError",
    "NotificationReceiver",
    "OnlineMeeting",
    "Operation",
    "Participant",
    "RedisCallState",
    "ResourceKind",
    "ResultInfo",
    "RetryPolicy",
    "Roster",
    "RosterChange",
    "SdkError",
    "TokenCache",
    "ToneInfo",
    "Transcript",
    "app_hosted_media",
    "application_instance_source",
    "application_instance_target",
    "application_target",
    "chat_info",
    "join_meeting_id_meeting_info",
    "jwks_url_for",
    "media_info",
    "media_prompt",
    "organizer_meeting_info",
    "outgoing_call_options",
    "parse_join_url",
    "parse_notifications",
    "phone_target",
    "serve_receiver",
    "service_hosted_media",
    "text_prompt",
    "tone_key",
    "tone_names",
    "user_target",
]
