"""Errors of the stateful calling API."""

from __future__ import annotations

from opencomms.sdk.errors import SdkError
from opencomms.sdk.models import Operation, ResultInfo


class OperationFailed(SdkError):
    """A media operation (or a transfer) finished `failed`; `result_info` says why (Graph code/subcode)."""

    def __init__(self, operation: Operation | None, result_info: ResultInfo | None, what: str = "operation") -> None:
        detail = "" if result_info is None else f" ({result_info.code}/{result_info.subcode} {result_info.message})"
        super().__init__(f"{what} failed{detail}")
        self.operation = operation
        self.result_info = result_info


class CallEnded(SdkError):
    """The call ended before what we were waiting for happened; `result_info` is the call's final result."""

    def __init__(self, call_id: str, result_info: ResultInfo | None) -> None:
        detail = "" if result_info is None else f" ({result_info.code}/{result_info.subcode})"
        super().__init__(f"call {call_id} ended{detail}")
        self.call_id = call_id
        self.result_info = result_info
