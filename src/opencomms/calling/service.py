"""CallService: applies bots' REST actions and timer expiries to call legs and conversations.

Every public method is one unit of work: validate first, then mutate, persist and queue notifications in one
store transaction. It never does network I/O; the notification sink (the dispatcher) delivers later.
"""

from __future__ import annotations

import heapq
import logging
import secrets
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from opencomms.calling import notifications as notes
from opencomms.calling.model import LIVE_STATES, Call, Conversation, JsonObj, Transfer
from opencomms.calling.quotas import LiveCalls
from opencomms.calling.routing import Route, Router
from opencomms.calling.unitofwork import UnitOfWork
from opencomms.config import CallsConfig
from opencomms.directory import Directory
from opencomms.domain import results
from opencomms.domain.calls import CallDirection, CallEvent, CallState, next_state
from opencomms.domain.directory import Application
from opencomms.domain.errors import AccessDenied, BadRequest, InvalidState, NotFound
from opencomms.domain.ids import new_id, normalize_id
from opencomms.domain.results import ResultInfo
from opencomms.store.base import Store
from opencomms.wire import calls as wire
from opencomms.wire.apphosted import read_blob
from opencomms.wire.calls import is_app_hosted

log = logging.getLogger("opencomms.calls")

INITIATE = "Calls.Initiate.All"
INITIATE_GROUP = "Calls.InitiateGroupCall.All"
ACCESS_MEDIA = "Calls.AccessMedia.All"
ANSWERED_ELSEWHERE = ResultInfo(200, 0, "The call was answered by another target.")


class NotificationSink(Protocol):
    def submit(self, *, order_key: str, app_id: str, tenant_id: str, url: str, body: bytes) -> object: ...

    def transaction(self) -> AbstractContextManager[None]:
        """A store transaction whose notifications are released only if it commits."""
        ...


class MediaHooks(Protocol):
    """What the media side must hear about a leg's life (calling.media.MediaService implements it)."""

    def configured(self, call: Call) -> None:
        """The leg's mediaConfig was set (create or answer): prefetch its prompts."""

    def connected(self, call: Call) -> None:
        """The leg became established: its media joins the conversation."""

    def ending(self, call: Call) -> None:
        """The leg is about to end (its final notification follows): finish its operations, free its media."""


class NoMedia:
    """MediaHooks that do nothing (a CallService without a media engine, as in some unit tests)."""

    def configured(self, call: Call) -> None:
        pass

    def connected(self, call: Call) -> None:
        pass

    def ending(self, call: Call) -> None:
        pass


class GatewayHooks(Protocol):
    """What a gateway (SIP) must do for external legs: parties outside the platform, such as phones."""

    def dial(self, call: Call) -> None:
        """Start calling the external leg's target; its outcome comes back as external_answered/_ended."""

    def connected(self, call: Call) -> None:
        """The external leg is established: confirm its signalling (200 OK) and connect its media."""

    def ending(self, call: Call, reason: ResultInfo) -> None:
        """The external leg is ending for `reason`: reject, cancel or hang up its signalling."""

    def transfer(self, call: Call, target: JsonObj) -> bool:
        """Move the external leg to `target` (invitationParticipantInfo) by its own signalling (SIP REFER) and
        report back through external_transfer_*; False when its peer cannot, and the node bridges instead."""


