"""Commands to a conversation: frozen values with imperative names, one per unit of work.

What the model cannot decide by itself arrives resolved inside the command: ids (the caller generates them),
routes (an `Invitation` is a leg to ring or the reason a target cannot be reached), whether a gateway can move
its leg by itself (`StartTransfer.by_refer`). Time comes with `Conversation.apply(command, now)`.
Commands from the bot over REST name the bot's own leg (`leg_id`); gateway commands name their external leg.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from opencomms.domain.legs import JsonObj, LegSpec
from opencomms.domain.results import ResultInfo


@dataclass(frozen=True, slots=True)
class Invitation:
    """One target, resolved: a leg to ring (`leg`), or why there is none (`failure`)."""

    leg: LegSpec | None = None
    failure: ResultInfo | None = None
    ring_for: float | None = None
    """Seconds the leg may ring; None for the default of its kind (answer timeout for bots, dial for gateways)."""


# -- the bot, over REST ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Create:
    """Start the conversation with `origin` (a bot placing a call, or a gateway's inbound caller, both
    `establishing`) and ring `invitations` (POST /communications/calls; an inbound SIP call)."""

    origin: LegSpec
    invitations: tuple[Invitation, ...] = ()


@dataclass(frozen=True, slots=True)
class Join:
    """A leg joins a meeting: it is established at once, alone or not (a bot may wait by itself), or waits in the
    lobby (`in_lobby`: in the roster with isInLobby, out of the media) until a member admits it."""

    leg: LegSpec
    in_lobby: bool = False
    role: str = ""
    """The bot's meeting role as the router decided it from its permission: 'member' or 'guest' ('' for others)."""
    max_participants: int = 0
    """Legs the meeting may hold at most (0: no limit); a join past it is refused."""
    ends_at: float | None = None
    """When the live meeting ends by itself (its endDateTime plus the grace); kept from the first join."""
    lobby_timeout: float | None = None
    """Seconds a lobby joiner waits to be admitted before it is removed (200/5855); None: no limit."""


@dataclass(frozen=True, slots=True)
class Invite:
    """participants/invite: ring more parties into a group call or meeting, on behalf of leg `leg_id`."""

    leg_id: str
    invitations: tuple[Invitation, ...]


@dataclass(frozen=True, slots=True)
class Answer:
    leg_id: str
    attrs: JsonObj = field(default_factory=dict)
    """mediaConfig, callOptions, callbackUri as answered (merged into the leg's opaque attributes)."""


@dataclass(frozen=True, slots=True)
class Reject:
    leg_id: str
    reason: str = "none"
    """Graph's rejectReason: none, busy, forbidden."""
    callback_uri: str | None = None


@dataclass(frozen=True, slots=True)
class Redirect:
    leg_id: str
    invitations: tuple[Invitation, ...]
    timeout: float | None = None
    """Seconds the targets ring; None for the default (one target or several)."""
    callback_uri: str | None = None


@dataclass(frozen=True, slots=True)
class StartTransfer:
    """transfer: move the leg's peer (`transferee_participant_id`, required in a group) to `target`.

    `by_refer`: the transferee's gateway moves it by its own signalling (SIP REFER) and reports back with
    Accept/Complete/FailTransfer; otherwise the node bridges: `invitation` is the target to ring."""

    leg_id: str
    target: JsonObj
    transferee_participant_id: str | None = None
    invitation: Invitation | None = None
    by_refer: bool = False


@dataclass(frozen=True, slots=True)
class HangUp:
    leg_id: str


@dataclass(frozen=True, slots=True)
class KeepAlive:
    leg_id: str


@dataclass(frozen=True, slots=True)
class Mute:
    """mute/unmute (the leg's own participant), or a server mute of `participant_id` (meetings)."""

    leg_id: str
    muted: bool = True
    participant_id: str | None = None


