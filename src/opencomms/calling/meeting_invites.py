"""participants/invite: a bot in a meeting or group call rings more parties into it, and learns the outcome as
Graph's `inviteParticipantsOperation`.

`ParticipantInvites.invite` resolves up to five targets (a phone through the trunk, a softphone user, another bot:
`calling.invitations`), applies one `Invite` command through `CallService.execute` (the aggregate rings them; each
becomes a participant when it answers) and answers the operation `running`. As a subscriber it follows the legs it
rang: once each has joined (established) or failed, the operation finishes with a `deleted` notification to the
inviting bot: `completed` when every one joined, else `failed` with the first failure's resultInfo. Operation
documents are kept for GET …/operations/{id} until the inviting leg ends.

`replacesCallId` (one participant, into a meeting): the named peer-to-peer call of the same bot gives up its far
party (a phone) with `ReleaseLeg` (the bot's leg ends 0/7015), and the same leg, with its SIP dialog and RTP,
joins the meeting (`LiveMeetingService.join_external`); its gateway holds its signalling meanwhile (`LegMover`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

from opencomms.calling import notifications as notes
from opencomms.calling.model import JsonObj
from opencomms.calling.service import INITIATE_GROUP, Caller, CallService
from opencomms.calling.subscribers import Batch, Subscriber
from opencomms.domain import commands as c
from opencomms.domain import events as ev
from opencomms.domain import results
from opencomms.domain.errors import BadRequest, NotFound, OpenCommsError
from opencomms.domain.ids import new_id, normalize_id
from opencomms.domain.legs import LegSpec
from opencomms.domain.meeting_rules import JoinerKind
from opencomms.domain.results import ResultInfo
from opencomms.domain.rules import ConversationKind
from opencomms.tasks import TaskSet
from opencomms.wire.invites import InviteParticipants

log = logging.getLogger("opencomms.calls")

__all__ = ["INVITE_FAILED", "InviteOperation", "LegMover", "ParticipantInvites"]


class LegMover(Protocol):
    """A gateway's side of moving one of its legs between conversations (gateway/moves.py for SIP)."""

    def hold(self, leg_id: str) -> bool: ...

    async def release(self, leg_id: str, *, moved: bool) -> None: ...

    async def drop(self, leg_id: str) -> None: ...


class _Joiner(Protocol):
    async def join_external(
        self, meeting_id: str, spec: LegSpec, *, joiner: JoinerKind = ..., user_id: str = ""
    ) -> list[ev.Event]: ...


class _Media(Protocol):
    def moved(self, leg_id: str) -> None: ...


KIND = "#microsoft.graph.inviteParticipantsOperation"
INVITE_FAILED = ResultInfo(500, 9160, "The invited participant could not be reached.")
"""resultInfo of an invitation that failed without a more precise reason."""


@dataclass(eq=False)
class InviteOperation:
    id: str
    call_id: str
    client_context: str | None
    participants: list[JsonObj]
    pending: set[str] = field(default_factory=set)
    """Rung legs that have neither joined nor ended yet."""
    failure: ResultInfo | None = None

    @property
    def url(self) -> str:
        return f"/communications/calls/{self.call_id}/operations/{self.id}"

    def to_wire(self, status: str, result: ResultInfo | None = None) -> JsonObj:
        return {
            "@odata.type": KIND,
            "id": self.id,
            "status": status,
            "clientContext": self.client_context,
            "resultInfo": None if result is None else result.to_wire(),
            "participants": self.participants,
        }