class NoGateway:
    """GatewayHooks of a node without a gateway: nothing is external, so nothing to do."""

    def dial(self, call: Call) -> None:
        pass

    def connected(self, call: Call) -> None:
        pass

    def ending(self, call: Call, reason: ResultInfo) -> None:
        pass

    def transfer(self, call: Call, target: JsonObj) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling the REST API, from a validated access token."""

    tenant_id: str
    app_id: str
    roles: frozenset[str]


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
        self.router = Router(directory)
        self.sink = sink
        self.timeouts = timeouts
        self.clock = clock
        self.on_deadline = on_deadline
        self.media: MediaHooks = NoMedia()
        """Set by the composition root once the media service exists (it needs this service too)."""
        self.gateway: GatewayHooks = NoGateway()
        """Set by the composition root when a gateway (SIP) serves external legs."""
        self.calls = LiveCalls()
        self.convs: dict[str, Conversation] = {}
        self._timers: list[tuple[float, str]] = []
        self._dirty_calls: set[str] = set()
        self._dirty_convs: set[str] = set()
        self.units = UnitOfWork(self)

    # -- lifecycle ---------------------------------------------------------------------------------------
    def load(self) -> None:
        """Restore calls and conversations from the store (after a restart) and re-arm their timers."""
        for _, doc in self.store.scan("conversation"):
            conv = Conversation.from_doc(doc)
            self.convs[conv.id] = conv
        for _, doc in self.store.scan("call"):
            call = Call.from_doc(doc)
            self.calls[call.id] = call
            for deadline in (call.answer_deadline, call.keepalive_deadline):
                if deadline is not None:
                    self._push_timer(deadline, call.id)

    @property
    def active_calls(self) -> int:
        return len(self.calls)

    # -- queries -----------------------------------------------------------------------------------------
    def get(self, caller: Caller, call_id: str) -> Call:
        return self.own(caller, call_id)

    def participants(self, caller: Caller, call_id: str) -> list[JsonObj]:
        call = self.own(caller, call_id)
        conv = self.convs[call.conversation_id]
        legs = [self.calls[c] for c in conv.legs if c in self.calls]
        return [leg.participant() for leg in legs if leg.id == call.id or leg.state in LIVE_STATES]

    def participant(self, caller: Caller, call_id: str, participant_id: str) -> JsonObj:
        wanted = normalize_id(participant_id)
        for p in self.participants(caller, call_id):
            if p["id"] == wanted:
                return p
        raise NotFound(f"No participant {participant_id!r} in this call.")

    def operation(self, caller: Caller, call_id: str, operation_id: str) -> JsonObj | None:
        """A commsOperation of this call, as last reported (None if unknown)."""
        call = self.own(caller, call_id)
        return self.store.get("operation", f"{call.id}/{normalize_id(operation_id)}")

    # -- actions -----------------------------------------------------------------------------------------
    def create(self, caller: Caller, req: wire.CreateCall) -> JsonObj:
        """POST /communications/calls. Returns the new call as the 201 body shows it."""
        group = len(req.targets) > 1
        needed = INITIATE_GROUP if group else INITIATE
        self.require(caller, needed)
        if is_app_hosted(req.media_config):
            self.require(caller, ACCESS_MEDIA)
            read_blob(req.media_config.get("blob"))
        if req.tenant_id and normalize_id(req.tenant_id) != caller.tenant_id:
            raise AccessDenied("'tenantId' must be the application's own tenant.")
        app = self.directory.require_app(caller.app_id)
        callback = req.callback_uri or app.callback_url
        if not callback:
            raise BadRequest("'callbackUri' is required: the application has no registered calling webhook.")
        own_identity = {
            "@odata.type": "#microsoft.graph.identitySet",
            "application": {
                "@odata.type": "#microsoft.graph.identity",
                "id": app.id,
                "displayName": app.display_name,
            },
        }
        source = req.source or {"@odata.type": "#microsoft.graph.participantInfo", "identity": own_identity}
        self._check_source(caller, source)
        now = self.clock()
        conv = Conversation(id=new_id(), tenant_id=caller.tenant_id, group=group)
        call = Call(
            id=new_id(),
            tenant_id=caller.tenant_id,
            app_id=app.id,
            direction=CallDirection.OUTGOING,
            state=CallState.ESTABLISHING,
            conversation_id=conv.id,
            my_participant_id=new_id(),
            source_id=self._new_source_id(),
            identity=source["identity"],
            source=dict(source),
            targets=req.targets,
            requested_modalities=req.requested_modalities,
            created_at=now,
            callback_uri=callback,
            media_config=req.media_config,
            call_options=req.call_options,
            subject=req.subject,
            extra=req.extra,
            keepalive_deadline=now + self.timeouts.keepalive_timeout,
        )
        call.source["participantId"] = call.my_participant_id
        with self.unit():
            self._add(conv, call)
            self.media.configured(call)
            self._push_timer(call.keepalive_deadline, call.id)  # type: ignore[arg-type]
            snapshot = call.to_wire()
            self.notify(call, notes.call_updated(call))
            for target in req.targets:
                route = self.router.resolve(caller.tenant_id, target)
                self._invite(conv, route, source=call.source, targets=[target])
            self._settle(conv)
        log.info("call created", extra={"call_id": call.id, "app_id": app.id, "targets": len(req.targets)})
        return snapshot

    def answer(self, caller: Caller, call_id: str, req: wire.Answer) -> None:
        call = self.own(caller, call_id)
        if is_app_hosted(req.media_config):
            self.require(caller, ACCESS_MEDIA)
            read_blob(req.media_config.get("blob"))
        next_state(call.state, CallEvent.ANSWER)
        with self.unit():
            call.media_config = req.media_config
            call.call_options = req.call_options
            call.callback_uri = req.callback_uri or call.callback_uri
            self.media.configured(call)
            call.keepalive_deadline = self.clock() + self.timeouts.keepalive_timeout
            self._push_timer(call.keepalive_deadline, call.id)
            self._accept(call)
        log.info("call answered", extra={"call_id": call.id, "app_id": call.app_id})

    def _accept(self, call: Call) -> None:
        """An incoming leg was answered (by its bot, or by the far end of an external leg)."""
        self._transition(call, CallEvent.ANSWER)
        call.answer_deadline = None
        self.notify(call, notes.call_updated(call))
        conv = self.convs[call.conversation_id]
        if call.ring_group is not None:
            group, call.ring_group = call.ring_group, None
            for sibling in self._legs(conv):
                if sibling.ring_group == group and sibling.state is CallState.INCOMING:
                    self._end(sibling, ANSWERED_ELSEWHERE)
        transfer = conv.transfer
        if transfer is not None and transfer.target == call.id:
            conv.transfer = None
            transferor = self.calls.get(transfer.transferor)
            self._connect(conv)
            if transferor is not None and transferor.state in LIVE_STATES:
                self._transition(transferor, CallEvent.TRANSFER_ACCEPTED)
                self.notify(transferor, notes.call_updated(transferor))
                self._end(transferor, results.TRANSFER_COMPLETED)
        else:
            self._connect(conv)

    def reject(self, caller: Caller, call_id: str, req: wire.Reject) -> None:
        call = self.own(caller, call_id)
        next_state(call.state, CallEvent.REJECT)
        with self.unit():
            call.callback_uri = req.callback_uri or call.callback_uri
            conv = self.convs[call.conversation_id]
            conv.failure = results.REJECT_REASONS.get(req.reason, results.DECLINED)
            self._end(call, results.REJECTED_BY_BOT, event=CallEvent.REJECT)
        log.info("call rejected", extra={"call_id": call.id, "reason": req.reason})

    def redirect(self, caller: Caller, call_id: str, req: wire.Redirect) -> None:
        call = self.own(caller, call_id)
        self.require(caller, INITIATE)
        next_state(call.state, CallEvent.REDIRECT)
        several = len(req.targets) > 1
        default = self.timeouts.redirect_multiple_timeout if several else self.timeouts.redirect_single_timeout
        timeout = float(req.timeout) if req.timeout is not None else default
        with self.unit():
            call.callback_uri = req.callback_uri or call.callback_uri
            self._transition(call, CallEvent.REDIRECT)
            conv = self.convs[call.conversation_id]
            ring_group = new_id() if several else None
            for target in req.targets:
                route = self.router.resolve(call.tenant_id, target)
                rung = self._invite(
                    conv, route, source=call.source, targets=[target], timeout=timeout, ring_group=ring_group
                )
                if rung is None:
                    continue
                for leg in self._legs(conv):
                    if leg.state in LIVE_STATES and not several:
                        leg.call_routes = [
                            {
                                "@odata.type": "#microsoft.graph.callRoute",
                                "original": call.identity,
                                "final": route.identity,
                                "routingType": "forwarded",
                            }
                        ]
                        self.touch(leg)
                        self.notify(leg, notes.call_updated(leg, callRoutes=leg.call_routes))
            self._end(call, results.REDIRECTED)
        log.info("call redirected", extra={"call_id": call.id, "targets": len(req.targets)})

    def transfer(self, caller: Caller, call_id: str, req: wire.Transfer) -> None:
        call = self.own(caller, call_id)
        self.require(caller, INITIATE)
        next_state(call.state, CallEvent.TRANSFER)
        conv = self.convs[call.conversation_id]
        if conv.transfer is not None:
            raise InvalidState("Another transfer is in progress in this call.")
        others = [leg for leg in self._legs(conv) if leg.id != call.id and leg.state in LIVE_STATES]
        if req.transferee is not None and req.transferee.get("participantId"):
            wanted = normalize_id(str(req.transferee["participantId"]))
            transferee = next((leg for leg in others if leg.my_participant_id == wanted), None)
            if transferee is None:
                raise BadRequest("'transferee.participantId' is not a participant of this call.")
        elif len(others) == 1:
            transferee = others[0]
        else:
            raise BadRequest("'transferee' with a participantId is required to transfer out of a group call.")
        with self.unit():
            self._transition(call, CallEvent.TRANSFER)
            self.notify(call, notes.call_updated(call))
            if transferee.is_external and self.gateway.transfer(transferee, req.transfer_target):
                conv.transfer = Transfer(transferor=call.id, transferee=transferee.id, target="")
                self._dirty_convs.add(conv.id)  # the far end transfers itself (REFER): no target leg here
            else:
                self._bridge_transfer(conv, call, transferee, req.transfer_target)
        log.info("call transfer started", extra={"call_id": call.id})

    def _bridge_transfer(self, conv: Conversation, call: Call, transferee: Call, transfer_target: JsonObj) -> None:
        """Transfer inside the node: ring (or dial) the target as a new leg of the conversation."""
        route = self.router.resolve(call.tenant_id, transfer_target)
        target = self._invite(
            conv,
            route,
            source={
                "@odata.type": "#microsoft.graph.participantInfo",
                "identity": transferee.identity,
                "participantId": transferee.my_participant_id,
            },
            targets=[transfer_target],
            incoming_context={
                "@odata.type": "#microsoft.graph.incomingContext",
                "sourceParticipantId": transferee.my_participant_id,
                "transferor": call.identity,
            },
        )
        if target is None:
            self._fail_transfer(call, route.failure or results.TRANSFER_TARGET_UNREACHABLE)
        else:
            conv.transfer = Transfer(transferor=call.id, transferee=transferee.id, target=target.id)
            self._dirty_convs.add(conv.id)

    def hang_up(self, caller: Caller, call_id: str) -> None:
        call = self.own(caller, call_id)
        if call.state is CallState.INCOMING:
            raise InvalidState("An incoming call that was not answered is ended with 'reject', not DELETE.")
        next_state(call.state, CallEvent.HANG_UP)
        with self.unit():
            self._transition(call, CallEvent.HANG_UP)
            self.notify(call, notes.call_updated(call))
            self._end(call, results.ENDED_BY_DELETE)
        log.info("call hung up", extra={"call_id": call.id})

    def keep_alive(self, caller: Caller, call_id: str) -> None:
        call = self.own(caller, call_id)
        next_state(call.state, CallEvent.KEEP_ALIVE)
        with self.unit():
            call.keepalive_deadline = self.clock() + self.timeouts.keepalive_timeout
            self._push_timer(call.keepalive_deadline, call.id)
            self._dirty_calls.add(call.id)

    def move_callback(self, call_id: str, url: str) -> None:
        """The bot answered a notification with 302/307: later notifications of this call go to `url`."""
        call = self.calls.get(call_id)
        if call is not None:
            with self.unit():
                call.callback_uri = url
                self._dirty_calls.add(call.id)

    # -- external legs (driven by a gateway) --------------------------------------------------------------
    def accept_inbound(
        self,
        *,
        app: Application,
        callee: JsonObj,
        caller: JsonObj,
        external: str,
        call_id: str | None = None,
    ) -> Call:
        """A call from outside (a phone on SIP) to `app`: make the caller's external leg (`establishing`) and
        ring the bot with the incoming-call notification. `callee` and `caller` are identitySets; `external` is
        the gateway's handle for the call; `call_id` (a new GUID) lets it name the leg in advance. Returns the external
        leg (it may already have ended, if the bot cannot be reached: the gateway then hears `ending` first)."""
        now = self.clock()
        conv = Conversation(id=new_id(), tenant_id=app.tenant_id)
        source = {"@odata.type": "#microsoft.graph.participantInfo", "identity": caller}
        target = {"@odata.type": "#microsoft.graph.invitationParticipantInfo", "identity": callee}
        ext = Call(
            id=call_id or new_id(),
            tenant_id=app.tenant_id,
            app_id="",
            direction=CallDirection.OUTGOING,
            state=CallState.ESTABLISHING,
            conversation_id=conv.id,
            my_participant_id=new_id(),
            source_id=self._new_source_id(),
            identity=caller,
            source=source,
            targets=[target],
            requested_modalities=["audio"],
            created_at=now,
            external=external,
        )
        ext.source["participantId"] = ext.my_participant_id
        with self.unit():
            self._add(conv, ext)
            leg = self._ring(conv, app, callee, source=ext.source, targets=[target])
            if leg is None:
                self._settle(conv)
        log.info("inbound call", extra={"call_id": ext.id, "app_id": app.id})
        return ext

    def external_answered(self, call_id: str) -> None:
        """The far end of an outgoing external leg answered."""
        ext = self.calls.get(call_id)
        if ext is None or not ext.is_external or ext.state is not CallState.INCOMING:
            return
        with self.unit():
            self._accept(ext)

    def external_ended(self, call_id: str, reason: ResultInfo) -> None:
        """The far end of an external leg hung up, declined, failed or could not be reached."""
        ext = self.calls.get(call_id)
        if ext is None or not ext.is_external:
            return
        with self.unit():
            if ext.state is CallState.INCOMING:
                self.convs[ext.conversation_id].failure = reason
            self._end(ext, reason)

    def media_failed(self, call_id: str, reason: ResultInfo) -> None:
        """A leg's application-hosted media could not be reached or was lost for good: end the leg."""
        call = self.calls.get(call_id)
        if call is None or call.state not in LIVE_STATES:
            return
        with self.unit():
            self._end(call, reason)

    def external_transfer_accepted(self, call_id: str) -> None:
        """The far end of external leg `call_id` took on the transfer it was asked for (it is calling the target)."""
        transferor = self._referring(call_id)
        if transferor is None or transferor.state is not CallState.TRANSFERRING:
            return
        with self.unit():
            self._transition(transferor, CallEvent.TRANSFER_ACCEPTED)
            self.notify(transferor, notes.call_updated(transferor))

    def external_transferred(self, call_id: str) -> None:
        """The far end of external leg `call_id` reached the transfer target: the transferor's leg ends 0/7015
        (as after a bridged transfer) and the external leg is released."""
        transferor = self._referring(call_id)
        if transferor is None:
            return
        with self.unit():
            self._clear_transfer(call_id)
            if transferor.state is CallState.TRANSFERRING:
                self._transition(transferor, CallEvent.TRANSFER_ACCEPTED)
                self.notify(transferor, notes.call_updated(transferor))
            self._end(transferor, results.TRANSFER_COMPLETED)
            ext = self.calls.get(call_id)
            if ext is not None:
                self._end(ext, results.TRANSFER_COMPLETED)

    def external_transfer_failed(self, call_id: str, reason: ResultInfo, *, bridge: JsonObj | None = None) -> None:
        """The transfer of external leg `call_id` failed for `reason`: the transferor is established again. With
        `bridge` (the transfer target), the far end refused to transfer itself and the node bridges instead."""
        transferor = self._referring(call_id)
        ext = self.calls.get(call_id)
        if transferor is None or ext is None:
            return
        with self.unit():
            conv = self._clear_transfer(call_id)
            if bridge is not None and transferor.state is CallState.TRANSFERRING:
                self._bridge_transfer(conv, transferor, ext, bridge)
            else:
                self._fail_transfer(transferor, reason)

    def _referring(self, call_id: str) -> Call | None:
        """The transferor of a transfer that external leg `call_id` carries out itself (REFER), if any."""
        ext = self.calls.get(call_id)
        conv = self.convs.get(ext.conversation_id) if ext is not None else None
        transfer = conv.transfer if conv is not None else None
        if transfer is None or transfer.transferee != call_id or transfer.target:
            return None
        return self.calls.get(transfer.transferor)

    def _clear_transfer(self, call_id: str) -> Conversation:
        conv = self.convs[self.calls[call_id].conversation_id]
        conv.transfer = None
        self._dirty_convs.add(conv.id)
        return conv

    # -- timers ------------------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        return self.units.next_deadline(self._timers)

    def fire_due(self, now: float) -> None:
        """End every call whose answer window or keepAlive deadline has passed (held off after a storage fault)."""
        self.units.fire_due(now, self._fire_due)

    def _fire_due(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            _, call_id = heapq.heappop(self._timers)
            call = self.calls.get(call_id)
            if call is None:
                continue
            with self.unit():
                if (
                    call.state is CallState.INCOMING
                    and call.answer_deadline is not None
                    and call.answer_deadline <= now
                ):
                    conv = self.convs[call.conversation_id]
                    conv.failure = results.NO_ANSWER
                    self._end(call, results.ANSWER_TIMEOUT)
                elif (
                    call.keepalive_deadline is not None and call.keepalive_deadline <= now and call.state in LIVE_STATES
                ):
                    self._end(call, results.KEEPALIVE_LAPSED)
        self._maybe_compact_timers()

    # -- internals ---------------------------------------------------------------------------------------
    def own(self, caller: Caller, call_id: str) -> Call:
        call = self.calls.get(normalize_id(call_id))
        if call is None or call.app_id != caller.app_id or call.tenant_id != caller.tenant_id:
            raise NotFound(f"No call with id {call_id!r}.")
        return call

    @staticmethod
    def require(caller: Caller, permission: str) -> None:
        if permission not in caller.roles:
            raise AccessDenied(f"The application needs the '{permission}' application permission for this action.")

    def _check_source(self, caller: Caller, source: JsonObj) -> None:
        inst_ref = source["identity"].get("applicationInstance")
        if inst_ref is not None:
            inst = self.directory.get_instance(str(inst_ref.get("id") or ""))
            if inst is None or inst.app_id != caller.app_id:
                raise AccessDenied("'source.identity.applicationInstance' is not an instance of this application.")
        app_ref = source["identity"].get("application")
        if app_ref is not None and normalize_id(str(app_ref.get("id") or "")) != caller.app_id:
            raise AccessDenied("'source.identity.application' must be the calling application itself.")

    @staticmethod
    def _new_source_id() -> str:
        return str(secrets.randbelow(2**31 - 2) + 1)

    def unit(self) -> AbstractContextManager[None]:
        """One atomic change. On an exception the store rolls back and so does the in-memory state; gateway and
        media side effects wait for the commit (calling.unitofwork)."""
        return self.units.unit()

    def _add(self, conv: Conversation, call: Call) -> None:
        self.convs[conv.id] = conv
        self.calls[call.id] = call
        conv.legs.append(call.id)
        self._dirty_calls.add(call.id)
        self._dirty_convs.add(conv.id)

    def _legs(self, conv: Conversation) -> list[Call]:
        return [self.calls[c] for c in conv.legs if c in self.calls]

    def touch(self, call: Call) -> None:
        call.version += 1
        self._dirty_calls.add(call.id)

    def _transition(self, call: Call, event: CallEvent) -> None:
        call.state = next_state(call.state, event)
        self.touch(call)

    def notify(self, call: Call, body: dict[str, Any]) -> None:
        if call.is_external:
            return  # a phone has no webhook: the gateway speaks for it
        url = call.callback_uri
        if not url:
            app = self.directory.get_app(call.app_id)
            url = None if app is None else app.callback_url
        if not url:
            log.warning("notification dropped: no callback URL", extra={"call_id": call.id})
            return
        self.sink.submit(
            order_key=call.id, app_id=call.app_id, tenant_id=call.tenant_id, url=url, body=orjson.dumps(body)
        )

    def _push_timer(self, deadline: float, call_id: str) -> None:
        first = self.next_deadline()
        heapq.heappush(self._timers, (deadline, call_id))
        if self.on_deadline is not None and (first is None or deadline < first):
            self.on_deadline(deadline)

    def _maybe_compact_timers(self) -> None:
        """Drop the deadlines of ended calls once they outnumber the live calls' (amortised O(1) per call): ended
        calls must not pile up in the heap until the next deadline comes due."""
        if len(self._timers) > 64 and len(self._timers) > 4 * len(self.calls):
            self._compact_timers()

    def _compact_timers(self) -> None:
        live = []
        for call in self.calls.values():
            for deadline in (call.answer_deadline, call.keepalive_deadline):
                if deadline is not None:
                    live.append((deadline, call.id))
        heapq.heapify(live)
        self._timers = live

    def _invite(
        self,
        conv: Conversation,
        route: Route,
        *,
        source: JsonObj,
        targets: list[JsonObj],
        timeout: float | None = None,
        ring_group: str | None = None,
        incoming_context: JsonObj | None = None,
    ) -> Call | None:
        """Ring a bot or dial an external party; None (and conv.failure set) when the route leads nowhere."""
        if route.app is not None:
            return self._ring(
                conv,
                route.app,
                route.identity,
                source=source,
                targets=targets,
                timeout=timeout,
                ring_group=ring_group,
                incoming_context=incoming_context,
            )
        if route.external:
            return self._dial(conv, route.identity, source=source, targets=targets, ring_group=ring_group)
        conv.failure = route.failure
        return None

    def _dial(
        self, conv: Conversation, identity: JsonObj, *, source: JsonObj, targets: list[JsonObj], ring_group: str | None
    ) -> Call:
        """Create a ringing external leg and have the gateway place the call."""
        leg = self._incoming_leg(
            conv,
            "",
            identity,
            source=source,
            targets=targets,
            ring_for=self.timeouts.dial_timeout,
            ring_group=ring_group,
        )
        leg.external = "dial"
        self.units.after_commit(self.gateway.dial, leg)
        return leg

    def _ring(
        self,
        conv: Conversation,
        app: Application,
        identity: JsonObj,
        *,
        source: JsonObj,
        targets: list[JsonObj],
        timeout: float | None = None,
        ring_group: str | None = None,
        incoming_context: JsonObj | None = None,
    ) -> Call | None:
        """Create an incoming leg for bot `app` and send it the incoming-call notification."""
        if (refusal := self.calls.refusal(app)) is not None:  # no webhook, or the bot is at its call quota
            conv.failure = refusal
            return None
        leg = self._incoming_leg(
            conv,
            app.id,
            identity,
            source=source,
            targets=targets,
            ring_for=timeout if timeout is not None else self.timeouts.answer_timeout,
            ring_group=ring_group,
        )
        leg.callback_uri = app.callback_url
        leg.incoming_context = incoming_context
        self.notify(leg, notes.call_created(leg))
        return leg

    def _incoming_leg(
        self,
        conv: Conversation,
        app_id: str,
        identity: JsonObj,
        *,
        source: JsonObj,
        targets: list[JsonObj],
        ring_for: float,
        ring_group: str | None,
    ) -> Call:
        """A new ringing leg in `conv` (a bot's, or an external one with an empty `app_id`), with its ring timer."""
        now = self.clock()
        leg = Call(
            id=new_id(),
            tenant_id=conv.tenant_id,
            app_id=app_id,
            direction=CallDirection.INCOMING,
            state=CallState.INCOMING,
            conversation_id=conv.id,
            my_participant_id=new_id(),
            source_id=self._new_source_id(),
            identity=identity,
            source=source,
            targets=targets,
            requested_modalities=["audio"],
            created_at=now,
            answer_deadline=now + ring_for,
            ring_group=ring_group,
        )
        self._add(conv, leg)
        self._push_timer(now + ring_for, leg.id)
        return leg

    def _connect(self, conv: Conversation) -> None:
        """Every establishing leg of a conversation with two or more live legs becomes established."""
        live = [leg for leg in self._legs(conv) if leg.state in LIVE_STATES]
        if len(live) < 2:
            return
        joined = False
        for leg in live:
            if leg.state is CallState.ESTABLISHING:
                self._transition(leg, CallEvent.CONNECTED)
                leg.connected = True
                joined = True
                self.units.media_connected(leg)
                if leg.is_external:
                    self.units.after_commit(self.gateway.connected, leg)
                self.notify(leg, notes.call_updated(leg, mediaState=leg.media_state()))
        if joined and conv.group:
            self.send_rosters(conv)

    def send_rosters(self, conv: Conversation) -> None:
        live = [leg for leg in self._legs(conv) if leg.state in LIVE_STATES]
        roster = [leg.participant() for leg in live]
        for leg in live:
            self.notify(leg, notes.roster_updated(leg, roster))

    def _fail_transfer(self, transferor: Call, reason: ResultInfo) -> None:
        if transferor.state in (CallState.TRANSFERRING, CallState.TRANSFER_ACCEPTED):
            self._transition(transferor, CallEvent.TRANSFER_FAILED)
            transferor.result_info = reason
            self.notify(transferor, notes.call_updated(transferor, resultInfo=reason.to_wire()))
            transferor.result_info = None

    def _end(self, call: Call, reason: ResultInfo, *, event: CallEvent = CallEvent.END) -> None:
        """Terminate one leg: final notification, removal, and the consequences for the rest."""
        self.units.media_ending(call)
        if call.is_external:
            self.units.after_commit(self.gateway.ending, call, reason)
        self._transition(call, event)
        call.result_info = reason
        self.notify(call, notes.call_deleted(call))
        del self.calls[call.id]
        self._maybe_compact_timers()
        self._dirty_calls.add(call.id)
        conv = self.convs[call.conversation_id]
        conv.legs.remove(call.id)
        self._dirty_convs.add(conv.id)
        self._after_leg_gone(conv, call)

    def _after_leg_gone(self, conv: Conversation, gone: Call) -> None:
        transfer = conv.transfer
        if transfer is not None:
            if gone.id == transfer.target:
                conv.transfer = None
                transferor = self.calls.get(transfer.transferor)
                if transferor is not None:
                    unreachable = gone.result_info is not None and gone.result_info.code == 480
                    reason = results.TRANSFER_TARGET_UNREACHABLE if unreachable else results.TRANSFER_FAILED
                    self._fail_transfer(transferor, reason)
            elif gone.id == transfer.transferee:
                conv.transfer = None
                target = self.calls.get(transfer.target)
                if target is not None and target.state is CallState.INCOMING:
                    self._end(target, results.REMOTE_HUNG_UP)
                    return
            elif gone.id == transfer.transferor:
                conv.transfer = None  # blind transfer: the target keeps ringing
        if gone.connected and conv.group:
            self.send_rosters(conv)
        if gone.result_info == results.MEDIA_STREAM_FAILED and not conv.group:
            conv.failure = gone.result_info  # the bot learns why its peer is gone, not just "hung up"
        self._settle(conv)

    def _settle(self, conv: Conversation) -> None:
        """A leg left alone ends: the call is over, or never connected."""
        if conv.id not in self.convs:
            return
        legs = self._legs(conv)
        if not legs:
            del self.convs[conv.id]
            self._dirty_convs.add(conv.id)
            return
        live = [leg for leg in legs if leg.state in LIVE_STATES]
        pending = [leg for leg in legs if leg.state is CallState.INCOMING]
        if not live and len(pending) > 1:
            # the caller left before anyone answered: stop ringing every invitation
            for leg in pending:
                if leg.id in self.calls:
                    self._end(leg, results.REMOTE_HUNG_UP)
            return
        candidates = live + pending
        if len(candidates) != 1:
            return
        lone = candidates[0]
        if lone.state is CallState.INCOMING:
            self._end(lone, results.REMOTE_HUNG_UP)
        elif lone.state in LIVE_STATES:
            if lone.connected and conv.failure == results.MEDIA_STREAM_FAILED:
                self._end(lone, conv.failure)
            elif lone.connected:
                self._end(lone, results.EVERYONE_LEFT if conv.group else results.REMOTE_HUNG_UP)
            else:
                self._end(lone, conv.failure or results.NO_ANSWER)
