"""Legs of a conversation: who takes part over which signalling, in which Graph call state, until when.

A leg is one party's connection to a conversation. A bot's leg is what Graph calls a `call` (it gets
notifications); an external leg is a party outside the platform (a phone on SIP; browsers later) that a gateway
speaks for. The leg state machine is `domain.calls.CALL_FSM`; this module holds the leg's data and its stored form.
Pure: no I/O, no clock (deadlines are absolute times handed in by the conversation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
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


class LegKind(StrEnum):
    """Who drives a leg: the bot over REST (and gets notifications), or a gateway (registered by kind)."""

    BOT = "bot"
    SIP = "sip"
    """A party behind the SIP gateway (a phone, a softphone, a trunk)."""
    BROWSER = "browser"
    """A WebRTC participant (reserved for the browser gateway)."""

    @property
    def external(self) -> bool:
        return self is not LegKind.BOT


@dataclass(frozen=True, slots=True)
class LegSpec:
    """A leg to add, as resolved outside the model (ids, identity and route are not the model's to invent)."""

    id: str
    kind: LegKind
    participant_id: str
    source_id: str
    """Media source id (MSI) of the leg's audio stream."""
    identity: JsonObj
    """identitySet of the party this leg represents (the callee for a rung leg)."""
    source: JsonObj = field(default_factory=dict)
    """participantInfo of the caller as this leg sees it: given for a leg that places a call or joins; a rung leg
    takes its caller's (the placing, redirecting, inviting or transferred party's) from the conversation."""
    targets: tuple[JsonObj, ...] = ()
    app_id: str = ""
    """The bot owning the leg ('' for external legs)."""
    attrs: JsonObj = field(default_factory=dict)
    """Opaque wire attributes the rules never read: callbackUri, mediaConfig, callOptions, subject, extra,
    requestedModalities (the wiring step keeps them with the leg for the `call` resource)."""
    external: str | None = None
    """The gateway's handle for an external leg (None until it has one; 'dial' for a leg being dialled)."""


@dataclass(slots=True)
class Leg:
    """One leg as the conversation holds it. Mutated only by `Conversation`."""

    id: str
    kind: LegKind
    app_id: str
    direction: CallDirection
    state: CallState
    participant_id: str
    source_id: str
    identity: JsonObj
    source: JsonObj
    targets: list[JsonObj]
    created_at: float
    attrs: JsonObj = field(default_factory=dict)
    incoming_context: JsonObj | None = None
    call_routes: list[JsonObj] = field(default_factory=list)
    result_info: ResultInfo | None = None
    answer_deadline: float | None = None
    keepalive_deadline: float | None = None
    ring_group: str | None = None
    """Legs rung together (a redirect to several targets): the first to answer wins."""
    connected: bool = False
    """True once the leg has reached established at least once."""
    muted: bool = False
    external: str | None = None
    version: int = 1
    """The leg's own version (the `@odata.etag` of its call resource)."""
    in_lobby: bool = False
    """Meetings: the leg waits in the lobby (in the roster with isInLobby, not in the media) until admitted."""
    role: str = ""
    """Meetings: a bot's role ('member' joined with Calls.JoinGroupCall.All and may admit; 'guest')."""

    @classmethod
    def from_spec(cls, spec: LegSpec, *, direction: CallDirection, state: CallState, now: float) -> Leg:
        return cls(
            id=spec.id,
            kind=spec.kind,
            app_id=spec.app_id,
            direction=direction,
            state=state,
            participant_id=spec.participant_id,
            source_id=spec.source_id,
            identity=dict(spec.identity),
            source=dict(spec.source),
            targets=[dict(t) for t in spec.targets],
            created_at=now,
            attrs=dict(spec.attrs),
            external=spec.external,
        )

    @property
    def is_external(self) -> bool:
        return self.kind.external

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    def deadlines(self) -> tuple[float, ...]:
        return tuple(d for d in (self.answer_deadline, self.keepalive_deadline) if d is not None)

    def media_state(self) -> JsonObj | None:
        """Graph's callMediaState for this leg (None while it rings), as `calling.model.Call` reports it."""
        if self.state is CallState.INCOMING:
            return None
        audio = "active" if self.state in (CallState.ESTABLISHED, CallState.TRANSFERRING) else "inactive"
        return {"@odata.type": "#microsoft.graph.callMediaState", "audio": audio}

    def to_doc(self) -> JsonObj:
        info = self.result_info
        return {
            "id": self.id,
            "kind": self.kind.value,
            "app_id": self.app_id,
            "direction": self.direction.value,
            "state": self.state.value,
            "participant_id": self.participant_id,
            "source_id": self.source_id,
            "identity": self.identity,
            "source": self.source,
            "targets": self.targets,
            "created_at": self.created_at,
            "attrs": self.attrs,
            "incoming_context": self.incoming_context,
            "call_routes": self.call_routes,
            "result_info": None if info is None else result_doc(info),
            "answer_deadline": self.answer_deadline,
            "keepalive_deadline": self.keepalive_deadline,
            "ring_group": self.ring_group,
            "connected": self.connected,
            "muted": self.muted,
            "external": self.external,
            "version": self.version,
            "in_lobby": self.in_lobby,
            "role": self.role,
        }

    @classmethod
    def from_doc(cls, doc: JsonObj) -> Leg:
        doc = dict(doc)
        doc["kind"] = LegKind(doc["kind"])
        doc["direction"] = CallDirection(doc["direction"])
        doc["state"] = CallState(doc["state"])
        info = doc.get("result_info")
        doc["result_info"] = None if info is None else ResultInfo(**info)
        return cls(**doc)


def result_doc(info: ResultInfo) -> JsonObj:
    return {"code": info.code, "subcode": info.subcode, "message": info.message}


def result_from_doc(doc: JsonObj | None) -> ResultInfo | None:
    return None if doc is None else ResultInfo(**doc)
