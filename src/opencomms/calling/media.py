"""MediaService: service-hosted media operations on call legs, with Graph's commsOperation semantics.

Owns each call's FIFO media queue (playPrompt, recordResponse), tone subscriptions, sendDtmfTones, mute, and
the operation documents and notifications. Quotas: at most `max_queued_ops` prompt/record operations per call
(403 beyond), and prompts are loaded lazily, only for the first LOOKAHEAD operations of a call's queue; the audio an
operation holds is counted per call (`max_call_prompt_bytes`, else 413/9111) and in the node's MemoryBudget (else
503/9110), and given back (tasks cancelled, references dropped) when the operation finishes, is cancelled or its
call ends. It drives the media engine by commands (`EnginePort.call`, run on
the engine thread) and reacts to the engine's events (`on_events`, on the event loop). Prompt audio comes from
a PromptLoader (fetching and text-to-speech happen in background tasks; the REST call never waits for them).
It never touches audio samples itself, except to hand a finished recording to the RecordingStore.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from opencomms.calling import notifications as notes
from opencomms.calling.model import Call, JsonObj
from opencomms.calling.recordings import RecordingStore
from opencomms.calling.service import ACCESS_MEDIA, Caller, CallService
from opencomms.config import QuotaConfig
from opencomms.domain import results
from opencomms.domain.calls import CallState
from opencomms.domain.errors import InvalidState, QuotaExceeded
from opencomms.domain.ids import new_id
from opencomms.domain.media import PromptError, PromptFailure, PromptSpec, RecordStop
from opencomms.domain.operations import OP_FSM, OpEvent, OpKind, OpStatus
from opencomms.domain.results import ResultInfo
from opencomms.media import engine as eng
from opencomms.media.budget import MemoryBudget, heap_trimmer
from opencomms.media.engine import commands as cmd
from opencomms.media.prompts import beep
from opencomms.media.wav import encode_wav
from opencomms.tasks import TaskSet
from opencomms.wire import media as wire
from opencomms.wire.calls import is_app_hosted
from opencomms.wire.tones import key_for_tone, tone_name

log = logging.getLogger("opencomms.media")

Audio = npt.NDArray[np.int16]

MIN_TONE_GAP_MS = 60
"""Shortest pause between sent tones: shorter gaps would merge two presses of the same key at the receiver."""
DEFAULT_TONE_GAP_MS = 100
TONE_MS = 100
LOOKAHEAD = 2
"""Operations at the head of a call's queue whose prompts are loaded: the one playing and the next one."""
TRIM_AFTER_BYTES = 16 << 20
"""Once this much prompt audio has been released, the heap is trimmed (see media.budget.heap_trimmer)."""
LOAD_WINDOW = 4
"""Prompts of one operation loaded at once (they are loaded in order, this many in parallel)."""


class EnginePort(Protocol):
    """How the service reaches the media engine: `call(command)` runs `command.apply(engine)` on the engine's side
    (its thread, or the media process), in order."""

    capacity: int
    shares_process: bool
    """The engine runs in this process (its thread): `InThread` commands work (not with `[media] process`)."""

    def call(self, command: cmd.EngineCommand[None]) -> None: ...


class LegObserver(Protocol):
    """Something else that follows media legs (application-hosted media): told after a leg joins the engine,
    before it leaves, and of every engine event."""

    def connected(self, call: Call) -> None: ...

    def ending(self, call: Call) -> None: ...

    def on_events(self, events: Sequence[eng.MediaEvent]) -> None: ...


class PromptLoader(Protocol):
    async def load(self, spec: PromptSpec) -> Audio: ...

    def prefetch(self, specs: Iterable[PromptSpec]) -> None: ...


# resultInfo of a failed prompt, by failure kind (subcodes 91xx are ours, documented in docs/architecture.md)
PROMPT_FAILURES: dict[PromptFailure, tuple[int, int]] = {
    PromptFailure.BAD_URL: (400, 9101),
    PromptFailure.FORBIDDEN_ADDRESS: (403, 9102),
    PromptFailure.UNREACHABLE: (502, 9103),
    PromptFailure.TIMEOUT: (504, 9104),
    PromptFailure.HTTP_STATUS: (502, 9105),
    PromptFailure.TOO_BIG: (413, 9106),
    PromptFailure.NOT_WAV: (415, 9107),
    PromptFailure.TOO_LONG: (413, 9108),
    PromptFailure.TTS_FAILED: (500, 9109),
    PromptFailure.OVER_BUDGET: (503, 9110),
}

