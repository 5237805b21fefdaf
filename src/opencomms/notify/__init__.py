"""Notification delivery: the pure retry policy and the dispatcher that drains the store's outbox to bots.

Builds no notification bodies and holds no call state; callers hand it bytes, URLs and a token signer.
"""

from __future__ import annotations

from opencomms.notify.dispatcher import Dispatcher, DispatchStats
from opencomms.notify.retry import Outcome, RetryPolicy, classify, parse_retry_after

__all__ = ["DispatchStats", "Dispatcher", "Outcome", "RetryPolicy", "classify", "parse_retry_after"]
