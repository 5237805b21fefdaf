"""The shared outbox's claims: on a cluster, each node's dispatcher also delivers what no live node holds.

A node's own notifications reach its dispatcher directly (the ledger releases them once committed, and the store
has already put them on this node's pending list of the outbox stream's consumer group). This loop, run by the
dispatcher when its outbox can claim (`ClaimingOutbox`, the Redis conversation store), asks every `outbox_poll`
seconds for the rest: entries nobody has read and entries left pending by a node silent for the claim time
(XAUTOCLAIM); the same call keeps this node's own pending entries from looking idle. A conversation taken over
from a node whose lease lapsed brings that node's pending entries at once (`on_claimed`), before the new owner's.
Claimed entries join the dispatcher's lanes in stream order (per-call order kept), are delivered at least once (a
claimed entry the dead node had half sent goes again, with the same delivery id), and are acknowledged when their
removal commits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from opencomms.store.base import OutboxEntry
from opencomms.tasks import honour_cancel

log = logging.getLogger("opencomms.notify")


@runtime_checkable
class ClaimingOutbox(Protocol):
    """An outbox shared by several dispatchers (store.conversations_redis.RedisConversationStore)."""

    outbox_poll: float
    on_claimed: Callable[[list[OutboxEntry]], None] | None
    """Set by the claim loop: hears entries the outbox claims on its own (a conversation taken over)."""

    async def outbox_claim(self) -> list[OutboxEntry]: ...


async def claim_loop(
    outbox: ClaimingOutbox,
    held: Callable[[], set[str]],
    release: Callable[[list[OutboxEntry]], None],
    on_fault: Callable[[Exception], None],
) -> None:
    """Forever: claim, then `release` what this dispatcher does not hold yet (`held`: the ids it holds)."""

    def adopt(claimed: list[OutboxEntry]) -> None:
        if claimed:
            mine = held()
            fresh = [entry for entry in claimed if entry.id not in mine]
            if fresh:
                release(fresh)

    outbox.on_claimed = adopt
    try:
        while True:
            honour_cancel()
            await asyncio.sleep(outbox.outbox_poll)
            try:
                claimed = await outbox.outbox_claim()
            except Exception as exc:  # Redis down: try again at the next poll
                on_fault(exc)
                continue
            adopt(claimed)
    finally:
        outbox.on_claimed = None
