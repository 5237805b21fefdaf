"""The read model of a call leg as Graph shows it: `Call` views are built from the aggregate's legs
(calling/views.py) for the REST API, the media side and the gateways; the aggregate (domain/) owns the state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opencomms.domain.calls import CallDirection, CallState
from opencomms.domain.legs import LIVE_STATES as LIVE_STATES
from opencomms.domain.results import ResultInfo

JsonObj = dict[str, Any]


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
            "chatInfo": self.extra.get("chatInfo"),
            "meetingInfo": self.extra.get("meetingInfo"),
            "toneInfo": None,
            "transcription": None,
        }
        return body
