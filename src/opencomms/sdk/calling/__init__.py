"""The stateful calling API: `CommunicationsClient` (calls collection, events) and `Call` (awaitable actions)."""

from __future__ import annotations

from opencomms.sdk.calling.call import Call
from opencomms.sdk.calling.client import CommunicationsClient
from opencomms.sdk.calling.errors import CallEnded, OperationFailed

__all__ = ["Call", "CallEnded", "CommunicationsClient", "OperationFailed"]
