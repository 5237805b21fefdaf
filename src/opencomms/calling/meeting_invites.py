"""participants/invite: a bot in a meeting or group call rings more parties into it, and learns the outcome as
Graph's `inviteParticipantsOperation`.

`ParticipantInvites.invite` resolves up to five targets (a phone through the trunk, a softphone user, another bot:
`calling.invitations`), applies one `Invite` command through `CallService.execute` (the aggregate rings them; each
becomes a participant when it answers) and answers the operation `running`. As a subscriber it follows the legs it
rang: once each has joined (established) or failed, the operation finishes with a `deleted` notification to the
inviting bot: `completed` when every one joined, else `failed` with the first failure's resultInfo. Operation
documents are kept for GET …/operations/{id} until the inviting leg ends. `replacesCallId` is refused (400).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from opencomms.calling import notifications as notes
from opencomms.calling.model import JsonObj
from opencomms.calling.service import INITIATE_GROUP, Caller, CallService
from opencomms.calling.subscribers import Batch, Subscriber
from opencomms.domain import commands as c
from opencomms.domain import events as ev
from opencomms.domain import results
from opencomms.domain.errors import BadRequest, NotFound
from opencomms.domain.ids import new_id
from opencomms.domain.results import ResultInfo
from opencomms.tasks import TaskSet
from opencomms.wire.invites import InviteParticipants

log = logging.getLogger("opencomms.calls")

__all__ = ["INVITE_FAILED", "InviteOperation", "ParticipantInvites"]

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

    async def invite(self, caller: Caller, call_id: str, req: InviteParticipants) -> JsonObj:
        call = self.calls.own(caller, call_id)
        CallService.require(caller, INITIATE_GROUP)
        if any(p.get("replacesCallId") for p in req.participants):
            raise BadRequest("'participants[].replacesCallId' (moving a call into this one) is not supported yet.")
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
