"""CommunicationsClient: the stateful calling API — a calls collection kept from notifications, and events.

It owns a NotificationReceiver (serve `comms.receiver` with any ASGI server, or `serve_receiver`). Each
notification first updates its Call (in order per call), then the application's callbacks run, in order per
call but outside the receiver's lane, so a callback may await call actions (whose outcome arrives by later
notifications of the same call: running callbacks in the receiver's lane would deadlock).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from opencomms.sdk.builders import JsonObj
from opencomms.sdk.calling.call import ENDED, Call
from opencomms.sdk.client import CommsClient
from opencomms.sdk.jwks import DEFAULT_CALLBACK_ISSUER
from opencomms.sdk.notifications import Notification, ResourceKind
from opencomms.sdk.ordering import KeyedLanes
from opencomms.sdk.receiver import NotificationReceiver
from opencomms.sdk.roster import RosterChange

F = TypeVar("F", bound=Callable[..., Any])

Job = Callable[[], Any]

EVENTS = (
    "incoming_call",
    "call_updated",
    "participants_updated",
    "roster_changed",
    "participant_joined",
    "participant_left",
    "tone_received",
    "operation_completed",
    "call_ended",
)


class CommunicationsClient:
    """Calls of one bot application, with events. Callbacks may be plain functions or coroutine functions:

    - `on_incoming_call(call)`; `on_call_updated(call, notification)`; `on_participants_updated(call, participants)`
      (the current roster after each roster notification, classic or delta);
    - meetings: `on_roster_changed(call, change)` (a RosterChange: added, updated, removed),
      `on_participant_joined(call, participant)`, `on_participant_left(call, participant)`;
    - `on_tone_received(call, tone)`; `on_operation_completed(call, operation)`; `on_call_ended(call)`.
    """

    def __init__(
        self,
        client: CommsClient,
        *,
        callback_uri: str,
        app_id: str,
        jwks_url: str,
        issuer: str = DEFAULT_CALLBACK_ISSUER,
        keep_alive_interval: float = 900.0,
        tenants: Iterable[str] | None = None,
    ) -> None:
        self.client = client
        self.callback_uri = callback_uri
        self.app_id = app_id
        self.keep_alive_interval = keep_alive_interval
        self.receiver = NotificationReceiver(
            app_id=app_id, jwks_url=jwks_url, issuer=issuer, tenants=tenants, handler=self._on_notification
        )
        self.calls: dict[str, Call] = {}
        self._callbacks: dict[str, list[Callable[..., Any]]] = {name: [] for name in EVENTS}
        self._pump: KeyedLanes[Job] = KeyedLanes(_run_job, what="call event callback")
        self._joins_in_flight = 0

    # -- registration ----------------------------------------------------------------------------------
    def _on(self, event: str, fn: F) -> F:
        self._callbacks[event].append(fn)
        return fn

    def on_incoming_call(self, fn: F) -> F:
        return self._on("incoming_call", fn)

    def on_call_updated(self, fn: F) -> F:
        return self._on("call_updated", fn)

    def on_participants_updated(self, fn: F) -> F:
        return self._on("participants_updated", fn)

    def on_roster_changed(self, fn: F) -> F:
        return self._on("roster_changed", fn)

    def on_participant_joined(self, fn: F) -> F:
        return self._on("participant_joined", fn)

    def on_participant_left(self, fn: F) -> F:
        return self._on("participant_left", fn)

    def on_tone_received(self, fn: F) -> F:
        return self._on("tone_received", fn)

    def on_operation_completed(self, fn: F) -> F:
        return self._on("operation_completed", fn)

    def on_call_ended(self, fn: F) -> F:
        return self._on("call_ended", fn)

    # -- calls -----------------------------------------------------------------------------------------
    def _call(self, call_id: str) -> Call:
        call = self.calls.get(call_id)
        if call is None:
            # while a join request is unanswered, a new call may be that join: its roster mode is not known yet
            delta = None if self._joins_in_flight else False
            call = self.calls[call_id] = Call(self, call_id, delta_roster=delta)
        return call

    async def _settle_roster_mode(self, call: Call, delta: bool) -> None:
        if call.delta_roster is None:
            for change in await call.set_delta_roster(delta):
                self._fire_roster(call, change)
        await self._settle_orphans()

    async def _settle_orphans(self) -> None:
        if not self._joins_in_flight:
            for other in list(self.calls.values()):
                if other.delta_roster is None:  # not a join of ours after all
                    for change in await other.set_delta_roster(False):
                        self._fire_roster(other, change)

    async def create_call(
        self, targets: Sequence[JsonObj], *, media_config: JsonObj | None = None, **options: Any
    ) -> Call:
        """Place a call (options as `CommsClient.create_call`); returns the Call (state `establishing`).

        Await `call.wait_state("established")` for the answer.
        """
        info = await self.client.create_call(
            targets=targets, callback_uri=self.callback_uri, media_config=media_config, **options
        )
        call = self._call(info.id)
        call.info = info
        if call.state is None:
            call.state = info.state
        await self._settle_roster_mode(call, False)
        return call

    async def join_meeting(
        self,
        *,
        join_web_url: str | None = None,
        join_meeting_id: str | None = None,
        passcode: str | None = None,
        media_config: JsonObj | None = None,
        delta_roster: bool = False,
        **options: Any,
    ) -> Call:
        """Join a meeting by its `join_web_url` (parsed as Microsoft's samples do; raises JoinUrlError) or by
        `join_meeting_id` + `passcode` (other options as `CommsClient.join_meeting`). Returns the Call
        (`establishing`; a guest may wait in the lobby): await `call.wait_state("established")`."""
        self._joins_in_flight += 1
        try:
            info = await self.client.join_meeting(
                join_web_url=join_web_url,
                join_meeting_id=join_meeting_id,
                passcode=passcode,
                callback_uri=self.callback_uri,
                media_config=media_config,
                delta_roster=delta_roster,
                **options,
            )
            call = self._call(info.id)  # while still in flight: a new Call's roster mode is left open
        except BaseException:
            self._joins_in_flight -= 1
            await self._settle_orphans()
            raise
        self._joins_in_flight -= 1
        call.info = info
        if call.state is None:
            call.state = info.state
        await self._settle_roster_mode(call, delta_roster)
        return call

    async def join(self) -> None:
        """Wait until every received notification and every callback it caused has been handled."""
        await self.receiver.join()
        await self._pump.join()

    async def close(self) -> None:
        for call in self.calls.values():
            call.close()
        await self._pump.close()
        await self.receiver.aclose()

    async def __aenter__(self) -> CommunicationsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- notifications ---------------------------------------------------------------------------------
    async def _on_notification(self, note: Notification) -> None:
        if not note.call_id:
            return
        if note.call_id not in self.calls and note.change_type == "deleted" and note.kind is not ResourceKind.CALL:
            return  # an operation of a call we no longer track
        call = self._call(note.call_id)
        await call.apply(note)
        self._emit(call, note)
        if call.terminated.is_set():
            self.calls.pop(call.id, None)

    def _emit(self, call: Call, note: Notification) -> None:
        if note.kind is ResourceKind.CALL:
            if note.is_incoming_call:
                self._fire("incoming_call", call)
            tone = note.tone
            if tone is not None:
                self._fire("tone_received", call, tone)
            else:
                self._fire("call_updated", call, note)
            if note.state == ENDED:
                self._fire("call_ended", call)
        elif note.kind is ResourceKind.PARTICIPANTS:
            for change in call.roster_changes:
                self._fire_roster(call, change)
        elif note.kind is ResourceKind.OPERATION:
            op = note.operation
            if op is not None and op.finished:
                self._fire("operation_completed", call, op)

    def _fire_roster(self, call: Call, change: RosterChange) -> None:
        self._fire("participants_updated", call, list(call.participants))
        if change.empty:
            return
        self._fire("roster_changed", call, change)
        for p in change.added:
            self._fire("participant_joined", call, p)
        for p in change.removed:
            self._fire("participant_left", call, p)

    def _fire(self, event: str, *args: Any) -> None:
        call: Call = args[0]
        for fn in self._callbacks[event]:
            self._pump.submit(call.id, _bind(fn, args))


def _bind(fn: Callable[..., Any], args: tuple[Any, ...]) -> Job:
    return lambda: fn(*args)


def _run_job(job: Job) -> Any:
    return job()  # a coroutine function's awaitable is awaited by the lane


__all__ = ["CommunicationsClient"]
