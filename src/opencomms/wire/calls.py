"""Readers for the call-control request bodies (create, answer, reject, redirect, transfer).

Each returns a frozen request value whose nested Graph objects are normalised JSON, ready to echo back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opencomms.domain.errors import BadRequest
from opencomms.wire import reader as r
from opencomms.wire.reader import JsonObj

MODALITIES = ("audio", "video", "videoBasedScreenSharing", "data", "unknownFutureValue")
REJECT_REASONS = ("none", "busy", "forbidden", "unknownFutureValue")
IDENTITY_KEYS = (
    "application",
    "applicationInstance",
    "device",
    "user",
    "phone",
    "guest",
    "encrypted",
    "onPremises",
    "azureCommunicationServicesUser",
    "assertedIdentity",
)
_IDENTITY_TYPES = (
    "identity",
    "communicationsUserIdentity",
    "communicationsApplicationIdentity",
    "communicationsApplicationInstanceIdentity",
    "communicationsGuestIdentity",
    "communicationsPhoneIdentity",
    "communicationsEncryptedIdentity",
)
_CALL_OPTION_FLAGS = (
    "hideBotAfterEscalation",
    "isContentSharingNotificationEnabled",
    "isDeltaRosterEnabled",
    "isInteractiveRosterEnabled",
)


# -- nested Graph types ---------------------------------------------------------------------------------
def identity(value: Any, path: str) -> JsonObj:
    obj = r.as_object(value, path)
    kind = r.odata_type(obj, path, _IDENTITY_TYPES) or "#microsoft.graph.identity"
    r.string(obj, "id", f"{path}.", max_len=256)
    r.string(obj, "displayName", f"{path}.", max_len=256)
    return {**obj, "@odata.type": kind}


def identity_set(value: Any, path: str, *, required_one: bool = True) -> JsonObj:
    obj = r.as_object(value, path)
    kind = r.odata_type(obj, path, ("identitySet", "communicationsIdentitySet")) or "#microsoft.graph.identitySet"
    out: JsonObj = {"@odata.type": kind}
    found = False
    for key, item in obj.items():
        if key in IDENTITY_KEYS:
            if item is not None:
                out[key] = identity(item, f"{path}.{key}")
                found = True
        elif key == "endpointType":
            out[key] = r.string(obj, key, f"{path}.")
        elif key != "@odata.type":
            out[key] = item  # open type: echo unknown members
    if required_one and not found:
        raise BadRequest(f"'{path}' must name at least one of: {', '.join(IDENTITY_KEYS)}.")
    return out


def participant_info(value: Any, path: str) -> JsonObj:
    obj = r.as_object(value, path)
    r.odata_type(obj, path, ("participantInfo",))
    out: JsonObj = {**obj, "@odata.type": "#microsoft.graph.participantInfo"}
    if obj.get("identity") is None:
        raise BadRequest(f"'{path}.identity' is required.")
    out["identity"] = identity_set(obj["identity"], f"{path}.identity")
    for key in ("participantId", "countryCode", "endpointType", "languageId", "region"):
        r.string(obj, key, f"{path}.", max_len=256)
    return out


def invitation_participant_info(value: Any, path: str) -> JsonObj:
    obj = r.as_object(value, path)
    r.odata_type(obj, path, ("invitationParticipantInfo",))
    out: JsonObj = {**obj, "@odata.type": "#microsoft.graph.invitationParticipantInfo"}
    if obj.get("identity") is None:
        raise BadRequest(f"'{path}.identity' is required.")
    out["identity"] = identity_set(obj["identity"], f"{path}.identity")
    r.boolean(obj, "hidden", f"{path}.")
    r.boolean(obj, "removeFromDefaultAudioRoutingGroup", f"{path}.")
    r.string(obj, "participantId", f"{path}.", max_len=256)
    r.string(obj, "replacesCallId", f"{path}.", max_len=256)
    return out


def media_info(value: Any, path: str) -> JsonObj:
    obj = r.as_object(value, path)
    r.odata_type(obj, path, ("mediaInfo",))
    r.url(obj, "uri", f"{path}.", required=True)
    r.string(obj, "resourceId", f"{path}.", max_len=256)
    return {**obj, "@odata.type": "#microsoft.graph.mediaInfo"}


def media_config(value: Any, path: str) -> JsonObj:
    """serviceHostedMediaConfig or appHostedMediaConfig; inferred from `blob` when @odata.type is absent."""
    obj = r.as_object(value, path)
    kind = r.odata_type(obj, path, ("serviceHostedMediaConfig", "appHostedMediaConfig"))
    if kind is None:
        kind = "#microsoft.graph.appHostedMediaConfig" if "blob" in obj else "#microsoft.graph.serviceHostedMediaConfig"
    out: JsonObj = {**obj, "@odata.type": kind}
    if kind.endswith("appHostedMediaConfig"):
        r.string(obj, "blob", f"{path}.", required=True, max_len=65536)
    else:
        items = r.array(obj, "preFetchMedia", f"{path}.", max_items=100) or []
        out["preFetchMedia"] = [media_info(item, f"{path}.preFetchMedia[{i}]") for i, item in enumerate(items)]
    return out


def is_app_hosted(config: JsonObj) -> bool:
    return str(config.get("@odata.type", "")).endswith("appHostedMediaConfig")


def call_options(value: Any, path: str, default_type: str) -> JsonObj:
    obj = r.as_object(value, path)
    kind = r.odata_type(obj, path, ("outgoingCallOptions", "incomingCallOptions")) or f"#microsoft.graph.{default_type}"
    for flag in _CALL_OPTION_FLAGS:
        r.boolean(obj, flag, f"{path}.")
    return {**obj, "@odata.type": kind}


def modalities(obj: JsonObj, key: str, path: str) -> list[str]:
    items = r.array(obj, key, path, min_items=1, max_items=8)
    if items is None:
        return ["audio"]
    return [r.enum_value(item, f"{path}{key}[{i}]", MODALITIES) for i, item in enumerate(items)]


MEETING_INFO_TYPES = ("organizerMeetingInfo", "joinMeetingIdMeetingInfo", "tokenMeetingInfo")


def chat_info(value: Any, path: str) -> JsonObj:
    obj = r.as_object(value, path)
    r.odata_type(obj, path, ("chatInfo",))
    r.string(obj, "threadId", f"{path}.", required=True, max_len=512)
    r.string(obj, "messageId", f"{path}.", max_len=256)
    r.string(obj, "replyChainMessageId", f"{path}.", max_len=256)
    return {**obj, "@odata.type": "#microsoft.graph.chatInfo"}


def meeting_info(value: Any, path: str) -> JsonObj:
    """organizerMeetingInfo (with chatInfo) or joinMeetingIdMeetingInfo; tokenMeetingInfo is refused (policy
    recording's incoming calls carry it; a bot cannot join with one)."""
    obj = r.as_object(value, path)
    kind = r.odata_type(obj, path, MEETING_INFO_TYPES)
    if kind is None:
        kind = "#microsoft.graph.joinMeetingIdMeetingInfo" if "joinMeetingId" in obj else ""
        kind = kind or ("#microsoft.graph.organizerMeetingInfo" if "organizer" in obj else "")
    if not kind:
        raise BadRequest(f"'{path}' needs an '@odata.type' of: {', '.join(MEETING_INFO_TYPES)}.")
    out: JsonObj = {**obj, "@odata.type": kind}
    if kind.endswith("organizerMeetingInfo"):
        if obj.get("organizer") is None:
            raise BadRequest(f"'{path}.organizer' is required.")
        out["organizer"] = identity_set(obj["organizer"], f"{path}.organizer")
        r.boolean(obj, "allowConversationWithoutHost", f"{path}.")
    elif kind.endswith("joinMeetingIdMeetingInfo"):
        r.string(obj, "joinMeetingId", f"{path}.", required=True, max_len=64)
        r.string(obj, "passcode", f"{path}.", max_len=64)
    else:
        raise BadRequest(
            "'tokenMeetingInfo' cannot be used to join a meeting: give organizerMeetingInfo with "
            "chatInfo, or joinMeetingIdMeetingInfo."
        )
    return out


# -- request bodies -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CreateCall:
    callback_uri: str | None
    media_config: JsonObj
    targets: list[JsonObj]
    requested_modalities: list[str]
    source: JsonObj | None
    tenant_id: str | None
    subject: str | None
    call_options: JsonObj | None
    extra: JsonObj
    """Members of the open `call` type that we do not interpret; echoed back."""
    chat_info: JsonObj | None = None
    meeting_info: JsonObj | None = None
    """A meeting join (calling/meetings.py) when set; `targets` is then empty."""


_CREATE_KNOWN = {
    "@odata.type",
    "callbackUri",
    "mediaConfig",
    "targets",
    "requestedModalities",
    "source",
    "tenantId",
    "subject",
    "callOptions",
    "chatInfo",
    "meetingInfo",
}
_READ_ONLY = {
    "id",
    "state",
    "direction",
    "myParticipantId",
    "resultInfo",
    "toneInfo",
    "mediaState",
    "callChainId",
}


def create_call(body: Any) -> CreateCall:
    obj = r.as_object(body, "")
    r.odata_type(obj, "", ("call",))
    if obj.get("mediaConfig") is None:
        raise BadRequest("'mediaConfig' is required.")
    meeting = None if obj.get("meetingInfo") is None else meeting_info(obj["meetingInfo"], "meetingInfo")
    chat = None if obj.get("chatInfo") is None else chat_info(obj["chatInfo"], "chatInfo")
    if meeting is None and chat is not None:
        raise BadRequest("'chatInfo' joins a meeting together with 'meetingInfo' (organizerMeetingInfo).")
    if meeting is not None and meeting["@odata.type"].endswith("organizerMeetingInfo") and chat is None:
        raise BadRequest("'chatInfo' with the meeting's 'threadId' is required with organizerMeetingInfo.")
    if meeting is not None:
        r.array(obj, "targets", "", max_items=0)  # a join names no targets (invite them once joined)
        targets = []
    else:
        targets = r.array(obj, "targets", "", required=True, min_items=1, max_items=25) or []
    source = obj.get("source")
    options = obj.get("callOptions")
    return CreateCall(
        callback_uri=r.url(obj, "callbackUri", ""),
        media_config=media_config(obj["mediaConfig"], "mediaConfig"),
        targets=[invitation_participant_info(t, f"targets[{i}]") for i, t in enumerate(targets)],
        requested_modalities=modalities(obj, "requestedModalities", ""),
        source=None if source is None else participant_info(source, "source"),
        tenant_id=r.string(obj, "tenantId", "", max_len=64),
        subject=r.string(obj, "subject", "", max_len=1024),
        call_options=None if options is None else call_options(options, "callOptions", "outgoingCallOptions"),
        extra={k: v for k, v in obj.items() if k not in _CREATE_KNOWN and k not in _READ_ONLY},
        chat_info=chat,
        meeting_info=meeting,
    )


@dataclass(frozen=True, slots=True)
class Answer:
    callback_uri: str | None
    media_config: JsonObj
    accepted_modalities: list[str]
    call_options: JsonObj | None
    participant_capacity: int | None


def answer(body: Any) -> Answer:
    obj = r.as_object(body, "")
    if obj.get("mediaConfig") is None:
        raise BadRequest("'mediaConfig' is required.")
    options = obj.get("callOptions")
    return Answer(
        callback_uri=r.url(obj, "callbackUri", ""),
        media_config=media_config(obj["mediaConfig"], "mediaConfig"),
        accepted_modalities=modalities(obj, "acceptedModalities", ""),
        call_options=None if options is None else call_options(options, "callOptions", "incomingCallOptions"),
        participant_capacity=r.integer(obj, "participantCapacity", "", lo=0, hi=1000),
    )


@dataclass(frozen=True, slots=True)
class Reject:
    reason: str
    callback_uri: str | None


def reject(body: Any) -> Reject:
    obj = r.as_object(body, "")
    reason = obj.get("reason")
    return Reject(
        reason="none" if reason is None else r.enum_value(reason, "reason", REJECT_REASONS),
        callback_uri=r.url(obj, "callbackUri", ""),
    )


@dataclass(frozen=True, slots=True)
class Redirect:
    targets: list[JsonObj]
    timeout: int | None
    callback_uri: str | None


def redirect(body: Any) -> Redirect:
    obj = r.as_object(body, "")
    targets = r.array(obj, "targets", "", required=True, min_items=1, max_items=25) or []
    return Redirect(
        targets=[invitation_participant_info(t, f"targets[{i}]") for i, t in enumerate(targets)],
        timeout=r.integer(obj, "timeout", "", lo=15, hi=90),
        callback_uri=r.url(obj, "callbackUri", ""),
    )


@dataclass(frozen=True, slots=True)
class Transfer:
    transfer_target: JsonObj
    transferee: JsonObj | None


def transfer(body: Any) -> Transfer:
    obj = r.as_object(body, "")
    if obj.get("transferTarget") is None:
        raise BadRequest("'transferTarget' is required.")
    target = invitation_participant_info(obj["transferTarget"], "transferTarget")
    if target.get("replacesCallId"):
        raise BadRequest("Consultative transfer (transferTarget.replacesCallId) is not supported yet.")
    transferee = obj.get("transferee")
    return Transfer(
        transfer_target=target,
        transferee=None if transferee is None else participant_info(transferee, "transferee"),
    )


def empty_or_object(body: Any) -> JsonObj:
    """Bodies of actions that take nothing we use (keepAlive): absent or any JSON object."""
    if body is None:
        return {}
    return r.as_object(body, "")
