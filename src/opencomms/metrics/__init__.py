"""Prometheus metrics of a node (`GET /metrics`): names and label sets in node.py, the MOS estimate in quality.py.

Imported by the composition root only (server.py): the layers it observes expose plain hooks (callables set to None
when metrics are off) and counters, and never import this package or prometheus-client.
"""

from __future__ import annotations

from opencomms.metrics.node import CONTENT_TYPE, NodeMetrics, Sources

__all__ = ["CONTENT_TYPE", "NodeMetrics", "Sources"]
