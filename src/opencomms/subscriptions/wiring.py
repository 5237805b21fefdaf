"""Attach call records for every conversation and their change notifications to a node (the composition root
calls this once): the record writer subscribes to the calling core, the subscription service serves the API."""

from __future__ import annotations

from typing import Any

from opencomms.calling.record_writer import CallRecordWriter
from opencomms.subscriptions.service import SubscriptionService

__all__ = ["attach_call_records"]


def attach_call_records(node: Any) -> SubscriptionService:
    """`node` is an opencomms.server.Node (typed Any: this package does not import the composition root)."""
    service = SubscriptionService(node.store, node.dispatcher, egress=node.egress, clock=node.clock)
    writer = CallRecordWriter(
        node.store, node.clock, on_record=service.record_created, transaction=node.dispatcher.transaction
    )
    node.calls.subscribe(writer)
    node.api.subscriptions = service
    node.record_writer = writer
    return service
