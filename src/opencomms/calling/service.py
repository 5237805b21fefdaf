"""CallService: the command router of the calls slice (REST actions, gateway reports, timers -> commands).

It checks what only the platform knows (permissions, tenant, source, the app-hosted blob), resolves targets
(`calling.invitations`), builds one `domain.commands` command and applies it to the leg's `Conversation` in one
unit of work (`calling.unitofwork`); every rule lives in the aggregate. The events go to subscribers registered
at the composition root: the notification projector, the media session and the gateways by leg kind. It never
does network I/O.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from opencomms.calling.invitations import Inviter, origin
from opencomms.calling.model import Call, JsonObj
from opencomms.calling.projector import NotificationProjector
from opencomms.calling.quotas import LiveCalls
from opencomms.calling.routing import Router
from opencomms.calling.subscribers import Gateways, MediaHooks, MediaSubscriber, Subscriber
from opencomms.calling.unitofwork import KIND, LiveConversations, UnitOfWork
from opencomms.calling.views import view_from_doc
from opencomms.config import CallsConfig
from opencomms.directory import Directory
from opencomms.domain import commands as c
from opencomms.domain import events as ev
from opencomms.domain.conversation import Conversation
from opencomms.domain.directory import Application
from opencomms.domain.errors import AccessDenied, BadRequest, NotFound
from opencomms.domain.ids import new_id, normalize_id
from opencomms.domain.legs import LegKind
from opencomms.domain.results import ResultInfo
from opencomms.domain.rules import ConversationKind, ConversationTimeouts
from opencomms.store.base import Store
from opencomms.wire import calls as wire
from opencomms.wire.apphosted import read_blob
from opencomms.wire.calls import is_app_hosted

log = logging.getLogger("opencomms.calls")

INITIATE = "Calls.Initiate.All"
INITIATE_GROUP = "Calls.InitiateGroupCall.All"
ACCESS_MEDIA = "Calls.AccessMedia.All"

__all__ = ["ACCESS_MEDIA", "CallService", "Caller", "MediaHooks"]


class NotificationSink(Protocol):
    def submit(self, *, order_key: str, app_id: str, tenant_id: str, url: str, body: bytes) -> object: ...

    def transaction(self) -> AbstractContextManager[None]:
        """A store transaction whose notifications are released only if it commits."""
        ...


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling the REST API, from a validated access token."""

    tenant_id: str
    app_id: str
    roles: frozenset[str]
    user_id: str | None = None
    """The signed-in user of a delegated token (None: an application token)."""
    scopes: frozenset[str] = frozenset()
    """A delegated token's `scp` (e.g. OnlineMeetings.ReadWrite)."""


_TIMEOUTS = CallsConfig()
"""Ring, keepalive, redirect and dial times (the node passes its [calls] section)."""