RECORD_RESULTS: dict[RecordStop, ResultInfo] = {
    RecordStop.MAX_DURATION: results.RECORD_MAX_DURATION,
    RecordStop.INITIAL_SILENCE: results.RECORD_INITIAL_SILENCE,
    RecordStop.MAX_SILENCE: results.RECORD_MAX_SILENCE,
    RecordStop.STOP_TONE: results.RECORD_STOP_TONE,
}


def prompt_failure(exc: PromptError) -> ResultInfo:
    code, subcode = PROMPT_FAILURES[exc.failure]
    return ResultInfo(code, subcode, f"Action failed, a prompt could not be played: {exc.message}")


_DEFERRABLE = (results.PROMPT_BUDGET_EXHAUSTED.subcode, results.PROMPT_CALL_QUOTA.subcode)
"""Failures of an operation that is not the head yet that are retried when it is: its audio did not fit beside
what the head holds."""


class _Refused(Exception):
    """A loaded prompt would exceed a quota: the operation fails with `result`."""

    def __init__(self, result: ResultInfo) -> None:
        super().__init__(result.message)
        self.result = result


@dataclass(eq=False, slots=True)
class MediaOp:
    """One operation of one call, while it is not finished."""

    id: str
    call_id: str
    kind: OpKind
    client_context: str | None
    status: OpStatus = OpStatus.RUNNING
    prompts: list[PromptSpec] = field(default_factory=list)
    record: wire.RecordResponse | None = None
    keys: str = ""
    gap_ms: int = DEFAULT_TONE_GAP_MS
    audio: list[Audio] | None = None
    failure: ResultInfo | None = None
    loading: asyncio.Task[None] | None = None
    started: bool = False
    held: int = 0
    """Bytes of prompt audio this operation holds (counted in the call's and the node's budget)."""
    deferred: bool = False
    """Its audio did not fit while it was next in line: it loads again once it is the head."""

    @property
    def url(self) -> str:
        return f"/communications/calls/{self.call_id}/operations/{self.id}"

    def to_wire(self, result: ResultInfo | None = None, **extra: Any) -> JsonObj:
        body: JsonObj = {
            "@odata.type": self.kind.odata_type,
            "id": self.id,
            "status": self.status.value,
            "clientContext": self.client_context,
            "resultInfo": None if result is None else result.to_wire(),
        }
        if self.kind is OpKind.RECORD:
            body["recordingLocation"] = None
            body["recordingAccessToken"] = None
        if self.kind is OpKind.SEND_TONES:
            body["completionReason"] = None
        body.update(extra)
        return body


@dataclass(eq=False, slots=True)
class CallMedia:
    """Media state of one leg (in memory: the engine's state does not survive a restart either)."""

    queue: deque[MediaOp] = field(default_factory=deque)
    tones: dict[str, MediaOp] = field(default_factory=dict)
    subscribed: bool = False
    tone_seq: int = 0
    in_engine: bool = False
    held: int = 0
    """Bytes of prompt audio the call's queued operations hold."""
    op_ids: list[str] = field(default_factory=list)
    """Every operation created on the call (their documents are deleted when it ends)."""


