"""What the local-cluster tests share: the nodes' environment, a three-node `LocalCluster` (redis-server, Kamailio,
`opencomms serve` nodes) for a module-scoped fixture, and a node's /healthz."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from opencomms.cluster.local import ClusterPlan, LocalCluster

NODE_ENV: tuple[tuple[str, str], ...] = (
    ("OPENCOMMS_LOG_LEVEL", "warning"),
    ("OPENCOMMS_EGRESS__ALLOW", "127.0.0.1,::1"),
    ("OPENCOMMS_CLUSTER__LEASE", "1.5"),
    ("OPENCOMMS_CLUSTER__CLAIM_IDLE", "0.6"),
    ("OPENCOMMS_CLUSTER__POLL", "0.2"),
)
"""Short leases and polls: a node that stops is noticed within seconds."""


def three_nodes(
    tmp_path_factory: pytest.TempPathFactory, env: tuple[tuple[str, str], ...] = NODE_ENV
) -> Iterator[LocalCluster]:
    """A three-node local cluster for the duration of a fixture (`yield from three_nodes(...)`)."""
    run = tmp_path_factory.mktemp("cluster")
    plan = ClusterPlan(nodes=3, sip_port=0, http_port=0, node_sip_port=0, run_dir=str(run), env=env)
    with LocalCluster(plan) as c:
        yield c


def healthz(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/healthz", timeout=5) as resp:
        body: dict[str, Any] = json.loads(resp.read())
        return body
