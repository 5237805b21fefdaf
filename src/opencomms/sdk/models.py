"""Typed views of Graph resources the SDK returns: call, participant, commsOperation, resultInfo, toneInfo,
onlineMeeting.

Each is a frozen dataclass read tolerantly from Graph JSON (`from_wire`), keeping the full JSON in `raw`
for members not surfaced as attributes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opencomms.wire.tones import KEY_BY_TONE, TONE_BY_KEY

JsonObj = dict[str, Any]

TONE_KEYS = {name.lower(): key for name, key in KEY_BY_TONE.items()}
"""Graph `tone` names -> keypad characters (spelled once, in opencomms.wire.tones)."""
KEY_TONES = dict(TONE_BY_KEY)
"""Keypad characters -> Graph `tone` names."""


def _str(obj: JsonObj, key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) else None


def _obj(obj: JsonObj, key: str) -> JsonObj | None:
    value = obj.get(key)
    return value if isinstance(value, dict) else None


def tone_key(tone: str) -> str:
    """'tone5' -> '5', 'pound' -> '#'; unknown names come back unchanged."""
    return TONE_KEYS.get(tone.lower(), tone)


def tone_names(keys: str) -> list[str]:
    """'12#' -> ['tone1', 'tone2', 'pound'] (raises ValueError on a character that is not a key)."""
    out = []
    for ch in keys:
        name = KEY_TONES.get(ch.upper())
        if name is None:
            raise ValueError(f"{ch!r} is not a DTMF key (0-9, *, #, A-D)")
        out.append(name)
    return out


@dataclass(frozen=True, slots=True)
class ResultInfo:
    code: int
    subcode: int
    message: str | None = None

    @classmethod
    def from_wire(cls, value: Any) -> ResultInfo | None:
        if not isinstance(value, dict):
            return None
        code, subcode = value.get("code"), value.get("subcode")
        return cls(
            code if isinstance(code, int) else 0,
            subcode if isinstance(subcode, int) else 0,
            _str(value, "message"),
        )


@dataclass(frozen=True, slots=True)
class ToneInfo:
    sequence_id: int
    tone: str
    """Graph's name (`tone0`-`tone9`, `star`, `pound`, `a`-`d`, `flash`)."""

    @property
    def key(self) -> str:
        """The keypad character: '0'-'9', '*', '#', 'A'-'D'."""
        return tone_key(self.tone)

    @classmethod
    def from_wire(cls, value: Any) -> ToneInfo | None:
        if not isinstance(value, dict) or not isinstance(value.get("tone"), str):
            return None
        seq = value.get("sequenceId")
        return cls(seq if isinstance(seq, int) else 0, value["tone"])


@dataclass(frozen=True, slots=True)
class Transcript:
    """One utterance of live transcription (#opencomms.transcript, after startTranscription): what a participant
    said, or (status `overloaded`, no text) a span the node could not decode in time."""

    sequence_id: int
    text: str
    status: str
    """`final`, or `overloaded`."""
    participant_id: str
    source_id: str
    identity: dict[str, Any]
    """The speaker's identitySet."""
    start_offset: str
    """ISO 8601 duration since transcription started (`PT3.48S`); `end_offset` likewise."""
    end_offset: str

    @classmethod
    def from_wire(cls, value: Any) -> Transcript | None:
        if not isinstance(value, dict) or not isinstance(value.get("text"), str):
            return None
        seq = value.get("sequenceId")
        identity = value.get("identity")
        return cls(
            seq if isinstance(seq, int) else 0,
            value["text"],
            str(value.get("status") or "final"),
            str(value.get("participantId") or ""),
            str(value.get("sourceId") or ""),
            identity if isinstance(identity, dict) else {},
            str(value.get("startOffset") or ""),
            str(value.get("endOffset") or ""),
        )


@dataclass(frozen=True, slots=True)
class CallInfo:
    """A `call` resource as returned by create/get, or the call data of a notification."""

    id: str
    state: str | None
    direction: str | None = None
    call_chain_id: str | None = None
    my_participant_id: str | None = None
    tenant_id: str | None = None
    callback_uri: str | None = None
    source: JsonObj | None = None
    targets: list[JsonObj] = field(default_factory=list)
    result_info: ResultInfo | None = None
    raw: JsonObj = field(default_factory=dict, repr=False)

    @classmethod
    def from_wire(cls, value: JsonObj, call_id: str | None = None) -> CallInfo:
        targets = value.get("targets")
        return cls(
            id=_str(value, "id") or call_id or "",
            state=_str(value, "state"),
            direction=_str(value, "direction"),
            call_chain_id=_str(value, "callChainId"),
            my_participant_id=_str(value, "myParticipantId"),
            tenant_id=_str(value, "tenantId"),
            callback_uri=_str(value, "callbackUri"),
            source=_obj(value, "source"),
            targets=[t for t in targets if isinstance(t, dict)] if isinstance(targets, list) else [],
            result_info=ResultInfo.from_wire(value.get("resultInfo")),
            raw=value,
        )


IDENTITY_KINDS = ("user", "phone", "guest", "application", "applicationInstance", "device", "encrypted")
"""Members of an identitySet, in the order a participant's kind is read."""


