"""LiveMeetingService: the command router of live meetings (bots joining, participant control, the lobby).

A live meeting is a `Conversation` of kind MEETING whose id is the meeting's id; it starts with its first join and
ends when its last leg leaves, when the meeting is deleted (`end_meeting`) or `meetings.end_grace` after its
`endDateTime` (a deadline of the aggregate). This router checks what only the platform knows (permissions, the
meeting's coordinates and passcode, the lobby policy, the apps allowed to remove participants), builds one command
and hands it to the conversation core through `CallService.execute`; every rule lives in the aggregate
(`domain.meeting_rules`, `domain.rules`). Meeting metadata comes through `domain.meetings.MeetingLookup`.

Organizer rights (#opencomms admit/admitAll) belong to a bot that joined as a member (Calls.JoinGroupCall.All).
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from opencomms.calling.invitations import origin
from opencomms.calling.model import Call, JsonObj
from opencomms.calling.service import ACCESS_MEDIA, Caller, CallService
from opencomms.calling.subscribers import Batch, MediaHooks, Subscriber
from opencomms.config import MeetingsConfig
from opencomms.domain import commands as c
from opencomms.domain import events as ev
from opencomms.domain import results
from opencomms.domain.errors import AccessDenied, BadRequest, InvalidState, NotFound, OpenCommsError, Throttled
from opencomms.domain.ids import new_id, normalize_id
from opencomms.domain.legs import LegKind, LegSpec
from opencomms.domain.meeting_rules import GUEST, MEMBER, JoinerKind, bypasses_lobby
from opencomms.domain.meetings import MeetingInfo, MeetingLookup
from opencomms.domain.results import ResultInfo
from opencomms.domain.rules import ConversationKind
from opencomms.ratelimit import KeyedTokenBucket, retry_after
from opencomms.wire import calls as wire
from opencomms.wire.apphosted import read_blob
from opencomms.wire.calls import is_app_hosted

log = logging.getLogger("opencomms.meetings")

JOIN = "Calls.JoinGroupCall.All"
JOIN_AS_GUEST = "Calls.JoinGroupCallAsGuest.All"

__all__ = [
    "JOIN",
    "JOIN_AS_GUEST",
    "ChainedLookup",
    "InMemoryMeetings",
    "LiveMeetingService",
    "OperationDocuments",
    "joiner_of",
]


class InMemoryMeetings:
    """A `MeetingLookup` over meetings added with `add` (tests and nodes without the onlineMeeting resources)."""

    def __init__(self, meetings: Iterable[MeetingInfo] = ()) -> None:
        self._by_id: dict[str, MeetingInfo] = {}
        for info in meetings:
            self.add(info)

    def add(self, info: MeetingInfo) -> MeetingInfo:
        self._by_id[info.id] = info
        return info

    def remove(self, meeting_id: str) -> MeetingInfo | None:
        return self._by_id.pop(meeting_id, None)

    def meeting(self, meeting_id: str) -> MeetingInfo | None:
        return self._by_id.get(meeting_id)

    def by_thread(self, thread_id: str) -> MeetingInfo | None:
        return next((m for m in self._by_id.values() if m.thread_id == thread_id), None)

    def by_join_id(self, join_meeting_id: str) -> MeetingInfo | None:
        return next((m for m in self._by_id.values() if m.join_meeting_id == join_meeting_id), None)

    def by_conference_id(self, conference_id: str) -> MeetingInfo | None:
        return next((m for m in self._by_id.values() if m.conference_id == conference_id), None)


class ChainedLookup:
    """A `MeetingLookup` asking each of its lookups in turn: the onlineMeeting resources first, then meetings added
    by hand (`InMemoryMeetings`, which the testing kit's `TestPlatform.add_meeting` fills)."""

    def __init__(self, *lookups: MeetingLookup) -> None:
        self.lookups = lookups

    def meeting(self, meeting_id: str) -> MeetingInfo | None:
        return next((m for lk in self.lookups if (m := lk.meeting(meeting_id)) is not None), None)

    def by_thread(self, thread_id: str) -> MeetingInfo | None:
        return next((m for lk in self.lookups if (m := lk.by_thread(thread_id)) is not None), None)

    def by_join_id(self, join_meeting_id: str) -> MeetingInfo | None:
        return next((m for lk in self.lookups if (m := lk.by_join_id(join_meeting_id)) is not None), None)

    def by_conference_id(self, conference_id: str) -> MeetingInfo | None:
        return next((m for lk in self.lookups if (m := lk.by_conference_id(conference_id)) is not None), None)


def _operation(kind: str, client_context: str | None, *, status: str = "completed", **extra: Any) -> JsonObj:
    done = status == "completed"
    return {
        "@odata.type": kind,
        "id": new_id(),
        "status": status,
        "clientContext": client_context,
        "resultInfo": results.MEDIA_COMPLETED.to_wire() if done else None,
        **extra,
    }


class MeetingMedia(Subscriber):
    """Meeting events the media session must hear: a leg on hold with music leaves the mix (and rejoins it)."""

    def __init__(self, media: MediaHooks, calls: CallService) -> None:
        self.media = media
        self.calls = calls

    def committed(self, batch: Batch, event: ev.Event) -> None:
        if isinstance(event, ev.LegHeld):
            call = self.calls.leg(event.leg_id)
            self.media.muted(event.leg_id, event.held or (call is not None and call.muted))


class OperationDocuments(Subscriber):
    """The documents of operations the core finishes within their command (startHoldMusic, stopHoldMusic) and of
    those the REST action answers completed (participants/mute, updateRecordingStatus, #opencomms admit/admitAll),
    for GET .../operations/{id} as Graph serves every commsOperation; they go when the bot's leg ends."""

    def __init__(self, calls: CallService) -> None:
        self.calls = calls
        self._docs: dict[str, list[str]] = {}
        """Leg id -> the ids of its stored operations."""

    def committed(self, batch: Batch, event: ev.Event) -> None:
        if isinstance(event, ev.OperationFinished):
            op_id = str(event.operation.get("id") or "")
            with self.calls.unit():
                self.calls.store.put("operation", f"{event.leg_id}/{op_id}", event.operation)
            self._docs.setdefault(event.leg_id, []).append(op_id)
        elif isinstance(event, ev.LegEnded | ev.LegReleased):
            for op_id in self._docs.pop(event.leg_id, []):
                self.calls.store.delete("operation", f"{event.leg_id}/{op_id}")

    def keep(self, leg_id: str, operation: JsonObj) -> JsonObj:
        """Store `operation` (a document the action answers) under the bot's leg while that leg lives; returns it."""
        if self.calls.leg(leg_id) is not None:
            op_id = str(operation["id"])
            with self.calls.unit():
                self.calls.store.put("operation", f"{leg_id}/{op_id}", operation)
            self._docs.setdefault(leg_id, []).append(op_id)
        return operation


class LiveMeetingService:
    """Bots join meetings and control their participants; the resource side ends and changes live meetings."""

    def __init__(
        self,
        calls: CallService,
        lookup: MeetingLookup,
        config: MeetingsConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.calls = calls
        self.lookup = lookup
        self.config = config or MeetingsConfig()
        self.clock = clock
        projector = calls.core.projector
        projector.roster_batch_min, projector.roster_batch = self.config.roster_batch_min, self.config.roster_batch
        rate = self.config.passcode_failures_per_minute
        self._guesses = KeyedTokenBucket(rate / 60.0, rate) if rate else None
        """Wrong passcodes per application: a bucket each, so that passcodes cannot be guessed."""
        self.operations = OperationDocuments(calls)
        calls.subscribe(self.operations)

    def attach_media(self, media: MediaHooks) -> None:
        """The media session hears holds (the composition root calls this once)."""
        self.calls.subscribe(MeetingMedia(media, self.calls))

    # -- joining ------------------------------------------------------------------------------------------
    async def join(self, caller: Caller, req: wire.CreateCall) -> JsonObj:
        """POST /communications/calls with meetingInfo: the bot's leg joins the meeting (201 body)."""
        if JOIN in caller.roles:
            role = MEMBER
        elif JOIN_AS_GUEST in caller.roles:
            role = GUEST
        else:
            raise AccessDenied(f"The application needs the '{JOIN}' or '{JOIN_AS_GUEST}' permission to join meetings.")
        if is_app_hosted(req.media_config):
            CallService.require(caller, ACCESS_MEDIA)
            read_blob(req.media_config.get("blob"))
        if req.tenant_id and normalize_id(req.tenant_id) != caller.tenant_id:
            raise AccessDenied("'tenantId' must be the application's own tenant.")
        app = self.calls.directory.require_app(caller.app_id)
        callback = req.callback_uri or app.callback_url
        if not callback:
            raise BadRequest("'callbackUri' is required: the application has no registered calling webhook.")
        info = self._find(caller, req)
        kind = "application" if role == MEMBER else "guest"
        me = {"@odata.type": "#microsoft.graph.identity", "id": app.id, "displayName": app.display_name}
        identity = {"@odata.type": "#microsoft.graph.identitySet", kind: me}
        source = {"@odata.type": "#microsoft.graph.participantInfo", "identity": identity}
        echo = {k: v for k, v in (req.meeting_info or {}).items() if k != "passcode"}
        chat = req.chat_info or {
            "@odata.type": "#microsoft.graph.chatInfo",
            "threadId": info.thread_id,
            "messageId": info.message_id,
        }
        attrs = {
            "callback_uri": callback,
            "media_config": req.media_config,
            "call_options": req.call_options,
            "subject": req.subject or info.subject or None,
            "extra": {**req.extra, "chatInfo": chat, "meetingInfo": echo},
            "requested_modalities": req.requested_modalities,
        }
        spec = origin(LegKind.BOT, identity, source, [], app_id=app.id, attrs=attrs)
        joiner = JoinerKind.MEMBER if role == MEMBER else JoinerKind.GUEST
        await self._join(info, spec, in_lobby=not bypasses_lobby(info, joiner), role=role)
        view = self.calls.leg(spec.id)
        if view is None:
            raise NotFound("The meeting ended while the call was joining it.")
        body = view.to_wire()
        body.update(state="establishing", resultInfo=None)
        body["mediaState"] = {"@odata.type": "#microsoft.graph.callMediaState", "audio": "inactive"}
        log.info("bot joined meeting", extra={"call_id": spec.id, "app_id": app.id, "meeting_id": info.id})
        return body

    async def join_external(
        self, meeting_id: str, spec: LegSpec, *, joiner: JoinerKind = JoinerKind.PHONE, user_id: str = ""
    ) -> list[ev.Event]:
        """A gateway's leg (a phone that dialled in, a softphone user) joins meeting `meeting_id`, in the lobby
        unless the meeting's bypass settings let it in. Raises NotFound for an unknown or ended meeting."""
        info = self.lookup.meeting(meeting_id)
        if info is None:
            raise NotFound(f"No online meeting {meeting_id!r}.")
        self._check_not_over(info)
        in_lobby = not bypasses_lobby(info, joiner, user_id)
        return await self._join(info, spec, in_lobby=in_lobby, role=joiner.value)  # the role: see `joiner_of`

    async def _join(self, info: MeetingInfo, spec: LegSpec, *, in_lobby: bool, role: str = "") -> list[ev.Event]:
        ends_at = None if info.end is None else info.end + self.config.end_grace
        lobby = self.config.lobby_timeout or None
        command = c.Join(spec, in_lobby, role, self.config.max_participants, ends_at, lobby)
        return await self.calls.execute(info.id, command, create=(info.tenant_id, ConversationKind.MEETING))

    def _find(self, caller: Caller, req: wire.CreateCall) -> MeetingInfo:
        mi = req.meeting_info or {}
        info: MeetingInfo | None
        if str(mi.get("@odata.type", "")).endswith("joinMeetingIdMeetingInfo"):
            info = self.lookup.by_join_id(str(mi.get("joinMeetingId") or ""))
            if info is None or info.tenant_id != caller.tenant_id:
                raise NotFound("No online meeting with this 'meetingInfo.joinMeetingId'.")
            self._check_passcode(caller, info, mi.get("passcode"))
        else:
            info = self.lookup.by_thread(str((req.chat_info or {}).get("threadId") or ""))
            organizer = ((mi.get("organizer") or {}).get("user") or {}).get("id")
            if (
                info is None
                or info.tenant_id != caller.tenant_id
                or (organizer and normalize_id(str(organizer)) != normalize_id(info.organizer_id))
            ):
                raise NotFound("No online meeting with this 'chatInfo.threadId' and organizer.")
        self._check_not_over(info)
        return info

    def _check_passcode(self, caller: Caller, info: MeetingInfo, given: Any) -> None:
        guesses, now = self._guesses, self.clock()
        if guesses is not None and (wait := guesses.wait(caller.app_id, now)) is not None:
            raise Throttled("Too many wrong meeting passcodes from this application; retry later.", retry_after(wait))
        if info.passcode_required and not given:
            error: OpenCommsError = BadRequest("'meetingInfo.passcode' is required to join this meeting.")
        elif (info.passcode_required or given) and not hmac.compare_digest(
            str(given or "").encode(), str(info.passcode or "").encode()
        ):
            error = AccessDenied("The meeting's passcode does not match 'meetingInfo.passcode'.")
        else:
            return
        if guesses is not None:
            guesses.charge(caller.app_id, now)
        raise error

    def _check_not_over(self, info: MeetingInfo) -> None:
        if info.end is not None and self.clock() > info.end + self.config.end_grace:
            raise InvalidState("The meeting has ended: its end time has passed.")

    # -- participant control (the caller's leg must be in the meeting) --------------------------------------
    async def mute(self, caller: Caller, call_id: str, participant_id: str, client_context: str | None) -> JsonObj:
        """participants/{id}/mute: a server mute (that audio leaves the mix; serverMuted in the roster)."""
        call = self.calls.own(caller, call_id)
        await self.calls.execute(call.conversation_id, c.Mute(call.id, True, normalize_id(participant_id)))
        return self.operations.keep(call.id, _operation("#microsoft.graph.muteParticipantOperation", client_context))

    async def remove(self, caller: Caller, call_id: str, participant_id: str) -> None:
        """DELETE participants/{id}: only apps the node's configuration names (AllowRemoveParticipantAppIds)."""
        call = self.calls.own(caller, call_id)
        allowed = {normalize_id(a) for a in self.config.remove_participant_apps}
        if caller.app_id not in allowed:
            raise AccessDenied(
                "The application may not remove participants: the node's 'meetings.remove_participant_apps' "
                "must name it (as Teams' AllowRemoveParticipantAppIds)."
            )
        await self.calls.execute(call.conversation_id, c.RemoveParticipant(call.id, normalize_id(participant_id)))
        log.info("participant removed", extra={"call_id": call.id, "participant_id": participant_id})

    async def hold_music(
        self,
        caller: Caller,
        call_id: str,
        participant_id: str,
        on: bool,
        client_context: str | None,
        custom_prompt: JsonObj | None = None,
    ) -> JsonObj:
        """startHoldMusic/stopHoldMusic: the operation answers `running` and finishes with a notification."""
        call = self.calls.own(caller, call_id)
        kind = "#microsoft.graph." + ("startHoldMusicOperation" if on else "stopHoldMusicOperation")
        running = _operation(kind, client_context, status="running")
        done = {**running, "status": "completed", "resultInfo": results.MEDIA_COMPLETED.to_wire()}
        pid = normalize_id(participant_id)
        await self.calls.execute(call.conversation_id, c.HoldMusic(call.id, pid, on, done, custom_prompt))
        return running

    async def admit(
        self, caller: Caller, call_id: str, participant_ids: tuple[str, ...], client_context: str | None
    ) -> JsonObj:
        """#opencomms participants/{id}/admit and participants/admitAll (empty `participant_ids`)."""
        call = self.calls.own(caller, call_id)
        ids = tuple(normalize_id(p) for p in participant_ids)
        await self.calls.execute(call.conversation_id, c.Admit(call.id, ids))
        return self.operations.keep(call.id, _operation("#opencomms.admitParticipantsOperation", client_context))

    async def update_recording_status(
        self, caller: Caller, call_id: str, status: str, client_context: str | None
    ) -> JsonObj:
        """updateRecordingStatus (Calls.JoinGroupCall.All + Calls.AccessMedia.All, as Graph)."""
        call = self.calls.own(caller, call_id)
        CallService.require(caller, JOIN)
        CallService.require(caller, ACCESS_MEDIA)
        await self.calls.execute(call.conversation_id, c.UpdateRecordingStatus(call.id, status))
        log.info("recording status", extra={"call_id": call.id, "status": status})
        op = _operation("#microsoft.graph.updateRecordingStatusOperation", client_context, resultInfo=None)
        return self.operations.keep(call.id, op)

    async def check_persist(self, caller: Caller, call_id: str) -> None:
        """Graph's rule: in a meeting no API that persists media works until the recording status is `recording`."""
        call = self.calls.own(caller, call_id)
        conv = await self.calls.conversation(call.conversation_id)
        if conv is not None and conv.meeting is not None and conv.meeting.recording != "recording":
            raise AccessDenied(
                "Media of a meeting may be recorded only after updateRecordingStatus has set 'recording'."
            )

    def meeting_of(self, call: Call) -> str | None:
        """The meeting id of a leg that is in one (its conversation's id), else None."""
        kind = self.calls.conversation_kind(call.conversation_id)
        return call.conversation_id if kind is ConversationKind.MEETING else None

    # -- LiveMeetings: the resource side -----------------------------------------------------------------
    async def end_meeting(self, meeting_id: str, reason: ResultInfo) -> None:
        if await self.calls.conversation(meeting_id) is None:
            return
        await self.calls.execute(meeting_id, c.EndConversation(reason))
        log.info("meeting ended", extra={"meeting_id": meeting_id})

    async def meeting_changed(self, info: MeetingInfo) -> None:
        """The meeting resource changed (PATCH): its new end applies, and the lobby participants its new
        lobbyBypassSettings let in are admitted (as by admitAll: media, roster, announcement, the lobby music stops)."""
        conv = await self.calls.conversation(info.id)
        if conv is None:
            return
        ends_at = None if info.end is None else info.end + self.config.end_grace
        admit = tuple(
            entry.id
            for entry in conv.roster.entries()
            if entry.in_lobby
            and (leg := conv.legs.get(entry.leg_id)) is not None
            and bypasses_lobby(info, *joiner_of(leg.kind, leg.role, leg.identity))
        )
        await self.calls.execute(info.id, c.ConfigureMeeting(ends_at, admit))
        if admit:
            log.info("lobby participants let in by the meeting's new settings", extra={"meeting_id": info.id})


def joiner_of(kind: LegKind, role: str, identity: JsonObj) -> tuple[JoinerKind, str]:
    """Who a leg is as far as the lobby is concerned (and its user id), as it joined: a bot by its role (member or
    guest), a gateway's leg by the joiner kind `join_external` kept as its role (a user's id is its identity's)."""
    if kind is LegKind.BOT:
        return (JoinerKind.MEMBER if role == MEMBER else JoinerKind.GUEST), ""
    joiner = JoinerKind(role) if role in set(JoinerKind) else JoinerKind.GUEST
    user = identity.get("user")
    uid = str(user.get("id") or "") if joiner is JoinerKind.USER and isinstance(user, dict) else ""
    return joiner, uid
