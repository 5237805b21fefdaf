"""Joins a node on a Redis store to its cluster: its presence (cluster.registry), request forwarding
(cluster.forward), the timers of conversations whose owner died (cluster.orphans) and the `cluster` part of
/healthz. A node on SQLite or memory is a single node: nothing here is attached."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from opencomms.cluster.forward import Forwarder
from opencomms.cluster.orphans import OrphanSweep
from opencomms.cluster.registry import NodeRegistry
from opencomms.cluster.throttle import ClusterThrottle
from opencomms.domain import results
from opencomms.store.conversations_redis import RedisConversationStore
from opencomms.store.redis_common import redis_target

if TYPE_CHECKING:
    from opencomms.server import Node

__all__ = ["ClusterMember", "attach_cluster"]


class ClusterMember:
    """What a node of a cluster runs besides a single node's parts."""

    def __init__(self, node: Node, registry: NodeRegistry) -> None:
        self.node = node
        self.registry = registry
        self.forwarder = Forwarder(registry)
        store = node.conversations
        self.sweep = (
            OrphanSweep(node, store, registry.target.lease / 3) if isinstance(store, RedisConversationStore) else None
        )
        node.calls.orphan_result = results.NODE_LOST
        self.throttle = ClusterThrottle(node.config.throttle, registry.redis, registry.target.key)
        node.api.throttle = self.throttle
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, stack: contextlib.AsyncExitStack) -> None:
        sip = self.node.sip
        if sip is not None:  # the port bound (0 in the configuration: a free one)
            sc = self.node.config.sip
            self.registry.sip = f"{sc.public_host or sc.host}:{sip.port}"
        await self.registry.start()
        stack.push_async_callback(self.registry.aclose)
        stack.push_async_callback(self.forwarder.aclose)
        loop = asyncio.get_running_loop()
        stack.push_async_callback(self._stop_tasks)
        if self.sweep is not None:
            self._tasks.append(loop.create_task(self.sweep.run(), name="opencomms-orphan-sweep"))
        self._tasks.append(loop.create_task(self.throttle.run(self.node.clock), name="opencomms-cluster-throttle"))

    async def _stop_tasks(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def live_recorded_calls(self) -> set[str]:
        """The calls with recordings that are still going on anywhere in the cluster: this node's, and those whose
        conversation is still stored (owned by another node). A recording's deletion is scheduled only once its call
        has ended on every node, so a node's clean-up never shortens the recordings of another node's live call."""
        calls, store = self.node.calls, self.node.conversations
        live = set(calls.calls)
        for call_id in sorted(self.node.recordings.call_ids() - live):
            if isinstance(store, RedisConversationStore):
                found = await store.find_leg(call_id, remembered=False)
            else:
                found = await calls.core.conversation_of(call_id)
            if found is not None:
                live.add(call_id)
        return live

    def health(self) -> dict[str, Any]:
        store = self.node.conversations
        return {
            "role": "node",
            "node_id": self.registry.node,
            "url": self.registry.url,
            "sip": self.registry.sip,
            "leases": getattr(store, "leases", 0),
            "leases_lost": getattr(store, "leases_lost", 0),
            "redis": "ok" if self.registry.redis_ok else "unreachable",
            "taken_over": 0 if self.sweep is None else self.sweep.taken,
            "forwarded": self.forwarder.forwarded,
            "received_forwarded": self.forwarder.received,
        }


def attach_cluster(node: Node) -> ClusterMember | None:
    """The node's ClusterMember when its store is Redis (None: a single node)."""
    target = redis_target(node.config.store_url, node.config.cluster)
    if target is None:
        return None
    cfg = node.config
    internal = cfg.cluster.internal_url.rstrip("/")
    if not internal:
        scheme = "https" if cfg.tls else "http"
        internal = f"{scheme}://{cfg.host}:{node.port}" if cfg.public_url else node.public_url
    member = ClusterMember(node, NodeRegistry(target, internal))
    node.api.forwarder = member.forwarder
    return member