class MediaService:
    def __init__(
        self,
        calls: CallService,
        engine: EnginePort,
        prompts: PromptLoader,
        recordings: RecordingStore,
        *,
        public_url: str,
        budget: MemoryBudget | None = None,
        max_queued_ops: int = 0,
        max_call_prompt_bytes: int = 0,
    ) -> None:
        self.calls = calls
        self.engine = engine
        self.prompts = prompts
        self.recordings = recordings
        self.public_url = public_url.rstrip("/")
        self.budget = budget if budget is not None else MemoryBudget(0)
        self.max_queued_ops = max_queued_ops
        """playPrompt/recordResponse operations one call may have queued or running (0: no limit)."""
        self.max_call_prompt_bytes = max_call_prompt_bytes
        """Prompt audio one call's operations may hold (0: no limit)."""
        self._released = 0
        self._trim: asyncio.TimerHandle | None = None
        self._media: dict[str, CallMedia] = {}
        self._ops: dict[str, MediaOp] = {}
        self._legs_in_engine = 0
        self._loads = TaskSet("media-load")
        """Prompt loading tasks (one per operation, also referenced as op.loading)."""
        self._beep = beep()
        self.observers: list[LegObserver] = []

    # -- lifecycle ---------------------------------------------------------------------------------------
    def configure_quotas(self, budget: MemoryBudget, config: QuotaConfig) -> None:
        """Apply the node's quotas (`budget` is the one the PromptLibrary reserves its loads from)."""
        self.budget = budget
        self.max_queued_ops = config.queued_media_ops_per_call
        self.max_call_prompt_bytes = config.queued_prompt_mb_per_call << 20

    async def aclose(self) -> None:
        """Stop loading prompts: cancel the loading tasks and wait for them (the node is stopping)."""
        await self._loads.close()

    async def load(self) -> None:
        """After a restart: fail the operations the old process left running. Their calls are loaded from the store
        (which brings their media back, as for any call loaded later); operations of calls that ended are dropped."""
        for key, doc in list(self.calls.store.scan("operation")):
            call_id, _, op_id = key.partition("/")
            call = await self.calls.find(call_id)
            if call is None:
                self.calls.store.delete("operation", key)  # its call ended while the node was down
                continue
            self._media.setdefault(call_id, CallMedia()).op_ids.append(op_id)
            if doc.get("status") not in (OpStatus.RUNNING.value, OpStatus.NOT_STARTED.value):
                continue
            op = MediaOp(op_id, call_id, OpKind(doc["@odata.type"].rsplit(".", 1)[-1]), doc.get("clientContext"))
            with self.calls.unit():
                self._finish(op, OpEvent.FAIL, results.MEDIA_INTERRUPTED, call=call)

    @property
    def stats(self) -> dict[str, int]:
        budget = self.budget.stats
        return {
            "legs": self._legs_in_engine,
            "operations": len(self._ops),
            "prompt_bytes_held": budget.held,
            "prompt_bytes_peak": budget.peak,
            "prompt_budget_refused": budget.refused,
        }

    # -- hooks from CallService (after a command's commit) -----------------------------------------------
    def configured(self, call: Call) -> None:
        config = call.media_config or {}
        if is_app_hosted(config):
            return
        specs = [
            PromptSpec(uri=item["uri"], resource_id=item.get("resourceId") or None)
            for item in config.get("preFetchMedia") or []
        ]
        if specs:
            self.prompts.prefetch(specs)

    def connected(self, call: Call) -> None:
        cm = self._media.setdefault(call.id, CallMedia())
        if cm.in_engine:
            return
        if self._legs_in_engine >= self.engine.capacity:
            log.warning("media engine full: call has no media", extra={"call_id": call.id})
            return
        cm.in_engine = True
        self._legs_in_engine += 1
        source = int(call.source_id) if call.source_id.isdigit() else 0  # the roster's sourceId (a number)
        self.engine.call(cmd.ConnectLeg(call.id, call.conversation_id, source, call.muted, bool(call.app_id)))
        for observer in self.observers:
            observer.connected(call)

    def moved(self, leg_id: str) -> None:
        """Leg `leg_id` leaves its conversation without ending (participants/invite with replacesCallId): its
        engine leg stays; `connected` puts it in its new conversation's mix."""
        cm = self._media.pop(leg_id, None)
        if cm is not None and cm.in_engine:
            self._legs_in_engine -= 1

    def muted(self, leg_id: str, muted: bool) -> None:
        cm = self._media.get(leg_id)
        if cm is not None and cm.in_engine:
            self.engine.call(cmd.SetMuted(leg_id, muted))

    def server_muted(self, leg_id: str, muted: bool) -> None:
        """A meeting participant muted (or unmuted) by someone else: its audio leaves (or rejoins) the mix; kept
        apart from the leg's own mute in the engine."""
        cm = self._media.get(leg_id)
        if cm is not None and cm.in_engine:
            self.engine.call(cmd.SetServerMuted(leg_id, muted))

    def ending(self, call: Call) -> None:
        for observer in self.observers:
            observer.ending(call)
        cm = self._media.pop(call.id, None)
        if cm is not None:
            for op in [*cm.queue, *cm.tones.values()]:
                self._cancel_loading(op)
                self._finish(op, OpEvent.FAIL, results.MEDIA_CALL_ENDED, call=call)
            if cm.in_engine:
                self._legs_in_engine -= 1
                self.engine.call(cmd.RemoveLeg((call.id,)))
            # nobody reads them any more (the call is gone): deleted with the store's next write
            self.calls.store.delete_later("operation", [f"{call.id}/{op_id}" for op_id in cm.op_ids])
        self.recordings.call_ended(call.id)

    # -- REST actions ------------------------------------------------------------------------------------
    def play_prompt(self, caller: Caller, call_id: str, req: wire.PlayPrompt) -> JsonObj:
        call, cm = self._service_hosted(caller, call_id, "playPrompt")
        self._check_depth(cm)
        op = MediaOp(new_id(), call.id, OpKind.PLAY_PROMPT, req.client_context, prompts=list(req.prompts))
        return self._enqueue(call, cm, op)

    def record_response(self, caller: Caller, call_id: str, req: wire.RecordResponse) -> JsonObj:
        call, cm = self._service_hosted(caller, call_id, "recordResponse")
        self.calls.require(caller, ACCESS_MEDIA)
        self._check_depth(cm)
        op = MediaOp(new_id(), call.id, OpKind.RECORD, req.client_context, prompts=list(req.prompts), record=req)
        if req.barge_in_allowed and cm.queue and cm.queue[0].started:
            with self.calls.unit():
                self._stop_running(call, cm, cm.queue.popleft())
        return self._enqueue(call, cm, op, front=req.barge_in_allowed)

    def cancel_media_processing(self, caller: Caller, call_id: str, client_context: str | None) -> JsonObj:
        call, cm = self._service_hosted(caller, call_id, "cancelMediaProcessing")
        op = MediaOp(new_id(), call.id, OpKind.CANCEL_MEDIA, client_context, status=OpStatus.COMPLETED)
        with self.calls.unit():
            pending = list(cm.queue)
            cm.queue.clear()
            for item in pending:
                self._stop_running(call, cm, item)
            self._save(op, op.to_wire(results.MEDIA_COMPLETED))
        log.info("media processing cancelled", extra={"call_id": call.id, "count": len(pending)})
        return op.to_wire(results.MEDIA_COMPLETED)

    def subscribe_to_tone(self, caller: Caller, call_id: str, client_context: str | None) -> JsonObj:
        call, cm = self._service_hosted(caller, call_id, "subscribeToTone")
        self.calls.require(caller, ACCESS_MEDIA)
        cm.subscribed = True
        op = MediaOp(new_id(), call.id, OpKind.SUBSCRIBE_TONES, client_context, status=OpStatus.COMPLETED)
        with self.calls.unit():
            self._save(op, op.to_wire(results.MEDIA_COMPLETED))
        return op.to_wire(results.MEDIA_COMPLETED)

    def send_dtmf_tones(self, caller: Caller, call_id: str, req: wire.SendDtmfTones) -> JsonObj:
        call, cm = self._established(caller, call_id, "sendDtmfTones")
        gap = DEFAULT_TONE_GAP_MS if req.delay_between_tones_ms is None else req.delay_between_tones_ms
        keys = "".join(key_for_tone(t) for t in req.tones)
        op = MediaOp(new_id(), call.id, OpKind.SEND_TONES, req.client_context, keys=keys, gap_ms=gap)
        with self.calls.unit():
            self._save(op, op.to_wire())
            cm.tones[op.id] = op
            self._ops[op.id] = op
        if cm.in_engine:
            self.engine.call(cmd.SendTones(call.id, op.id, keys, TONE_MS, max(MIN_TONE_GAP_MS, gap)))
        else:
            self._finish_later(op, results.MEDIA_OVERLOADED)
        return op.to_wire()

    async def set_muted(self, caller: Caller, call_id: str, client_context: str | None, muted: bool) -> JsonObj:
        call, _ = self._established(caller, call_id, "mute" if muted else "unmute")
        kind = OpKind.MUTE if muted else OpKind.UNMUTE
        op = MediaOp(new_id(), call.id, kind, client_context, status=OpStatus.COMPLETED)
        await self.calls.mute(call.id, muted)  # the mix follows on commit (muted())
        with self.calls.unit():
            self._save(op, op.to_wire(results.MEDIA_COMPLETED))
        return op.to_wire(results.MEDIA_COMPLETED)

    # -- engine events (on the event loop) ---------------------------------------------------------------
    def on_events(self, events: Sequence[eng.MediaEvent]) -> None:
        for event in events:
            try:
                self._on_event(event)
            except Exception:
                log.exception("media event failed", extra={"call_id": getattr(event, "leg_id", None)})
        for observer in self.observers:
            try:
                observer.on_events(events)
            except Exception:
                log.exception("media observer failed")

    def _on_event(self, event: eng.MediaEvent) -> None:
        if isinstance(event, eng.ToneDetected):
            self._tone(event.leg_id, event.key)
            return
        tag = getattr(event, "tag", None)
        op = self._ops.get(tag) if isinstance(tag, str) else None
        if op is None or op.call_id != getattr(event, "leg_id", None):
            return
        call = self.calls.leg(op.call_id)
        if isinstance(event, eng.PlayFinished) and op.kind is OpKind.PLAY_PROMPT and event.completed:
            with self.calls.unit():
                self._finish(op, OpEvent.SUCCEED, results.MEDIA_COMPLETED, call=call)
            self._advance(op.call_id)
        elif isinstance(event, eng.RecordingFinished) and event.reason is not RecordStop.CANCELLED:
            self._recorded(op, call, event)
            self._advance(op.call_id)
        elif isinstance(event, eng.TonesFinished) and op.kind is OpKind.SEND_TONES:
            cm = self._media.get(op.call_id)
            if cm is not None:
                cm.tones.pop(op.id, None)
            reason = "completedSuccessfully" if event.completed else "mediaOperationCanceled"
            result = results.MEDIA_COMPLETED if event.completed else results.MEDIA_CANCELLED
            with self.calls.unit():
                verdict = OpEvent.SUCCEED if event.completed else OpEvent.FAIL
                self._finish(op, verdict, result, call=call, completionReason=reason)

    def _tone(self, call_id: str, key: str) -> None:
        cm = self._media.get(call_id)
        call = self.calls.leg(call_id)
        if cm is None or call is None or not cm.subscribed:
            return
        cm.tone_seq += 1
        info = {"@odata.type": "#microsoft.graph.toneInfo", "sequenceId": cm.tone_seq, "tone": tone_name(key)}
        with self.calls.unit():
            self.calls.notify(call, notes.call_updated(call, toneInfo=info))

    def _recorded(self, op: MediaOp, call: Call | None, event: eng.RecordingFinished) -> None:
        result = RECORD_RESULTS[event.reason]
        if call is None:
            return
        try:
            saved = self.recordings.save(
                call_id=call.id, app_id=call.app_id, tenant_id=call.tenant_id, wav=encode_wav(event.samples)
            )
        except OSError:
            log.exception("recording could not be stored", extra={"call_id": call.id})
            with self.calls.unit():
                self._finish(op, OpEvent.FAIL, results.MEDIA_RECORDING_FAILED, call=call)
            return
        with self.calls.unit():
            self._finish(
                op,
                OpEvent.SUCCEED,
                result,
                call=call,
                recordingLocation=f"{self.public_url}/media/recordings/{saved.id}",
                recordingAccessToken=saved.token,
                completionReason=event.reason.value,
            )

    # -- the queue ---------------------------------------------------------------------------------------
    def _enqueue(self, call: Call, cm: CallMedia, op: MediaOp, *, front: bool = False) -> JsonObj:
        with self.calls.unit():
            self._save(op, op.to_wire())
            if front:
                cm.queue.appendleft(op)
            else:
                cm.queue.append(op)
            self._ops[op.id] = op
        log.info("media operation queued", extra={"call_id": call.id, "op": op.kind.value})
        if not cm.in_engine:
            cm.queue.remove(op)
            self._finish_later(op, results.MEDIA_OVERLOADED)
        elif op.prompts:
            self._load_heads(cm)
        else:
            op.audio = []
            self._advance(call.id)
        return op.to_wire()

    def _check_depth(self, cm: CallMedia) -> None:
        if self.max_queued_ops and len(cm.queue) >= self.max_queued_ops:
            raise QuotaExceeded(
                f"Quota 'queued_media_ops_per_call' reached: this call already has {len(cm.queue)} playPrompt or "
                f"recordResponse operations queued or running (limit {self.max_queued_ops}); wait for them to finish "
                "or cancel them (cancelMediaProcessing)."
            )

    def _load_heads(self, cm: CallMedia) -> None:
        """Load the prompts of the first LOOKAHEAD operations of the queue, one operation at a time (the next one
        once the head's audio is ready); the rest wait their turn, holding nothing."""
        for index, op in enumerate(itertools.islice(cm.queue, LOOKAHEAD)):
            if op.audio is not None or op.failure is not None or not op.prompts:
                continue
            if op.loading is None and (index == 0 or not op.deferred):
                op.loading = self._loads.spawn(self._load(op), name=f"media-load {op.id}")
            return

    def _hold(self, op: MediaOp, clip: Audio) -> ResultInfo | None:
        """Count `clip` as held by `op` (None), or say which quota it would exceed."""
        cm = self._media.get(op.call_id)
        call_held = 0 if cm is None else cm.held
        if self.max_call_prompt_bytes and call_held + clip.nbytes > self.max_call_prompt_bytes:
            return ResultInfo(
                results.PROMPT_CALL_QUOTA.code,
                results.PROMPT_CALL_QUOTA.subcode,
                f"{results.PROMPT_CALL_QUOTA.message} Quota 'queued_prompt_mb_per_call': "
                f"{self.max_call_prompt_bytes >> 20} MiB.",
            )
        if not self.budget.try_take(clip.nbytes):
            return results.PROMPT_BUDGET_EXHAUSTED
        op.held += clip.nbytes
        if cm is not None:
            cm.held += clip.nbytes
        return None

    def _release(self, op: MediaOp) -> None:
        """Give back what `op` holds: its loading task, its audio and their bytes."""
        self._cancel_loading(op)
        op.audio = None
        if op.held:
            self.budget.give_back(op.held)
            cm = self._media.get(op.call_id)
            if cm is not None:
                cm.held = max(0, cm.held - op.held)
            self._released += op.held
            op.held = 0
            if self._released >= TRIM_AFTER_BYTES and self._trim is None:
                # after the engine's next ticks, which drop the clips it was playing
                self._trim = asyncio.get_running_loop().call_later(0.2, self._trim_heap)

    def _trim_heap(self) -> None:
        self._trim = None
        self._released = 0
        trim = heap_trimmer()
        if trim is not None:
            trim()

    async def _load(self, op: MediaOp) -> None:
        try:
            audio: list[Audio] = []
            for first in range(0, len(op.prompts), LOAD_WINDOW):
                for clip in await self._load_window(op.prompts[first : first + LOAD_WINDOW]):
                    refusal = self._hold(op, clip)
                    if refusal is not None:
                        raise _Refused(refusal)
                    audio.append(clip)
            op.audio = audio
        except _Refused as exc:
            op.failure = exc.result
            log.info("prompt refused by a quota", extra={"call_id": op.call_id, "subcode": exc.result.subcode})
        except PromptError as exc:
            op.failure = prompt_failure(exc)
            log.info("prompt failed", extra={"call_id": op.call_id, "reason": exc.failure.value})
        except asyncio.CancelledError:
            return
        except Exception:
            log.exception("prompt loading failed", extra={"call_id": op.call_id})
            op.failure = prompt_failure(PromptError(PromptFailure.UNREACHABLE, "internal error while loading"))
        op.loading = None
        if op.failure is not None:
            if op.failure.subcode in _DEFERRABLE and self._defer(op):
                return
            self._release(op)  # a failed operation holds nothing while it waits to be reported
        self._advance(op.call_id)

    def _defer(self, op: MediaOp) -> bool:
        """An operation that is not the head yet and whose audio does not fit (the head holds the rest) gives back
        what it holds and loads again when it becomes the head; False for the head, which fails."""
        cm = self._media.get(op.call_id)
        if cm is None or not cm.queue or cm.queue[0] is op:
            return False
        op.loading = None
        op.failure = None
        self._release(op)
        op.deferred = True
        log.info("prompt loading deferred until the operation is next", extra={"call_id": op.call_id})
        return True

    async def _load_window(self, specs: Sequence[PromptSpec]) -> list[Audio]:
        """Load `specs` in parallel; the first failure cancels the others (so their downloads stop) and is raised."""
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self.prompts.load(spec)) for spec in specs]
        except BaseExceptionGroup as eg:
            errors = list(eg.exceptions)
            raise next((e for e in errors if isinstance(e, PromptError)), errors[0]) from None
        return [task.result() for task in tasks]

    def _advance(self, call_id: str) -> None:
        """Start the head of the call's queue when it is ready, fail heads whose prompts failed, load the next."""
        cm = self._media.get(call_id)
        call = self.calls.leg(call_id)
        if cm is None or call is None:
            return
        self._advance_head(call, cm)
        self._load_heads(cm)

    def _advance_head(self, call: Call, cm: CallMedia) -> None:
        while cm.queue:
            head = cm.queue[0]
            if head.status is not OpStatus.RUNNING:  # finished while queued (should not happen): drop it
                cm.queue.popleft()
                continue
            if head.started or (head.audio is None and head.failure is None):
                return
            if head.failure is not None:
                cm.queue.popleft()
                extra = {"completionReason": "playPromptFailed"} if head.kind is OpKind.RECORD else {}
                with self.calls.unit():
                    self._finish(head, OpEvent.FAIL, head.failure, call=call, **extra)
                continue
            head.started = True
            self._start(head)
            return

    def _start(self, op: MediaOp) -> None:
        leg, tag = op.call_id, op.id
        clips = list(op.audio or [])
        if op.kind is OpKind.PLAY_PROMPT:
            self.engine.call(cmd.Play(leg, tag, tuple(clips)))
            return
        req = op.record
        assert req is not None
        if req.play_beep:
            clips.append(self._beep)
        self.engine.call(
            cmd.Record(
                leg,
                tag,
                tuple(clips),
                max_seconds=req.max_record_duration,
                initial_silence_seconds=req.initial_silence_timeout,
                max_silence_seconds=req.max_silence_timeout,
                stop_keys=req.stop_tones,
            )
        )

    def _stop_running(self, call: Call, cm: CallMedia, op: MediaOp) -> None:
        """Fail a queued or running prompt/record with 400/8508 and stop its audio (inside a unit)."""
        self._cancel_loading(op)
        if op.started:
            self.engine.call(cmd.StopOperation(call.id, op.id))
        reason = "operationCanceled" if op.kind is OpKind.RECORD else "mediaOperationCanceled"
        self._finish(op, OpEvent.FAIL, results.MEDIA_CANCELLED, call=call, completionReason=reason)

    # -- helpers -----------------------------------------------------------------------------------------
    def _established(self, caller: Caller, call_id: str, action: str) -> tuple[Call, CallMedia]:
        call = self.calls.own(caller, call_id)
        if call.state is not CallState.ESTABLISHED:
            raise InvalidState(f"The action '{action}' is not allowed while the call is '{call.state.value}'.")
        return call, self._media.setdefault(call.id, CallMedia())

    def _service_hosted(self, caller: Caller, call_id: str, action: str) -> tuple[Call, CallMedia]:
        call, cm = self._established(caller, call_id, action)
        if is_app_hosted(call.media_config or {}):
            raise InvalidState(f"The action '{action}' needs service-hosted media; this call uses app-hosted media.")
        return call, cm

    @staticmethod
    def _cancel_loading(op: MediaOp) -> None:
        if op.loading is not None:
            op.loading.cancel()
            op.loading = None

    def _save(self, op: MediaOp, body: JsonObj) -> None:
        cm = self._media.get(op.call_id)
        if cm is not None and op.id not in cm.op_ids:
            cm.op_ids.append(op.id)
        self.calls.store.put("operation", f"{op.call_id}/{op.id}", body)

    def _finish(self, op: MediaOp, verdict: OpEvent, result: ResultInfo, *, call: Call | None, **extra: Any) -> None:
        """Record the outcome and notify the bot (`deleted` on the operation); inside a unit of work."""
        if op.status in (OpStatus.COMPLETED, OpStatus.FAILED):
            return
        op.status = OP_FSM.apply(op.status, verdict)
        self._ops.pop(op.id, None)
        self._release(op)
        body = op.to_wire(result, **extra)
        self._save(op, body)
        if call is not None:
            data = {**body, "@odata.id": op.url, "@odata.etag": 'W/"2"'}
            self.calls.notify(call, notes.envelope("deleted", op.url, data))
        log.info(
            "media operation finished",
            extra={"call_id": op.call_id, "op": op.kind.value, "status": op.status.value, "code": result.code},
        )

    def _finish_later(self, op: MediaOp, result: ResultInfo) -> None:
        """Fail an operation just after its REST response went out (its 200 said 'running')."""

        def fail() -> None:
            with self.calls.unit():
                self._finish(op, OpEvent.FAIL, result, call=self.calls.leg(op.call_id))

        asyncio.get_running_loop().call_soon(fail)