class CallService:
    def __init__(
        self,
        store: Store,
        directory: Directory,
        sink: NotificationSink,
        *,
        timeouts: CallsConfig = _TIMEOUTS,
        clock: Callable[[], float] = time.time,
        on_deadline: Callable[[float], None] | None = None,
    ) -> None:
        self.store = store
        self.directory = directory
        self.timeouts = timeouts
        self.clock = clock
        self._live = LiveConversations()
        self.units = UnitOfWork(store, sink, self._live, clock=clock, on_deadline=on_deadline)
        self.gateways = Gateways(self)
        """Gateways by leg kind (SIP; browsers later), registered by the composition root."""
        self.router = Router(directory, reachable=self.gateways.reachable)
        self.inviter = Inviter(self.router, self._live.calls)
        self.projector = NotificationProjector(self, directory, sink)
        self._media: MediaSubscriber | None = None
        self.units.subscribers.extend([self.projector, self.gateways])
        self._timeouts_key: CallsConfig | None = None
        self._conv_timeouts = ConversationTimeouts()

    # -- composition -------------------------------------------------------------------------------------
    def subscribe(self, subscriber: Subscriber, *, first: bool = False) -> None:
        """Register a subscriber to every conversation's events (`first`: before the projector)."""
        if first:
            self.units.subscribers.insert(0, subscriber)
        else:
            self.units.subscribers.append(subscriber)

    def attach_media(self, media: MediaHooks) -> None:
        """The media session: it frees a leg's operations before the leg's final notification goes out."""
        if self._media is not None:
            self.units.subscribers.remove(self._media)
        self._media = MediaSubscriber(media, self)
        self.subscribe(self._media, first=True)

    def load(self) -> None:
        """Restore the conversations from the store (after a restart) and re-arm their timers."""
        for _, doc in self.store.scan(KIND):
            if doc.get("format") is None:
                continue  # written by the calls slice before the conversation core: not readable
            conv = Conversation.from_doc(doc)
            self._live.sync(conv)
            self._live.push_timer(conv)

    # -- queries -----------------------------------------------------------------------------------------
    @property
    def calls(self) -> LiveCalls:
        """The leg views (a read model: id -> Call), counted per application and tenant for the quotas."""
        return self._live.calls

    @property
    def active_calls(self) -> int:
        return len(self._live.calls)

    @property
    def active_conversations(self) -> int:
        return len(self._live.convs)

    @property
    def group_participants(self) -> int:
        """Live legs in group calls and meetings (the metrics' participant gauge)."""
        multi = (ConversationKind.GROUP, ConversationKind.MEETING)
        return sum(
            sum(1 for leg in conv.legs.values() if leg.live) for conv in self._live.convs.values() if conv.kind in multi
        )

    @property
    def armed_timers(self) -> int:
        """Deadlines in the timer heap (some may belong to ended conversations until compaction)."""
        return len(self._live.timers)

    def leg(self, leg_id: str) -> Call | None:
        """The view of live leg `leg_id` (None when it has ended)."""
        return self._live.calls.get(leg_id)

    def legs(self) -> list[Call]:
        return list(self._live.calls.values())

    def conversation_kind(self, conversation_id: str) -> ConversationKind | None:
        conv = self._live.convs.get(conversation_id)
        return None if conv is None else conv.kind

    def now(self) -> float:
        return self.clock()

    async def get(self, caller: Caller, call_id: str) -> Call:
        return self.own(caller, call_id)

    async def participants(self, caller: Caller, call_id: str) -> list[JsonObj]:
        call = self.own(caller, call_id)
        return [p.to_wire() for p in self._conv(call.id).participants_for(call.id)]

    async def participant(self, caller: Caller, call_id: str, participant_id: str) -> JsonObj:
        wanted = normalize_id(participant_id)
        for p in await self.participants(caller, call_id):
            if p["id"] == wanted:
                return p
        raise NotFound(f"No participant {participant_id!r} in this call.")

    async def operation(self, caller: Caller, call_id: str, operation_id: str) -> JsonObj | None:
        """A commsOperation of this call, as last reported (None if unknown)."""
        call = self.own(caller, call_id)
        return self.store.get("operation", f"{call.id}/{normalize_id(operation_id)}")

    # -- REST actions --------------------------------------------------------------------------------------
    async def create(self, caller: Caller, req: wire.CreateCall) -> JsonObj:
        """POST /communications/calls. Returns the new call as the 201 body shows it."""
        group = len(req.targets) > 1
        self.require(caller, INITIATE_GROUP if group else INITIATE)
        self._check_media(caller, req.media_config)
        if req.tenant_id and normalize_id(req.tenant_id) != caller.tenant_id:
            raise AccessDenied("'tenantId' must be the application's own tenant.")
        app = self.directory.require_app(caller.app_id)
        callback = req.callback_uri or app.callback_url
        if not callback:
            raise BadRequest("'callbackUri' is required: the application has no registered calling webhook.")
        own = {"@odata.type": "#microsoft.graph.identity", "id": app.id, "displayName": app.display_name}
        own_identity = {"@odata.type": "#microsoft.graph.identitySet", "application": own}
        source = req.source or {"@odata.type": "#microsoft.graph.participantInfo", "identity": own_identity}
        self._check_source(caller, source)
        attrs = {
            "callback_uri": callback,
            "media_config": req.media_config,
            "call_options": req.call_options,
            "subject": req.subject,
            "extra": req.extra,
            "requested_modalities": req.requested_modalities,
        }
        spec = origin(LegKind.BOT, source["identity"], source, req.targets, app_id=app.id, attrs=attrs)
        kind = ConversationKind.GROUP if group else ConversationKind.PEER_TO_PEER
        conv = Conversation(new_id(), caller.tenant_id, kind)
        invitations = self.inviter.invitations(caller.tenant_id, req.targets)
        events = self._run(conv, c.Create(spec, invitations))
        snapshot = self.leg(spec.id) or self._ended_view(conv, events, spec.id)
        body = snapshot.to_wire()
        body.update(state="establishing", resultInfo=None)
        body["mediaState"] = {"@odata.type": "#microsoft.graph.callMediaState", "audio": "inactive"}
        log.info("call created", extra={"call_id": spec.id, "app_id": app.id, "targets": len(req.targets)})
        return body

    async def answer(self, caller: Caller, call_id: str, req: wire.Answer) -> None:
        call = self.own(caller, call_id)
        self._check_media(caller, req.media_config)
        attrs = {"media_config": req.media_config, "call_options": req.call_options, "callback_uri": req.callback_uri}
        self._command(call.id, c.Answer(call.id, attrs), check=True)
        log.info("call answered", extra={"call_id": call.id, "app_id": call.app_id})

    async def reject(self, caller: Caller, call_id: str, req: wire.Reject) -> None:
        call = self.own(caller, call_id)
        self._command(call.id, c.Reject(call.id, req.reason, req.callback_uri), check=True)
        log.info("call rejected", extra={"call_id": call.id, "reason": req.reason})

    async def redirect(self, caller: Caller, call_id: str, req: wire.Redirect) -> None:
        call = self.own(caller, call_id)
        self.require(caller, INITIATE)
        conv = self._conv(call.id)
        timeout = float(req.timeout) if req.timeout is not None else None
        conv.check(c.Redirect(call.id, (c.Invitation(),), timeout))
        invitations = self.inviter.invitations(call.tenant_id, req.targets)
        self._command(call.id, c.Redirect(call.id, invitations, timeout, req.callback_uri))
        log.info("call redirected", extra={"call_id": call.id, "targets": len(req.targets)})

    async def transfer(self, caller: Caller, call_id: str, req: wire.Transfer) -> None:
        call = self.own(caller, call_id)
        self.require(caller, INITIATE)
        conv = self._conv(call.id)
        pid = str(req.transferee["participantId"]) if req.transferee and req.transferee.get("participantId") else None
        refer = c.StartTransfer(call.id, req.transfer_target, pid, by_refer=True)
        conv.check(refer)  # the leg's state, a transfer in progress, the transferee: before anything is resolved
        transferee = conv.transferee_of(call.id, pid)
        view = self.leg(transferee.id)
        if view is not None and transferee.is_external and self.gateways.can_refer(view, transferee.kind, refer.target):
            command = refer  # the far end transfers itself (REFER): no target leg here
        else:
            invitation = self.inviter.invitation(call.tenant_id, req.transfer_target)
            command = c.StartTransfer(call.id, req.transfer_target, pid, invitation=invitation)
        self._command(call.id, command)
        log.info("call transfer started", extra={"call_id": call.id})

    async def hang_up(self, caller: Caller, call_id: str) -> None:
        call = self.own(caller, call_id)
        self._command(call.id, c.HangUp(call.id), check=True)
        log.info("call hung up", extra={"call_id": call.id})

    async def keep_alive(self, caller: Caller, call_id: str) -> None:
        call = self.own(caller, call_id)
        self._command(call.id, c.KeepAlive(call.id), check=True)

    def mute(self, call_id: str, muted: bool) -> None:
        """The bot muted or unmuted itself (inside MediaService's unit, with its operation)."""
        self._command(call_id, c.Mute(call_id, muted))

    def move_callback(self, call_id: str, url: str) -> None:
        """The bot answered a notification with 302/307: later notifications of this call go to `url`."""
        self._command(call_id, c.MoveCallback(call_id, url))

    # -- gateways and media ----------------------------------------------------------------------------------
    async def accept_inbound(
        self, *, app: Application, callee: JsonObj, caller: JsonObj, external: str, call_id: str | None = None
    ) -> Call:
        """A call from outside (a phone on SIP) to `app`: the caller's external leg (`establishing`) and the
        bot's ringing leg. Returns the external leg's view (it may have ended already: the bot is unreachable)."""
        source = {"@odata.type": "#microsoft.graph.participantInfo", "identity": caller}
        target = {"@odata.type": "#microsoft.graph.invitationParticipantInfo", "identity": callee}
        spec = origin(LegKind.SIP, caller, source, [target], leg_id=call_id, external=external)
        conv = Conversation(new_id(), app.tenant_id, ConversationKind.PEER_TO_PEER)
        invitation = self.inviter.bot(app, callee, target)
        events = self._run(conv, c.Create(spec, (invitation,)))
        log.info("inbound call", extra={"call_id": spec.id, "app_id": app.id})
        return self.leg(spec.id) or self._ended_view(conv, events, spec.id)

    async def external_answered(self, call_id: str) -> None:
        self._command(call_id, c.ConnectLeg(call_id))

    async def external_ended(self, call_id: str, reason: ResultInfo) -> None:
        self._command(call_id, c.EndLeg(call_id, reason))

    async def media_failed(self, call_id: str, reason: ResultInfo) -> None:
        """A leg's application-hosted media could not be reached or was lost for good: end the leg."""
        self._command(call_id, c.FailMedia(call_id, reason))

    async def external_transfer_accepted(self, call_id: str) -> None:
        self._command(call_id, c.AcceptTransfer(call_id))

    async def external_transferred(self, call_id: str) -> None:
        self._command(call_id, c.CompleteTransfer(call_id))

    async def external_transfer_failed(
        self, call_id: str, reason: ResultInfo, *, bridge: JsonObj | None = None
    ) -> None:
        call = self.leg(call_id)
        invitation = None if bridge is None or call is None else self.inviter.invitation(call.tenant_id, bridge)
        self._command(call_id, c.FailTransfer(call_id, reason, invitation))

    # -- timers ------------------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        return self.units.next_deadline()

    def fire_due(self, now: float) -> None:
        """End every leg whose answer window or keepAlive deadline has passed (held off after a storage fault)."""
        self.units.fire_due(now, self._fire_due)

    def _fire_due(self, now: float) -> None:
        for conv_id in self._live.pop_due(now):
            conv = self._live.convs.get(conv_id)
            deadline = None if conv is None else conv.next_deadline()
            if conv is not None and deadline is not None and deadline <= now:
                self._run(conv, c.FireTimers(), now)
            if conv is not None and conv.legs:
                self._live.push_timer(conv)  # its next deadline stays armed (pushes nothing when it is)
        self._live.compact_timers()

    # -- the core's entry point for other command routers (meetings) -----------------------------------------
    async def conversation(self, conv_id: str) -> Conversation | None:
        """The live conversation `conv_id` (read only: change it through `execute`), or None."""
        return self._live.convs.get(conv_id)

    async def execute(
        self,
        conv_id: str,
        command: c.Command,
        *,
        create: tuple[str, ConversationKind] | None = None,
        now: float | None = None,
    ) -> list[ev.Event]:
        """Apply `command` to conversation `conv_id` in one unit of work; `create` = (tenant id, kind) makes the
        conversation when it does not exist. Raises the command's typed error; NotFound when there is no such
        conversation and `create` is None."""
        conv = self._live.convs.get(conv_id)
        if conv is None:
            if create is None:
                raise NotFound(f"No conversation {conv_id!r}.")
            conv = Conversation(conv_id, create[0], create[1])
        if not conv.check(command):
            return []
        return self._run(conv, command, now)

    # -- internals ---------------------------------------------------------------------------------------
    def unit(self) -> AbstractContextManager[None]:
        """One atomic change: the store rolls back and so do the conversations (calling.unitofwork)."""
        return self.units.unit()

    def notify(self, call: Call, body: dict[str, Any]) -> None:
        """Queue a notification of `call` (media operations and tones; inside a unit)."""
        self.projector.notify(call, body)

    def own(self, caller: Caller, call_id: str) -> Call:
        call = self._live.calls.get(normalize_id(call_id))
        if call is None or call.app_id != caller.app_id or call.tenant_id != caller.tenant_id:
            raise NotFound(f"No call with id {call_id!r}.")
        return call

    @staticmethod
    def require(caller: Caller, permission: str) -> None:
        if permission not in caller.roles:
            raise AccessDenied(f"The application needs the '{permission}' application permission for this action.")

    def _check_media(self, caller: Caller, media_config: JsonObj | None) -> None:
        if is_app_hosted(media_config or {}):
            self.require(caller, ACCESS_MEDIA)
            read_blob((media_config or {}).get("blob"))

    def _check_source(self, caller: Caller, source: JsonObj) -> None:
        inst_ref = source["identity"].get("applicationInstance")
        if inst_ref is not None:
            inst = self.directory.get_instance(str(inst_ref.get("id") or ""))
            if inst is None or inst.app_id != caller.app_id:
                raise AccessDenied("'source.identity.applicationInstance' is not an instance of this application.")
        app_ref = source["identity"].get("application")
        if app_ref is not None and normalize_id(str(app_ref.get("id") or "")) != caller.app_id:
            raise AccessDenied("'source.identity.application' must be the calling application itself.")

    def _conv(self, leg_id: str) -> Conversation:
        conv = self._live.find(leg_id)
        if conv is None:
            raise NotFound(f"No call with id {leg_id!r}.")
        return conv

    def _timeouts(self) -> ConversationTimeouts:
        t = self.timeouts
        if t is not self._timeouts_key:
            self._timeouts_key = t
            self._conv_timeouts = ConversationTimeouts(
                t.answer_timeout,
                t.keepalive_timeout,
                t.redirect_single_timeout,
                t.redirect_multiple_timeout,
                t.dial_timeout,
            )
        return self._conv_timeouts

    def _command(self, leg_id: str, command: c.Command, *, check: bool = False) -> list[ev.Event]:
        """Apply `command` to the conversation of `leg_id` (a report about a leg that is gone is dropped)."""
        conv = self._live.find(leg_id)
        if conv is None:
            return []
        if check and not conv.check(command):  # a REST command's typed error, before any transaction
            return []
        return self._run(conv, command)

    def _run(self, conv: Conversation, command: c.Command, now: float | None = None) -> list[ev.Event]:
        with self.unit():
            return self.units.apply(conv, command, self._timeouts(), now)

    @staticmethod
    def _ended_view(conv: Conversation, events: list[ev.Event], leg_id: str) -> Call:
        doc = next(e.leg for e in events if isinstance(e, ev.LegEnded) and e.leg_id == leg_id)
        return view_from_doc(conv.id, conv.tenant_id, doc)
