"""Attach a node's metrics: set the observer hooks of the API, dispatcher, SIP endpoint and gateway, and point the
collector at the node's counters. Called once by the composition root, only when `[metrics] enabled`.

Must not be imported by the layers it observes (they know only their own hook attributes).
"""

from __future__ import annotations

from typing import Any

from opencomms.metrics.node import NodeMetrics, Sources

__all__ = ["attach_metrics"]


def attach_metrics(node: Any) -> NodeMetrics:
    """`node` is an opencomms.server.Node (typed Any: this package does not import the composition root)."""
    sip = node.sip
    sources = Sources(
        health=node.health,
        tick_histogram=node.engine.tick_histogram,
        participants=lambda: _participants(node.calls),
        sip_endpoint=None if sip is None else (lambda: dict(sip.endpoint.stats)),
        sip_admission=None if sip is None else (lambda: dict(sip.admission.stats)),
    )
    metrics = NodeMetrics(sources, node.config.metrics)
    node.api.metrics = metrics
    node.app.on_request = metrics.http_request
    node.dispatcher.on_staged = metrics.notification_staged
    node.dispatcher.on_delivered = metrics.notification_delivered
    if sip is not None:
        sip.endpoint.on_message = metrics.sip_message
        sip.on_quality = metrics.leg_quality
    return metrics


def _participants(calls: Any) -> int:
    """Live legs in group calls and meetings, asked of the calling core at scrape time."""
    return int(calls.group_participants)
