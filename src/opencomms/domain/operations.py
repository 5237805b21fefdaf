"""Graph commsOperation kinds and the status machine every operation follows, as data.

An operation is created `running` (asynchronous: a `deleted` notification brings the outcome later) or
finished at once (`completed`/`failed`: no notification follows). Finished is final.
"""

from __future__ import annotations

from enum import StrEnum

from opencomms.domain.fsm import TransitionTable


class OpKind(StrEnum):
    """The operation subtype; the value is the `@odata.type` short name."""

    PLAY_PROMPT = "playPromptOperation"
    RECORD = "recordOperation"
    SEND_TONES = "sendDtmfTonesOperation"
    CANCEL_MEDIA = "cancelMediaProcessingOperation"
    SUBSCRIBE_TONES = "subscribeToToneOperation"
    MUTE = "muteParticipantOperation"
    UNMUTE = "unmuteParticipantOperation"

    @property
    def odata_type(self) -> str:
        return f"#microsoft.graph.{self.value}"

    @property
    def queued(self) -> bool:
        """playPrompt and recordResponse share the call's FIFO media queue (and cancelMediaProcessing)."""
        return self in (OpKind.PLAY_PROMPT, OpKind.RECORD)


class OpStatus(StrEnum):
    NOT_STARTED = "notStarted"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class OpEvent(StrEnum):
    START = "start"
    SUCCEED = "succeed"
    FAIL = "fail"


_S, _E = OpStatus, OpEvent
OP_FSM: TransitionTable[OpStatus, OpEvent] = TransitionTable(
    "operation",
    {
        (_S.NOT_STARTED, _E.START): _S.RUNNING,
        (_S.NOT_STARTED, _E.SUCCEED): _S.COMPLETED,
        (_S.NOT_STARTED, _E.FAIL): _S.FAILED,
        (_S.RUNNING, _E.SUCCEED): _S.COMPLETED,
        (_S.RUNNING, _E.FAIL): _S.FAILED,
    },
)

FINISHED = frozenset({OpStatus.COMPLETED, OpStatus.FAILED})
