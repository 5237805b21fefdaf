"""Call legs and conversations as stored and as shown on the wire.

A Call is one bot's (or one party's) leg; legs that talk to each other share a Conversation (callChainId).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opencomms.domain.calls import CallDirection, CallState
from opencomms.domain.results import ResultInfo

JsonObj = dict[str, Any]

LIVE_STATES = frozenset(
    {
        CallState.ESTABLISHING,
        CallState.ESTABLISHED,
        CallState.HOLD,
        CallState.TRANSFERRING,
        CallState.TRANSFER_ACCEPTED,
    }
)
"""States of a leg that is (or is about to be) in the conversation's media."""


@dataclass(slots=True)
class Call:
    """One call leg, owned by one application (`app_id`)."""

    id: str
    tenant_id: str
    app_id: str
    direction: CallDirection
    state: CallState
    conversation_id: str
    my_participant_id: str
    source_id: str
    """Media source id (MSI) of this leg's audio stream, as in Graph's mediaStream.sourceId."""
    identity: JsonObj
    """identitySet of the party this leg represents (the bot for a bot's leg)."""
    source: JsonObj
    targets: list[JsonObj]
    requested_modalities: list[str]
    created_at: float
    callback_uri: str | None = None
    media_config: JsonObj | None = None
    call_options: JsonObj | None = None
    subject: str | None = None
    result_info: ResultInfo | None = None
    incoming_context: JsonObj | None = None
    call_routes: list[JsonObj] = field(default_factory=list)
    extra: JsonObj = field(default_factory=dict)
    version: int = 1
    answer_deadline: float | None = None
    keepalive_deadline: float | None = None
    ring_group: str | None = None
    """Incoming legs rung together (a redirect to several targets): the first to answer wins."""
    connected: bool = False
    """True once the leg has reached established at least once."""
    muted: bool = False
    """The bot muted itself (mute/unmute): its audio is not sent to the conversation."""
    external: str | None = None
    """For a party outside the platform (a phone on SIP): the gateway's handle for it. Such legs have no
    bot (`app_id` is empty) and get no notifications; the gateway drives them."""

    @property
    def is_external(self) -> bool:
        return self.external is not None

    @property
    def url(self) -> str:
        return f"/communications/calls/{self.id}"

    def to_doc(self) -> JsonObj:
        """The stored document (every field; enums as their values). Hand-written rather than
        dataclasses.asdict, which deep-copies and is a hot spot at high call rates: nested JSON values are
        shared with this object, so serialise the document before mutating the call again (stores do)."""
        info = self.result_info
        return {
            "id": self.id,
            "tenant_id": self.tenant_id,
            "app_id": self.app_id,
            "direction": self.direction.value,
            "state": self.state.value,
            "conversation_id": self.conversation_id,
            "my_participant_id": self.my_participant_id,
            "source_id": self.source_id,
            "identity": self.identity,
            "source": self.source,
            "targets": self.targets,
            "requested_modalities": self.requested_modalities,
            "created_at": self.created_at,
            "callback_uri": self.callback_uri,
            "media_config": self.media_config,
            "call_options": self.call_options,
            "subject": self.subject,
            "result_info": None if info is None else _result_doc(info),
            "incoming_context": self.incoming_context,
            "call_routes": self.call_routes,
            "extra": self.extra,
            "version": self.version,
            "answer_deadline": self.answer_deadline,
            "keepalive_deadline": self.keepalive_deadline,
            "ring_group": self.ring_group,
            "connected": self.connected,
            "muted": self.muted,
            "external": self.external,
        }

    @classmethod
    def from_doc(cls, doc: JsonObj) -> Call:
        doc = dict(doc)
        doc["direction"] = CallDirection(doc["direction"])
        doc["state"] = CallState(doc["state"])
        if doc.get("result_info") is not None:
            doc["result_info"] = ResultInfo(**doc["result_info"])
        return cls(**doc)

    # -- wire -------------------------------------------------------------------------------------------
    def odata(self) -> JsonObj:
        return {
            "@odata.type": "#microsoft.graph.call",
            "@odata.id": self.url,
            "@odata.etag": f'W/"{self.version}"',
        }

    def media_state(self) -> JsonObj | None:
        if self.state is CallState.INCOMING:
            return None
        audio = "active" if self.state in (CallState.ESTABLISHED, CallState.TRANSFERRING) else "inactive"
        return {"@odata.type": "#microsoft.graph.callMediaState", "audio": audio}

    def to_wire(self) -> JsonObj:
        body: JsonObj = {
            **self.extra,
            "@odata.type": "#microsoft.graph.call",
            "id": self.id,
            "state": self.state.value,
            "direction": self.direction.value,
            "callbackUri": self.callback_uri,
            "callChainId": self.conversation_id,
            "myParticipantId": self.my_participant_id,
            "tenantId": self.tenant_id,
            "subject": self.subject,
            "source": self.source,
            "targets": self.targets,
            "requestedModalities": self.requested_modalities,
            "mediaConfig": self.media_config,
            "callOptions": self.call_options,
            "mediaState": self.media_state(),
            "resultInfo": None if self.result_info is None else self.result_info.to_wire(),
            "incomingContext": self.incoming_context,
            "callRoutes": self.call_routes,
            "chatInfo": None,
            "meetingInfo": None,
            "toneInfo": None,
            "transcription": None,
        }
        return body

    def participant(self) -> JsonObj:
        """This leg as a Graph participant."""
        return {
            "@odata.type": "#microsoft.graph.participant",
            "id": self.my_participant_id,
            "info": {"@odata.type": "#microsoft.graph.participantInfo", "identity": self.identity},
            "mediaStreams": [
                {
                    "@odata.type": "#microsoft.graph.mediaStream",
                    "mediaType": "audio",
                    "label": "main-audio",
                    "sourceId": self.source_id,
                    "direction": "sendReceive",
                    "serverMuted": False,
                }
            ],
            "isMuted": self.muted,
            "isInLobby": False,
        }


def _result_doc(info: ResultInfo) -> JsonObj:
    return {"code": info.code, "subcode": info.subcode, "message": info.message}
