"""CallService: the command router of the calls slice (REST actions, gateway reports, timers -> commands).

It checks what only the platform knows (permissions, tenant, source, the app-hosted blob), resolves targets
(`calling.invitations`), builds one `domain.commands` command and runs it on the leg's `Conversation` as one unit of
work of the async ledger (`calling.core`: loaded on demand, fenced, its notifications written with it); every rule
lives in the aggregate. The committed events go to subscribers registered at the composition root: the media
session and the gateways by leg kind. It never does network I/O.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from opencomms.calling.core import Core
from opencomms.calling.invitations import Inviter, origin
from opencomms.calling.model import Call, JsonObj
from opencomms.calling.quotas import LiveCalls
from opencomms.calling.routing import Router
from opencomms.calling.subscribers import Gateways, MediaHooks, MediaSubscriber, Subscriber
from opencomms.calling.views import view_from_doc
from opencomms.config import CallsConfig
from opencomms.directory import Directory
from opencomms.domain import commands as c
from opencomms.domain import events as ev
from opencomms.domain import results
from opencomms.domain.conversation import Conversation
from opencomms.domain.directory import Application
from opencomms.domain.errors import AccessDenied, BadRequest, NotFound
from opencomms.domain.ids import new_id, normalize_id
from opencomms.domain.legs import LegKind
from opencomms.domain.results import ResultInfo
from opencomms.domain.rules import ConversationKind, ConversationTimeouts
from opencomms.store.base import OutboxEntry, Store
from opencomms.store.conversations import ConversationStore, MemoryConversationStore
from opencomms.tasks import TaskSet
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

    def release(self, entries: list[OutboxEntry]) -> None:
        """Committed entries (already in the store) to deliver."""
        ...

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
        conversations: ConversationStore | None = None,
        retries: int = 3,
        cache_size: int = 100_000,
    ) -> None:
        """`store`: directory, operations, call records; `conversations`: the async conversation store (default:
        in memory, its outbox in `store`); `retries`: reruns of a command refused as stale before it fails 409;
        `cache_size`: conversations the ledger keeps in memory."""
        self.store = store
        self.directory = directory
        self.timeouts = timeouts
        self.clock = clock
        self.sink = sink
        self.conversations = conversations if conversations is not None else MemoryConversationStore(store)
        self.core = Core(
            self.conversations,
            directory,
            sink,
            clock=clock,
            on_deadline=on_deadline,
            retries=retries,
            cache_size=cache_size,
        )
        self._views = self.core.views
        self.gateways = Gateways(self)
        """Gateways by leg kind (SIP; browsers later), registered by the composition root."""
        self.router = Router(directory, reachable=self.gateways.reachable_kind)
        self.inviter = Inviter(self.router, self._views.calls)
        self.projector = self.core.projector
        self._media: MediaSubscriber | None = None
        self.core.subscribers.append(self.gateways)
        self.core.load_listeners.append(self._loaded)
        self._timeouts_key: CallsConfig | None = None
        self._conv_timeouts = ConversationTimeouts()
        self.core.timeouts_of = self._timeouts
        self._tasks = TaskSet("calls")
        self.orphan_result = results.GATEWAY_RESTARTED
        """How an external leg another process held ends when its conversation is loaded here (a cluster: NODE_LOST)."""
        """Commands started by a listener (ending the legs a previous process held)."""

    # -- composition -------------------------------------------------------------------------------------
    def subscribe(self, subscriber: Subscriber, *, first: bool = False) -> None:
        """Register a subscriber to every conversation's committed events (`first`: before the others)."""
        if first:
            self.core.subscribers.insert(0, subscriber)
        else:
            self.core.subscribers.append(subscriber)

    def attach_media(self, media: MediaHooks) -> None:
        """The media session, first: it frees a leg's operations before the leg's final notification goes out."""
        if self._media is not None:
            self.core.subscribers.remove(self._media)
        self._media = MediaSubscriber(media, self)
        self.subscribe(self._media, first=True)

    async def start(self) -> None:
        """Learn the earliest stored timer (nothing else is loaded: conversations come in on demand)."""
        await self.core.timers.start()

    async def aclose(self) -> None:
        """Wait for the commands listeners started."""
        await self._tasks.close()

    def _loaded(self, conv: Conversation) -> None:
        """A conversation read from the store (after a restart, or an eviction): its live legs' media joins the
        engine again, and external legs whose signalling a previous process held are ended."""
        if self._media is not None:
            self._media.loaded(view for leg_id in conv.legs if (view := self.leg(leg_id)) is not None)
        for leg in self.gateways.orphans(conv.legs.values()):
            self._tasks.spawn(self.external_ended(leg.id, self.orphan_result), name="opencomms-orphan-leg")

    # -- queries -----------------------------------------------------------------------------------------
    @property
    def calls(self) -> LiveCalls:
        """The views of this node's live legs (a read model: id -> Call), counted per application and tenant for
        the quotas."""
        return self._views.calls

    @property
    def active_calls(self) -> int:
        return len(self._views.calls)

    @property
    def active_conversations(self) -> int:
        return len(self.core.ledger)

    @property
    def group_participants(self) -> int:
        """Live legs in group calls and meetings (the metrics' participant gauge)."""
        multi = (ConversationKind.GROUP, ConversationKind.MEETING)
        return sum(
            sum(1 for leg in conv.legs.values() if leg.live) for conv in self.core.conversations() if conv.kind in multi
        )

    @property
    def armed_timers(self) -> int:
        """Conversations of this node with a timer armed."""
        return len(self.core.timers.deadlines)

    @property
    def faults(self) -> int:
        """Units of work that failed on a storage fault."""
        return self.core.faults

    def leg(self, leg_id: str) -> Call | None:
        """The view of live leg `leg_id` if this node holds its conversation (None when it has ended; `find`
        loads it from the store)."""
        return self._views.calls.get(leg_id)

    async def find(self, leg_id: str) -> Call | None:
        """The view of live leg `leg_id`, its conversation loaded from the store if needed."""
        view = self._views.calls.get(leg_id)
        if view is None and await self.core.find(leg_id) is not None:
            view = self._views.calls.get(leg_id)
        return view

    def legs(self) -> list[Call]:
        return list(self._views.calls.values())

    def conversation_kind(self, conversation_id: str) -> ConversationKind | None:
        conv = self.core.ledger.cached(conversation_id)
        return None if conv is None else conv.kind

    def now(self) -> float:
        return self.clock()

    async def get(self, caller: Caller, call_id: str) -> Call:
        return await self._own(caller, call_id)

    async def participants(self, caller: Caller, call_id: str) -> list[JsonObj]:
        call = await self._own(caller, call_id)
        return [p.to_wire() for p in (await self._conv(call.id)).participants_for(call.id)]

    async def participant(self, caller: Caller, call_id: str, participant_id: str) -> JsonObj:
        wanted = normalize_id(participant_id)
        for p in await self.participants(caller, call_id):
            if p["id"] == wanted:
                return p
        raise NotFound(f"No participant {participant_id!r} in this call.")

    async def operation(self, caller: Caller, call_id: str, operation_id: str) -> JsonObj | None:
        """A commsOperation of this call, as last reported (None if unknown)."""
        call = await self._own(caller, call_id)
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
        conv_id = new_id()
        invitations = self.inviter.invitations(caller.tenant_id, req.targets)
        events = await self.core.run(conv_id, c.Create(spec, invitations), new=(caller.tenant_id, kind))
        snapshot = self.leg(spec.id) or self._ended_view(conv_id, caller.tenant_id, events, spec.id)
        body = snapshot.to_wire()
        body.update(state="establishing", resultInfo=None)
        body["mediaState"] = {"@odata.type": "#microsoft.graph.callMediaState", "audio": "inactive"}
        log.info("call created", extra={"call_id": spec.id, "app_id": app.id, "targets": len(req.targets)})
        return body

    async def answer(self, caller: Caller, call_id: str, req: wire.Answer) -> None:
        call = await self._own(caller, call_id)
        self._check_media(caller, req.media_config)
        attrs = {"media_config": req.media_config, "call_options": req.call_options, "callback_uri": req.callback_uri}
        await self._command(call.id, c.Answer(call.id, attrs), check=True)
        log.info("call answered", extra={"call_id": call.id, "app_id": call.app_id})

    async def reject(self, caller: Caller, call_id: str, req: wire.Reject) -> None:
        call = await self._own(caller, call_id)
        await self._command(call.id, c.Reject(call.id, req.reason, req.callback_uri), check=True)
        log.info("call rejected", extra={"call_id": call.id, "reason": req.reason})

    async def redirect(self, caller: Caller, call_id: str, req: wire.Redirect) -> None:
        call = await self._own(caller, call_id)
        self.require(caller, INITIATE)
        conv = await self._conv(call.id)
        timeout = float(req.timeout) if req.timeout is not None else None
        conv.check(c.Redirect(call.id, (c.Invitation(),), timeout))
        invitations = self.inviter.invitations(call.tenant_id, req.targets)
        await self._command(call.id, c.Redirect(call.id, invitations, timeout, req.callback_uri))
        log.info("call redirected", extra={"call_id": call.id, "targets": len(req.targets)})

    async def transfer(self, caller: Caller, call_id: str, req: wire.Transfer) -> None:
        call = await self._own(caller, call_id)
        self.require(caller, INITIATE)
        conv = await self._conv(call.id)
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
        await self._command(call.id, command)
        log.info("call transfer started", extra={"call_id": call.id})

    async def hang_up(self, caller: Caller, call_id: str) -> None:
        call = await self._own(caller, call_id)
        await self._command(call.id, c.HangUp(call.id), check=True)
        log.info("call hung up", extra={"call_id": call.id})

    async def keep_alive(self, caller: Caller, call_id: str) -> None:
        call = await self._own(caller, call_id)
        await self._command(call.id, c.KeepAlive(call.id), check=True)

    async def mute(self, call_id: str, muted: bool) -> None:
        """The bot muted or unmuted itself (MediaService records the operation)."""
        await self._command(call_id, c.Mute(call_id, muted))

    async def move_callback(self, call_id: str, url: str) -> None:
        """The bot answered a notification with 302/307: later notifications of this call go to `url`."""
        await self._command(call_id, c.MoveCallback(call_id, url))

    # -- gateways and media ----------------------------------------------------------------------------------
    async def accept_inbound(
        self,
        *,
        app: Application,
        callee: JsonObj,
        caller: JsonObj,
        external: str,
        call_id: str | None = None,
        gateway: object | None = None,
    ) -> Call:
        """A call from outside (a phone on SIP) to `app`: the caller's external leg (`establishing`, of the leg kind
        `gateway` is registered for; None: the only gateway registered) and the bot's ringing leg. Returns the
        external leg's view (it may have ended already: the bot is unreachable)."""
        kind = self.gateways.kind_of(gateway) if gateway is not None else self.gateways.only_kind()
        source = {"@odata.type": "#microsoft.graph.participantInfo", "identity": caller}
        target = {"@odata.type": "#microsoft.graph.invitationParticipantInfo", "identity": callee}
        spec = origin(kind, caller, source, [target], leg_id=call_id, external=external)
        conv_id = new_id()
        invitation = self.inviter.bot(app, callee, target)
        new = (app.tenant_id, ConversationKind.PEER_TO_PEER)
        events = await self.core.run(conv_id, c.Create(spec, (invitation,)), new=new)
        log.info("inbound call", extra={"call_id": spec.id, "app_id": app.id})
        return self.leg(spec.id) or self._ended_view(conv_id, app.tenant_id, events, spec.id)

    async def external_answered(self, call_id: str) -> None:
        await self._command(call_id, c.ConnectLeg(call_id))

    async def external_ended(self, call_id: str, reason: ResultInfo) -> None:
        await self._command(call_id, c.EndLeg(call_id, reason))

    async def media_failed(self, call_id: str, reason: ResultInfo) -> None:
        """A leg's application-hosted media could not be reached or was lost for good: end the leg."""
        await self._command(call_id, c.FailMedia(call_id, reason))

    async def external_transfer_accepted(self, call_id: str) -> None:
        await self._command(call_id, c.AcceptTransfer(call_id))

    async def external_transferred(self, call_id: str) -> None:
        await self._command(call_id, c.CompleteTransfer(call_id))

    async def external_transfer_failed(
        self, call_id: str, reason: ResultInfo, *, bridge: JsonObj | None = None
    ) -> None:
        call = self.leg(call_id)
        invitation = None if bridge is None or call is None else self.inviter.invitation(call.tenant_id, bridge)
        await self._command(call_id, c.FailTransfer(call_id, reason, invitation))

    # -- timers ------------------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        return self.core.timers.next_deadline()

    async def fire_due(self, now: float) -> None:
        """End every leg whose answer window or keepAlive deadline has passed (held off after a storage fault)."""
        await self.core.timers.fire(now, self._fire)

    async def _fire(self, conv_id: str, now: float) -> None:
        await self.core.run(conv_id, c.FireTimers(), now, due_only=True)

    # -- the core's entry point for other command routers (meetings) -----------------------------------------
    async def conversation(self, conv_id: str) -> Conversation | None:
        """The live conversation `conv_id` (read only: change it through `execute`), or None."""
        return await self.core.get(conv_id)

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
        conversation and `create` is None. A second creator (concurrent, or on another node) applies to the
        conversation the first one made."""
        conv = await self.core.get(conv_id)
        if conv is None and create is None:
            raise NotFound(f"No conversation {conv_id!r}.")
        if conv is not None and not conv.check(command):
            return []
        return await self.core.run(conv_id, command, now, new=create, missing=True)

    # -- internals ---------------------------------------------------------------------------------------
    def unit(self) -> AbstractContextManager[None]:
        """One atomic change of media operation documents and their notifications (the synchronous store's
        transaction, whose notifications are released on commit); conversations change through commands only."""
        return self.sink.transaction()

    def notify(self, call: Call, body: dict[str, Any]) -> None:
        """Queue a notification of `call` (media operations and tones; inside a unit)."""
        self.projector.notify(call, body)

    def own(self, caller: Caller, call_id: str) -> Call:
        """The caller's live leg `call_id` among this node's views (`get` loads it from the store first)."""
        call = self._views.calls.get(normalize_id(call_id))
        if call is None or call.app_id != caller.app_id or call.tenant_id != caller.tenant_id:
            raise NotFound(f"No call with id {call_id!r}.")
        return call

    async def _own(self, caller: Caller, call_id: str) -> Call:
        call = self._views.calls.get(normalize_id(call_id))
        if call is None:
            call = await self.find(normalize_id(call_id))
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

    async def _conv(self, leg_id: str) -> Conversation:
        conv = await self.core.find(leg_id)
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

    async def _command(self, leg_id: str, command: c.Command, *, check: bool = False) -> list[ev.Event]:
        """Apply `command` to the conversation of `leg_id` (a report about a leg that is gone is dropped)."""
        core = self.core
        conv_id = await core.conversation_of(leg_id)
        if conv_id is None:
            return []
        if check:  # a REST command's typed error, before the unit of work (the unit checks again)
            conv = await core.get(conv_id)
            if conv is None or not conv.check(command):
                return []
        return await core.run(conv_id, command)

    @staticmethod
    def _ended_view(conv_id: str, tenant_id: str, events: list[ev.Event], leg_id: str) -> Call:
        doc = next(e.leg for e in events if isinstance(e, ev.LegEnded) and e.leg_id == leg_id)
        return view_from_doc(conv_id, tenant_id, doc)