class ParticipantInvites(Subscriber):
    """The invite router and the follower of the legs it rang."""

    def __init__(self, calls: CallService) -> None:
        self.calls = calls
        self._by_leg: dict[str, InviteOperation] = {}
        self._docs: dict[str, list[str]] = {}
        """Operation ids stored per inviting leg (deleted when it ends)."""
        self._tasks = TaskSet("invites")
        self._mover: LegMover | None = None
        self._meetings: _Joiner | None = None
        self._media: _Media | None = None

    def attach_moves(self, mover: LegMover, meetings: _Joiner, media: _Media) -> None:
        """replacesCallId: the gateway that holds the moved legs, the meetings they join, the media session."""
        self._mover, self._meetings, self._media = mover, meetings, media

    async def invite(self, caller: Caller, call_id: str, req: InviteParticipants) -> JsonObj:
        call = self.calls.own(caller, call_id)
        CallService.require(caller, INITIATE_GROUP)
        if any(p.get("replacesCallId") for p in req.participants):
            return await self._replace(caller, call.id, call.conversation_id, req)
        conv = await self.calls.conversation(call.conversation_id)
        if conv is None:
            raise NotFound(f"No call with id {call_id!r}.")
        conv.check(c.Invite(call.id, (c.Invitation(),)))  # state and kind, before any target is resolved
        invitations = self.calls.inviter.invitations(call.tenant_id, req.participants)
        op = InviteOperation(new_id(), call.id, req.client_context, req.participants)
        events = await self.calls.execute(call.conversation_id, c.Invite(call.id, invitations))
        rung = {inv.leg.id for inv in invitations if inv.leg is not None}
        for event in events:
            if isinstance(event, ev.InvitationFailed) and op.failure is None:
                op.failure = event.reason
            elif isinstance(event, ev.LegEnded) and event.leg_id in rung and op.failure is None:
                op.failure = event.result
        op.pending = {leg for leg in rung if self.calls.leg(leg) is not None}
        for leg in op.pending:
            self._by_leg[leg] = op
        running = op.to_wire("running")
        self._save(op, running)
        if not op.pending:
            self._tasks.spawn(self._finish(op))
        log.info("participants invited", extra={"call_id": call.id, "targets": len(req.participants)})
        return running

    async def _replace(self, caller: Caller, call_id: str, meeting_id: str, req: InviteParticipants) -> JsonObj:
        """Move the far party of the bot's peer-to-peer call `replacesCallId` into this meeting."""
        mover, meetings, media = self._mover, self._meetings, self._media
        if mover is None or meetings is None or media is None:
            raise BadRequest("'participants[].replacesCallId' is not supported on this node.")
        if len(req.participants) != 1:
            raise BadRequest("A participant with 'replacesCallId' must be invited alone.")
        if self.calls.conversation_kind(meeting_id) is not ConversationKind.MEETING:
            raise BadRequest("'replacesCallId' moves a call into a meeting only.")
        target = req.participants[0]
        old = self.calls.own(caller, str(target["replacesCallId"]))
        p2p = await self.calls.conversation(old.conversation_id)
        far = [leg for leg in p2p.legs.values() if leg.id != old.id] if p2p is not None else []
        if p2p is None or p2p.kind is not ConversationKind.PEER_TO_PEER or len(far) != 1 or not far[0].is_external:
            raise BadRequest("'replacesCallId' must name a peer-to-peer call of this application with a phone.")
        leg = far[0]
        wanted = target.get("participantId")
        if wanted and normalize_id(str(wanted)) != leg.participant_id:
            raise BadRequest("'participantId' is not the far party of the 'replacesCallId' call.")
        release = c.ReleaseLeg(leg.id, results.CALL_REPLACED)
        p2p.check(release)  # established, no transfer in progress
        if not mover.hold(leg.id):
            raise BadRequest("The far party of the 'replacesCallId' call cannot be moved now.")
        op = InviteOperation(new_id(), call_id, req.client_context, req.participants)
        moved = False
        try:
            await self.calls.execute(p2p.id, release)
            media.moved(leg.id)
            source = {"@odata.type": "#microsoft.graph.participantInfo", "identity": leg.identity}
            spec = LegSpec(
                id=leg.id,
                kind=leg.kind,
                participant_id=new_id(),
                source_id=leg.source_id,
                identity=leg.identity,
                source=source,
                attrs={"requested_modalities": ["audio"]},
                external=leg.external,
            )
            try:
                await meetings.join_external(meeting_id, spec, joiner=JoinerKind.MEMBER)  # invited: no lobby
                moved = True
            except OpenCommsError as exc:
                op.failure = ResultInfo(exc.status, 0, f"The participant could not join: {exc.message}")
                await mover.drop(leg.id)
        finally:
            await mover.release(leg.id, moved=moved)
        self._save(op, op.to_wire("running"))
        self._tasks.spawn(self._finish(op))
        log.info("call moved into meeting", extra={"call_id": call_id, "moved": leg.id})
        return op.to_wire("running")

    # -- following the rung legs ------------------------------------------------------------------------
    def committed(self, batch: Batch, event: ev.Event) -> None:
        if isinstance(event, ev.LegEstablished):
            op = self._by_leg.pop(event.leg_id, None)
            if op is not None:
                self._settled(op, event.leg_id)
        elif isinstance(event, ev.LegEnded):
            op = self._by_leg.pop(event.leg_id, None)
            if op is not None:
                op.failure = op.failure or event.result
                self._settled(op, event.leg_id)
            for op_id in self._docs.pop(event.leg_id, []):  # the inviting leg ended: its operations go
                self.calls.store.delete("operation", f"{event.leg_id}/{op_id}")

    def _settled(self, op: InviteOperation, leg_id: str) -> None:
        op.pending.discard(leg_id)
        if not op.pending:
            self._tasks.spawn(self._finish(op))

    async def _finish(self, op: InviteOperation) -> None:
        status = "completed" if op.failure is None else "failed"
        result = results.MEDIA_COMPLETED if op.failure is None else op.failure
        body = op.to_wire(status, result)
        call = self.calls.leg(op.call_id)
        with self.calls.unit():
            if op.id in self._docs.get(op.call_id, ()):
                self.calls.store.put("operation", f"{op.call_id}/{op.id}", body)
            if call is not None:
                data = {**body, "@odata.id": op.url, "@odata.etag": 'W/"2"'}
                self.calls.notify(call, notes.envelope("deleted", op.url, data))
        log.info("invite finished", extra={"call_id": op.call_id, "status": status})

    def _save(self, op: InviteOperation, body: JsonObj) -> None:
        if self.calls.leg(op.call_id) is None:
            return
        with self.calls.unit():
            self.calls.store.put("operation", f"{op.call_id}/{op.id}", body)
        self._docs.setdefault(op.call_id, []).append(op.id)

    async def close(self) -> None:
        await self._tasks.close()