@dataclass(frozen=True, slots=True)
class MuteSelf:
    """A gateway's participant muted or unmuted itself (a browser's mute button): isMuted in the roster, and the mix
    follows, as for a bot's own mute."""

    leg_id: str
    muted: bool = True


@dataclass(frozen=True, slots=True)
class MoveCallback:
    """The bot answered a notification with 302/307: later notifications of the leg go to `url`."""

    leg_id: str
    url: str


@dataclass(frozen=True, slots=True)
class EndConversation:
    """End every leg for `reason` (a meeting deleted or over its end time)."""

    reason: ResultInfo


# -- meetings (calling/meetings.py) ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Admit:
    """#opencomms admit/admitAll: lobby participants `participant_ids` (all of them when empty) join the media."""

    leg_id: str
    participant_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RemoveParticipant:
    """DELETE participants/{id}: end that participant's leg (removed by another participant)."""

    leg_id: str
    participant_id: str


@dataclass(frozen=True, slots=True)
class HoldMusic:
    """startHoldMusic/stopHoldMusic on `participant_id`; `operation` is the finished operation to report."""

    leg_id: str
    participant_id: str
    on: bool
    operation: JsonObj = field(default_factory=dict)
    prompt: JsonObj | None = None
    """startHoldMusic's customPrompt (a normalised mediaPrompt); None: the node's built-in hold music."""


@dataclass(frozen=True, slots=True)
class UpdateRecordingStatus:
    """updateRecordingStatus: every participant's recordingInfo becomes `status` (recording, notRecording, failed)."""

    leg_id: str
    status: str


@dataclass(frozen=True, slots=True)
class ConfigureMeeting:
    """The meeting resource changed (PATCH): its new end (endDateTime plus grace; None: no end), and the lobby
    participants its new lobbyBypassSettings let in (`admit`: the router applied the policy to each of them)."""

    ends_at: float | None
    admit: tuple[str, ...] = ()


# -- gateways and media ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ConnectLeg:
    """The far end of a ringing external leg answered."""

    leg_id: str


@dataclass(frozen=True, slots=True)
class EndLeg:
    """The far end of an external leg hung up, declined, failed or could not be reached."""

    leg_id: str
    reason: ResultInfo


@dataclass(frozen=True, slots=True)
class ReleaseLeg:
    """External leg `leg_id` leaves this peer-to-peer call to go on in another conversation (participants/invite
    with replacesCallId): it is removed without ending (its signalling and media stay), the others end `reason`."""

    leg_id: str
    reason: ResultInfo


@dataclass(frozen=True, slots=True)
class FailMedia:
    """A live leg's media failed for good (app-hosted socket lost, RTP stream failed): the leg ends."""

    leg_id: str
    reason: ResultInfo


@dataclass(frozen=True, slots=True)
class AcceptTransfer:
    """The transferee's far end took on a REFER transfer (it is calling the target)."""

    transferee_id: str


@dataclass(frozen=True, slots=True)
class CompleteTransfer:
    """The transferee's far end reached the target: transferor and transferee legs end 0/7015."""

    transferee_id: str


@dataclass(frozen=True, slots=True)
class FailTransfer:
    """The REFER transfer failed for `reason`; with `bridge`, the far end refused and the node bridges instead."""

    transferee_id: str
    reason: ResultInfo
    bridge: Invitation | None = None


# -- time -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FireTimers:
    """Deadlines due at `now` (answer window, dial ring time, keepAlive) take effect."""


Command = (
    Create
    | Join
    | Invite
    | Answer
    | Reject
    | Redirect
    | StartTransfer
    | HangUp
    | KeepAlive
    | Mute
    | MuteSelf
    | MoveCallback
    | EndConversation
    | Admit
    | RemoveParticipant
    | HoldMusic
    | UpdateRecordingStatus
    | ConfigureMeeting
    | ConnectLeg
    | EndLeg
    | ReleaseLeg
    | FailMedia
    | AcceptTransfer
    | CompleteTransfer
    | FailTransfer
    | FireTimers
)