@dataclass(frozen=True, slots=True)
class Participant:
    id: str
    identity: JsonObj
    is_muted: bool = False
    source_ids: tuple[str, ...] = ()
    """Media source ids of the participant's streams (audio's sourceId identifies it in unmixed media)."""
    is_in_lobby: bool = False
    server_muted: bool = False
    """Muted by a meeting member (`participants/{id}/mute`): its audio leaves the mix."""
    sequence: int | None = None
    """`rosterSequenceNumber` of the roster change that produced this entry (meetings)."""
    removed_reason: str | None = None
    """`removedState.reason` of a delta roster entry that says the participant left (`left`, `removed`, ...)."""
    recording_status: str | None = None
    """`recordingInfo.recordingStatus` (meetings): `notRecording`, `recording` or `failed`."""
    raw: JsonObj = field(default_factory=dict, repr=False)

    @property
    def app_id(self) -> str | None:
        app = self.identity.get("application")
        return _str(app, "id") if isinstance(app, dict) else None

    @property
    def kind(self) -> str | None:
        """Which identity the participant has: `user`, `phone`, `guest`, `application`, ... (None if none)."""
        for kind in IDENTITY_KINDS:
            if isinstance(self.identity.get(kind), dict):
                return kind
        return None

    @property
    def display_name(self) -> str | None:
        """The identity's displayName (a phone's number when it has none)."""
        kind = self.kind
        ident = self.identity.get(kind) if kind else None
        if not isinstance(ident, dict):
            return None
        name = _str(ident, "displayName")
        if name:
            return name
        return _str(ident, "id") if kind == "phone" else None

    @classmethod
    def from_wire(cls, value: JsonObj) -> Participant:
        info = _obj(value, "info") or {}
        streams = value.get("mediaStreams")
        sources = tuple(
            s["sourceId"]
            for s in (streams if isinstance(streams, list) else [])
            if isinstance(s, dict) and isinstance(s.get("sourceId"), str)
        )
        seq = value.get("rosterSequenceNumber")
        removed = _obj(value, "removedState")
        recording = _obj(value, "recordingInfo")
        audio = next((s for s in (streams if isinstance(streams, list) else []) if isinstance(s, dict)), {})
        return cls(
            id=_str(value, "id") or "",
            identity=_obj(info, "identity") or {},
            is_muted=value.get("isMuted") is True,
            source_ids=sources,
            is_in_lobby=value.get("isInLobby") is True,
            server_muted=audio.get("serverMuted") is True,
            sequence=seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
            removed_reason=(_str(removed, "reason") or "removed") if removed is not None else None,
            recording_status=_str(recording, "recordingStatus") if recording is not None else None,
            raw=value,
        )


@dataclass(frozen=True, slots=True)
class Operation:
    """A commsOperation (playPrompt, record, sendDtmfTones, ...): `running` now, or finished."""

    id: str
    type: str
    """Short type name, e.g. `playPromptOperation`."""
    status: str
    client_context: str | None = None
    result_info: ResultInfo | None = None
    completion_reason: str | None = None
    recording_location: str | None = None
    recording_access_token: str | None = None
    raw: JsonObj = field(default_factory=dict, repr=False)

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed")

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @classmethod
    def from_wire(cls, value: JsonObj) -> Operation:
        kind = (_str(value, "@odata.type") or "").rsplit(".", 1)[-1]
        return cls(
            id=_str(value, "id") or "",
            type=kind,
            status=_str(value, "status") or "",
            client_context=_str(value, "clientContext"),
            result_info=ResultInfo.from_wire(value.get("resultInfo")),
            completion_reason=_str(value, "completionReason"),
            recording_location=_str(value, "recordingLocation"),
            recording_access_token=_str(value, "recordingAccessToken"),
            raw=value,
        )


@dataclass(frozen=True, slots=True)
class OnlineMeeting:
    """An `onlineMeeting` resource: what people and bots need to join it."""

    id: str
    join_web_url: str
    subject: str | None = None
    thread_id: str | None = None
    """chatInfo.threadId: with the organizer, what a join by URL names."""
    organizer_id: str | None = None
    join_meeting_id: str | None = None
    passcode: str | None = None
    passcode_required: bool = False
    conference_id: str | None = None
    """audioConferencing.conferenceId: what a phone enters after dialing `toll_number`."""
    toll_number: str | None = None
    dialin_url: str | None = None
    external_id: str | None = None
    start: str | None = None
    end: str | None = None
    raw: JsonObj = field(default_factory=dict, repr=False)

    @classmethod
    def from_wire(cls, value: JsonObj) -> OnlineMeeting:
        chat = _obj(value, "chatInfo") or {}
        ids = _obj(value, "joinMeetingIdSettings") or {}
        audio = _obj(value, "audioConferencing") or {}
        participants = _obj(value, "participants") or {}
        organizer = _obj(_obj(_obj(participants, "organizer") or {}, "identity") or {}, "user") or {}
        return cls(
            id=_str(value, "id") or "",
            join_web_url=_str(value, "joinWebUrl") or "",
            subject=_str(value, "subject"),
            thread_id=_str(chat, "threadId"),
            organizer_id=_str(organizer, "id"),
            join_meeting_id=_str(ids, "joinMeetingId"),
            passcode=_str(ids, "passcode"),
            passcode_required=ids.get("isPasscodeRequired") is True,
            conference_id=_str(audio, "conferenceId"),
            toll_number=_str(audio, "tollNumber"),
            dialin_url=_str(audio, "dialinUrl"),
            external_id=_str(value, "externalId"),
            start=_str(value, "startDateTime"),
            end=_str(value, "endDateTime"),
            raw=value,
        )
