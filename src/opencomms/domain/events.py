"""Events a conversation emits: frozen, past tense, in the order they happened within one command.

Subscribers react to them (the notification projector, the media session, gateways registered by leg kind); none
of them reads the conversation's private state. Leg events carry the leg's kind so that a subscriber registered
for one kind can filter without a lookup; events about a leg that no longer exists carry its stored form.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from opencomms.domain.calls import CallState
from opencomms.domain.legs import JsonObj, LegKind
from opencomms.domain.participants import Participant
from opencomms.domain.results import ResultInfo


@dataclass(frozen=True, slots=True)
class LegRinging:
    """A new incoming leg rings: a bot gets the incoming-call notification, a gateway dials its party."""

    leg_id: str
    kind: LegKind
    leg: JsonObj
    """The leg's stored form (Leg.to_doc) at ringing time."""


@dataclass(frozen=True, slots=True)
class MediaConfigured:
    """A bot leg's media configuration was set (create, join or answer): prefetch its prompts."""

    leg_id: str
    kind: LegKind


@dataclass(frozen=True, slots=True)
class LegEstablishing:
    """A leg is on its way into the media (placed, joined, or answered)."""

    leg_id: str
    kind: LegKind


@dataclass(frozen=True, slots=True)
class LegEstablished:
    """A leg's media joined the conversation (and a gateway confirms its signalling)."""

    leg_id: str
    kind: LegKind


@dataclass(frozen=True, slots=True)
class LegStateChanged:
    """A leg moved to `state` for another reason: terminating, transferring, transferAccepted, or back to
    established after a failed transfer (then with `result_info`)."""

    leg_id: str
    kind: LegKind
    state: CallState
    result_info: ResultInfo | None = None


@dataclass(frozen=True, slots=True)
class LegRouted:
    """A leg's callRoutes changed (its peer redirected it to another target)."""

    leg_id: str
    kind: LegKind
    call_routes: tuple[JsonObj, ...]


@dataclass(frozen=True, slots=True)
class LegMuted:
    """A leg's audio is muted or unmuted in the mix."""

    leg_id: str
    kind: LegKind
    muted: bool


@dataclass(frozen=True, slots=True)
class LegHeld:
    """A leg is put on hold with music (startHoldMusic) or taken off it: its audio leaves or rejoins the mix, and
    it hears `prompt` (the customPrompt; None: the built-in music) while held."""

    leg_id: str
    kind: LegKind
    held: bool
    prompt: JsonObj | None = None


@dataclass(frozen=True, slots=True)
class OperationFinished:
    """An operation of bot leg `leg_id` finished at once (hold music): its `deleted` notification is `operation`."""

    leg_id: str
    kind: LegKind
    operation: JsonObj


@dataclass(frozen=True, slots=True)
class RecordingStatusChanged:
    """A meeting's recording status changed (updateRecordingStatus): phones are to hear it announced (dial-in)."""

    status: str
    initiator: JsonObj


@dataclass(frozen=True, slots=True)
class LegEnded:
    """A leg is over (terminated) for `result`: its final notification; media and signalling are freed."""

    leg_id: str
    kind: LegKind
    result: ResultInfo
    leg: JsonObj
    """The leg's stored form as it ended (it is no longer in the conversation)."""


@dataclass(frozen=True, slots=True)
class LegReleased:
    """A live external leg left the conversation without ending (it moves into another one with the same id): no
    notification, no signalling, its media stays in the engine until the other conversation connects it."""

    leg_id: str
    kind: LegKind
    leg: JsonObj


@dataclass(frozen=True, slots=True)
class ParticipantJoined:
    participant: Participant
    sequence: int


@dataclass(frozen=True, slots=True)
class ParticipantUpdated:
    participant: Participant
    sequence: int


@dataclass(frozen=True, slots=True)
class ParticipantLeft:
    participant: Participant
    sequence: int
    reason: ResultInfo | None = None


class TransferMode(StrEnum):
    BRIDGE = "bridge"
    """The node rings the target as a new leg of the conversation."""
    REFER = "refer"
    """The transferee's gateway moves it by its own signalling."""


@dataclass(frozen=True, slots=True)
class TransferStarted:
    transferor_id: str
    transferee_id: str
    transferee_kind: LegKind
    mode: TransferMode
    target: JsonObj
    """The transfer target (invitationParticipantInfo), for a REFER."""
    target_leg_id: str | None = None


@dataclass(frozen=True, slots=True)
class TransferAccepted:
    transferor_id: str


@dataclass(frozen=True, slots=True)
class TransferCompleted:
    transferor_id: str


@dataclass(frozen=True, slots=True)
class TransferFailed:
    transferor_id: str
    reason: ResultInfo


@dataclass(frozen=True, slots=True)
class InvitationFailed:
    """A target of an invite could not be rung (no route, no webhook, quota)."""

    by_leg_id: str
    reason: ResultInfo


@dataclass(frozen=True, slots=True)
class ConversationEnded:
    """The last leg is gone: the conversation may be deleted from the store."""

    conversation_id: str


Event = (
    LegRinging
    | MediaConfigured
    | LegEstablishing
    | LegEstablished
    | LegStateChanged
    | LegRouted
    | LegMuted
    | LegHeld
    | OperationFinished
    | RecordingStatusChanged
    | LegEnded
    | LegReleased
    | ParticipantJoined
    | ParticipantUpdated
    | ParticipantLeft
    | TransferStarted
    | TransferAccepted
    | TransferCompleted
    | TransferFailed
    | InvitationFailed
    | ConversationEnded
)
