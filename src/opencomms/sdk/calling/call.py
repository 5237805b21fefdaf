"""Call: one call leg of the bot, kept current from its notifications; actions await their outcome.

State, roster, tones and operation outcomes are applied in notification order (`apply`, called from the
receiver's per-call lane), which wakes whatever awaits them: `answer` resolves once the call is established,
`play_prompt` once its operation finished (or raises OperationFailed), `hang_up` once it is terminated.

In a meeting, roster notifications (classic or delta) are merged into `roster` (see sdk/roster.py); a roster
that arrives before the join request answered (so before the SDK knows whether it asked for delta rosters) waits
until it is known. Participant control (mute, remove, admit, hold music, recording status, invite) is here too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from opencomms.sdk.builders import JsonObj
from opencomms.sdk.calling.errors import CallEnded, OperationFailed
from opencomms.sdk.models import CallInfo, Operation, Participant, ResultInfo, ToneInfo
from opencomms.sdk.notifications import Notification, ResourceKind
from opencomms.sdk.roster import Roster, RosterChange

if TYPE_CHECKING:
    from opencomms.sdk.calling.client import CommunicationsClient

ENDED = "terminated"


class Call:
    """A call leg of this bot. Obtain it from `CommunicationsClient` (incoming calls, `create_call`)."""

    def __init__(
        self,
        comms: CommunicationsClient,
        call_id: str,
        info: CallInfo | None = None,
        *,
        delta_roster: bool | None = False,
    ) -> None:
        self.comms = comms
        self.id = call_id
        self.info = info
        self.state: str | None = info.state if info is not None else None
        self.result_info: ResultInfo | None = None
        self.participants: list[Participant] = []
        """The current roster (merged from classic or delta roster notifications)."""
        self.roster = Roster()
        self.delta_roster = delta_roster
        """Whether this leg asked for delta rosters; None until the join request answered."""
        self._early_rosters: list[Notification] = []
        self.roster_changes: list[RosterChange] = []
        """Changes applied by the notification being handled (read by CommunicationsClient for its events)."""
        self.terminated = asyncio.Event()
        self._changed = asyncio.Condition()
        self._ops: dict[str, asyncio.Future[Operation]] = {}
        self._finished: dict[str, Operation] = {}
        self._tones: asyncio.Queue[ToneInfo | None] = asyncio.Queue()
        self._keepalive: asyncio.Task[None] | None = None
        self._transfer_failure: ResultInfo | None = None

    def __repr__(self) -> str:
        return f"Call(id={self.id!r}, state={self.state!r})"

    # -- applying notifications (in order, from the receiver's lane) ---------------------------------------
    async def apply(self, note: Notification) -> None:
        if note.kind is ResourceKind.CALL:
            await self._apply_call(note)
        elif note.kind is ResourceKind.PARTICIPANTS:
            self.roster_changes = []
            if self.delta_roster is None:
                self._early_rosters.append(note)
            else:
                await self._apply_roster(note)
        elif note.kind is ResourceKind.OPERATION:
            op = note.operation
            if op is not None and op.finished:
                self._finish_op(op)

    async def _apply_roster(self, note: Notification) -> None:
        change = self.roster.apply(note.participants, whole=not self.delta_roster)
        self.roster_changes.append(change)
        async with self._changed:
            self.participants = self.roster.participants
            self._changed.notify_all()

    async def set_delta_roster(self, delta: bool) -> list[RosterChange]:
        """Fix the roster mode (once the join request answered); applies rosters that came before, returns
        their changes."""
        self.delta_roster = delta
        early, self._early_rosters = self._early_rosters, []
        changes: list[RosterChange] = []
        for note in early:
            self.roster_changes = []
            await self._apply_roster(note)
            changes.extend(self.roster_changes)
        self.roster_changes = []
        return changes

    async def wait_roster(
        self, check: Callable[[list[Participant]], bool], *, timeout: float | None = 10.0
    ) -> list[Participant]:
        """Wait until the current roster satisfies `check` (raises CallEnded if the call ends first)."""

        def reached() -> bool:
            return check(self.participants) or self.terminated.is_set()

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(reached), timeout)
        if not check(self.participants):
            raise CallEnded(self.id, self.result_info)
        return self.participants

    async def _apply_call(self, note: Notification) -> None:
        if note.change_type == "created" and note.call is not None:
            self.info = note.call
        if note.is_incoming_call and self.delta_roster is None:
            await self.set_delta_roster(False)
        tone = note.tone
        if tone is not None:
            self._tones.put_nowait(tone)
        state = note.state
        if note.result_info is not None:
            self.result_info = note.result_info
            if state == "established" and note.change_type == "updated":
                self._transfer_failure = note.result_info  # a failed transfer: the call goes on
        async with self._changed:
            if state is not None:
                self.state = state
            self._changed.notify_all()
        if state == "established" and self._keepalive is None:
            self._keepalive = asyncio.get_running_loop().create_task(self._keep_alive())
        if state == ENDED or note.change_type == "deleted":
            self._ended()

    def _ended(self) -> None:
        self.state = ENDED
        self.terminated.set()
        self._tones.put_nowait(None)
        if self._keepalive is not None:
            self._keepalive.cancel()
        for fut in self._ops.values():
            if not fut.done():
                fut.set_exception(CallEnded(self.id, self.result_info))
        self._ops.clear()

    def _finish_op(self, op: Operation) -> None:
        fut = self._ops.pop(op.id, None)
        if fut is None:
            self._finished[op.id] = op  # the notification beat the REST answer
        elif not fut.done():
            fut.set_result(op)

    async def _keep_alive(self) -> None:
        interval = self.comms.keep_alive_interval
        while not self.terminated.is_set():
            await asyncio.sleep(interval)
            if self.terminated.is_set():
                return
            with contextlib.suppress(Exception):
                await self.comms.client.keep_alive(self.id)

    def close(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()

    # -- waiting ---------------------------------------------------------------------------------------
    async def wait_state(self, *states: str, timeout: float | None = 10.0) -> str:
        """Wait until the call is in one of `states`; raises CallEnded if it ends first (unless waiting for it)."""
        wanted = set(states)

        def reached() -> bool:
            return self.state in wanted or self.terminated.is_set()

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(reached), timeout)
        if self.state not in wanted:
            raise CallEnded(self.id, self.result_info)
        return self.state or ""

    async def wait_terminated(self, timeout: float | None = 10.0) -> ResultInfo | None:
        await asyncio.wait_for(self.terminated.wait(), timeout)
        return self.result_info

    async def _outcome(self, op: Operation, timeout: float | None, what: str) -> Operation:
        if not op.finished:
            early = self._finished.pop(op.id, None)
            if early is not None:
                op = early
            elif self.terminated.is_set():
                raise CallEnded(self.id, self.result_info)
            else:
                fut: asyncio.Future[Operation] = asyncio.get_running_loop().create_future()
                self._ops[op.id] = fut
                try:
                    op = await asyncio.wait_for(asyncio.shield(fut), timeout)
                finally:
                    self._ops.pop(op.id, None)
        if op.failed:
            raise OperationFailed(op, op.result_info, what)
        return op

    # -- call control ----------------------------------------------------------------------------------
    async def answer(self, media_config: JsonObj | None = None, *, timeout: float | None = 10.0) -> None:
        """Answer an incoming call; returns once it is established."""
        await self.comms.client.answer(self.id, callback_uri=self.comms.callback_uri, media_config=media_config)
        await self.wait_state("established", timeout=timeout)

    async def reject(self, reason: str = "none", *, timeout: float | None = 10.0) -> None:
        await self.comms.client.reject(self.id, reason)
        await self.wait_terminated(timeout)

    async def redirect(
        self, targets: Sequence[JsonObj], *, ring_timeout: int | None = None, timeout: float | None = 10.0
    ) -> None:
        """Send the incoming call elsewhere; this leg ends at once."""
        await self.comms.client.redirect(self.id, targets, timeout=ring_timeout)
        await self.wait_terminated(timeout)

    async def transfer(
        self, target: JsonObj, transferee: JsonObj | None = None, *, timeout: float | None = 60.0
    ) -> ResultInfo | None:
        """Transfer the other party to `target`; returns once our leg ended (the transfer completed).

        Raises OperationFailed (with the failure's resultInfo) if the transfer failed and the call went on.
        """
        self._transfer_failure = None
        await self.comms.client.transfer(self.id, target, transferee)

        def settled() -> bool:
            return self.terminated.is_set() or self._transfer_failure is not None

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(settled), timeout)
        if not self.terminated.is_set():
            raise OperationFailed(None, self._transfer_failure, "transfer")
        return self.result_info

    async def hang_up(self, *, timeout: float | None = 10.0) -> ResultInfo | None:
        """End the call (DELETE); returns its final resultInfo once terminated."""
        if not self.terminated.is_set():
            await self.comms.client.delete_call(self.id)
        return await self.wait_terminated(timeout)

    async def keep_alive(self) -> None:
        await self.comms.client.keep_alive(self.id)

    async def list_participants(self) -> list[Participant]:
        """Read the roster from the node (`participants` is kept current by roster notifications in group calls)."""
        self.participants = await self.comms.client.list_participants(self.id)
        return self.participants

    async def refresh(self) -> CallInfo:
        """Read the call from the node."""
        self.info = await self.comms.client.get_call(self.id)
        return self.info

    # -- media -----------------------------------------------------------------------------------------
    async def play_prompt(
        self, prompts: Sequence[JsonObj], *, client_context: str | None = None, timeout: float | None = 120.0
    ) -> Operation:
        """Play prompts; returns the completed operation (raises OperationFailed, CallEnded)."""
        op = await self.comms.client.play_prompt(self.id, prompts, client_context=client_context)
        return await self._outcome(op, timeout, "playPrompt")

    async def record_response(self, *, timeout: float | None = 300.0, **options: Any) -> Operation:
        """Record; options as `CommsClient.record_response`. The result has recording_location and its token."""
        op = await self.comms.client.record_response(self.id, **options)
        return await self._outcome(op, timeout, "recordResponse")

    async def download_recording(self, op: Operation) -> bytes:
        if not op.recording_location or not op.recording_access_token:
            raise ValueError("the operation carries no recording")
        data: bytes = await self.comms.client.download_recording(op.recording_location, op.recording_access_token)
        return data

    async def subscribe_to_tone(self) -> Operation:
        op = await self.comms.client.subscribe_to_tone(self.id)
        return await self._outcome(op, 10.0, "subscribeToTone")

    async def send_dtmf_tones(
        self, tones: str | Sequence[str], *, delay_between_tones_ms: int | None = None, timeout: float | None = 60.0
    ) -> Operation:
        op = await self.comms.client.send_dtmf_tones(self.id, tones, delay_between_tones_ms=delay_between_tones_ms)
        return await self._outcome(op, timeout, "sendDtmfTones")

    async def cancel_media_processing(self) -> Operation:
        op = await self.comms.client.cancel_media_processing(self.id)
        return await self._outcome(op, 10.0, "cancelMediaProcessing")

    async def mute(self) -> Operation:
        return await self._outcome(await self.comms.client.mute(self.id), 10.0, "mute")

    async def unmute(self) -> Operation:
        return await self._outcome(await self.comms.client.unmute(self.id), 10.0, "unmute")

    # -- meetings: participant control --------------------------------------------------------------------
    async def mute_participant(self, participant_id: str) -> Operation:
        """Server-mute a participant of this meeting (its audio leaves the mix)."""
        op = await self.comms.client.mute_participant(self.id, participant_id)
        return await self._outcome(op, 10.0, "mute participant")

    async def remove_participant(self, participant_id: str) -> None:
        """End a participant's leg (the tenant must allow this app to remove participants)."""
        await self.comms.client.remove_participant(self.id, participant_id)

    async def admit(self, participant_id: str) -> Operation:
        """#opencomms: admit a lobby participant."""
        return await self._outcome(await self.comms.client.admit_participant(self.id, participant_id), 10.0, "admit")

    async def admit_all(self) -> Operation:
        """#opencomms: admit everyone in the lobby."""
        return await self._outcome(await self.comms.client.admit_all(self.id), 10.0, "admitAll")

    async def update_recording_status(self, status: str) -> Operation:
        """`recording`, `notRecording` or `failed`: every participant's recordingInfo changes."""
        op = await self.comms.client.update_recording_status(self.id, status)
        return await self._outcome(op, 10.0, "updateRecordingStatus")

    async def start_hold_music(
        self, participant_id: str, *, custom_prompt: JsonObj | None = None, timeout: float | None = 10.0
    ) -> Operation:
        """Put a participant on hold with music; returns once the operation finished."""
        op = await self.comms.client.start_hold_music(self.id, participant_id, custom_prompt=custom_prompt)
        return await self._outcome(op, timeout, "startHoldMusic")

    async def stop_hold_music(self, participant_id: str, *, timeout: float | None = 10.0) -> Operation:
        op = await self.comms.client.stop_hold_music(self.id, participant_id)
        return await self._outcome(op, timeout, "stopHoldMusic")

    async def invite(self, targets: Sequence[JsonObj], *, timeout: float | None = 60.0) -> Operation:
        """participants/invite (up to 5 targets); returns once the invitation finished."""
        op = await self.comms.client.invite_participants(self.id, targets)
        return await self._outcome(op, timeout, "invite")

    # -- tones -----------------------------------------------------------------------------------------
    async def next_tone(self, timeout: float | None = None) -> ToneInfo:
        """The next key pressed by the other side (after subscribe_to_tone); raises CallEnded if it ends."""
        tone = await asyncio.wait_for(self._tones.get(), timeout)
        if tone is None:
            self._tones.put_nowait(None)  # keep the end visible to other readers
            raise CallEnded(self.id, self.result_info)
        return tone

    async def read_keys(self, count: int, *, timeout: float | None = None, until: Iterable[str] = ()) -> str:
        """Collect up to `count` keys (stops early at a key in `until`, which is not included)."""
        stop = set(until)
        keys = ""
        while len(keys) < count:
            key = (await self.next_tone(timeout)).key
            if key in stop:
                break
            keys += key
        return keys

    async def tones(self) -> AsyncIterator[ToneInfo]:
        """Every received tone, until the call ends."""
        while True:
            try:
                yield await self.next_tone()
            except CallEnded:
                return
