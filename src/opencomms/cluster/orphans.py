"""The sweep that makes a dead node's conversations live on: every third of the lease period (as often as leases are
renewed; a dead node's bots are told within about 4/3 of the lease), each node looks for live conversations whose
lease nobody holds and loads them (the first node to do so takes the lease; the others are
refused and skip them). Loading a conversation claims its last writer's undelivered notifications first, ends the
legs whose SIP dialog and media lived on the dead node (resultInfo NODE_LOST, 503/9134: their bots are told), keeps
bot-to-bot legs (no media) as they are, and lets its timers (answer windows, keepalive) fire here.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from opencomms.domain.errors import ServiceUnavailable
from opencomms.tasks import honour_cancel

if TYPE_CHECKING:
    from opencomms.server import Node
    from opencomms.store.conversations_redis import RedisConversationStore

__all__ = ["OrphanSweep"]

log = logging.getLogger("opencomms.cluster")


class OrphanSweep:
    """Takes over the conversations of nodes that stopped (see the module notes)."""

    def __init__(self, node: Node, store: RedisConversationStore, interval: float) -> None:
        self.node = node
        self.store = store
        self.interval = interval
        self.taken = 0
        """Conversations this node took over from stopped nodes."""

    async def run(self) -> None:
        while True:
            honour_cancel()
            await asyncio.sleep(self.interval)
            try:
                await self.sweep()
            except ServiceUnavailable as exc:
                log.warning("orphan sweep postponed: %s", exc.message)
            except Exception:
                log.exception("orphan sweep failed")

    async def sweep(self) -> int:
        """Take over what nobody holds; re-arm this node's timer for the earliest deadline now its own."""
        taken = 0
        for conv_id in await self.store.unowned():
            try:
                if await self.node.calls.conversation(conv_id) is not None:
                    taken += 1
            except ServiceUnavailable:  # another node took it first (NotOwner), or Redis faltered
                continue
        if taken:
            self.taken += taken
            log.info("took over %d conversations of stopped nodes", taken)
        timers = self.node.calls.core.timers
        await timers.start()  # the earliest deadline among the conversations this node owns or nobody does
        deadline = timers.next_deadline()
        if deadline is not None and timers.on_deadline is not None:
            timers.on_deadline(deadline)  # the node's one loop timer
        return taken
