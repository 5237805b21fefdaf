"""The node's metrics without a node: label vocabularies stay bounded, notifications are read right, the collector
serves the components' counters, the access rules of /metrics, and the Grafana dashboard uses only exported names."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from opencomms.api.routes.metrics import check_access, is_loopback
from opencomms.calling import notifications as notes
from opencomms.config import MetricsConfig
from opencomms.domain import results
from opencomms.domain.errors import AccessDenied, NotFound, Unauthenticated
from opencomms.histogram import TICK_BOUNDS, FixedHistogram
from opencomms.metrics import NodeMetrics, Sources
from opencomms.metrics.node import result_labels, sip_code_label
from opencomms.metrics.quality import estimated_mos
from opencomms.rtp.stats import CallQuality
from opencomms.store.base import OutboxEntry

DASHBOARD = Path(__file__).parents[3] / "deploy" / "grafana" / "opencomms.json"

HEALTH: dict[str, Any] = {
    "calls": 3,
    "notifications": {"delivered": 7, "retried": 2, "dropped": 1, "redirected": 0, "given_up": 1, "refused": 0},
    "media": {"ticks": 50, "overruns": 1, "skipped_ticks": 6, "late_ticks": 2, "engine_legs": 2, "operations": 1},
    "app_hosted_media": {"active": 1, "frames_sent": 10, "frames_received": 9, "connections": 1},
    "sip": {"calls": 1, "rtp_ports_in_use": 1, "rtp_streams": 1, "rtp_stream_faults": 0},
    "store": {"unit_faults": 0, "notify_faults": 0},
    "http": {"connections": 4, "refused_total_cap": 0, "refused_per_source": 1},
}


def samples(metrics: NodeMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = metrics.render().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value for f in text_string_to_metric_families(text) for s in f.samples
    }


def value(metrics: NodeMetrics, name: str, **labels: str) -> float:
    return samples(metrics).get((name, frozenset(labels.items())), 0.0)


def node_metrics(health: dict[str, Any] | None = None) -> NodeMetrics:
    ticks = FixedHistogram(TICK_BOUNDS)
    for d in (0.0004, 0.003, 0.025, 0.5):
        ticks.observe(d)
    return NodeMetrics(
        Sources(
            health=lambda: health if health is not None else HEALTH,
            tick_histogram=ticks,
            participants=lambda: 5,
            sip_endpoint=lambda: {"received": 12, "rate_limited": 3},
            sip_admission=lambda: {"admitted": 2, "refused_rate": 1},
        )
    )


def entry(body: dict[str, Any]) -> OutboxEntry:
    return OutboxEntry(
        id="e",
        order_key="k",
        app_id="a",
        tenant_id="t",
        url="http://x",
        body=orjson.dumps(body),
        created_at=0.0,
        next_attempt_at=0.0,
    )


def test_fixed_histogram_is_cumulative_and_refuses_bad_bounds() -> None:
    h = FixedHistogram((0.01, 0.02))
    for v in (0.005, 0.01, 0.015, 3.0):
        h.observe(v)
    assert h.cumulative() == ([("0.01", 2), ("0.02", 3), ("+Inf", 4)], pytest.approx(3.03))
    assert h.count == 4
    with pytest.raises(ValueError):
        FixedHistogram((0.02, 0.01))


def test_collector_reads_the_components_counters_at_scrape_time() -> None:
    health = {**HEALTH}
    m = node_metrics(health)
    assert value(m, "opencomms_calls_active") == 3
    assert value(m, "opencomms_meeting_participants_active") == 5
    assert value(m, "opencomms_notifications_total", outcome="given_up") == 1
    assert value(m, "opencomms_media_engine_events_total", event="overruns") == 1
    assert value(m, "opencomms_media_engine_tick_seconds_count") == 4
    assert value(m, "opencomms_media_engine_tick_seconds_bucket", le="0.02") == 2
    assert value(m, "opencomms_apphosted_frames_total", event="sent") == 10
    assert value(m, "opencomms_sip_admission_total", outcome="refused_rate") == 1
    assert value(m, "opencomms_http_guard_refusals_total", reason="refused_per_source") == 1
    health["calls"] = 4  # read again at the next scrape, nothing cached
    assert value(m, "opencomms_calls_active") == 4


def test_a_failing_source_does_not_fail_the_scrape() -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("boom")

    m = NodeMetrics(Sources(health=broken))
    m.http_request("GET", "healthz", 200, 0.001)
    assert value(m, "opencomms_http_requests_total", method="GET", route="healthz", status="200") == 1


def test_label_values_are_bounded() -> None:
    m = node_metrics()
    for i in range(300):
        m.sip_message(False, f"X{i}", 0)  # a peer inventing methods
        m.sip_message(True, "INVITE", 100 + i)  # and codes
        m.http_request(f"M{i}", "", 404, 0.0)
    names = samples(m)
    methods = {dict(k[1]).get("method") for k in names if k[0] == "opencomms_sip_requests_total"}
    assert methods == {"other"}
    codes = {dict(k[1]).get("code") for k in names if k[0] == "opencomms_sip_responses_total"}
    assert len(codes) < 60 and "1xx" in codes and "183" in codes
    assert {dict(k[1]).get("method") for k in names if k[0] == "opencomms_http_requests_total"} == {"other"}
    assert sip_code_label(999) == "other" and sip_code_label(299) == "2xx"


def test_calls_started_and_ended_come_from_the_notifications() -> None:
    m = node_metrics()
    created = notes.envelope("created", "/communications/calls/1", {"state": "incoming"})
    deleted = notes.envelope("deleted", "/communications/calls/1", {"resultInfo": results.BUSY.to_wire()})
    unknown = notes.envelope("deleted", "/communications/calls/2", {"resultInfo": {"code": 299, "subcode": 77}})
    operation = notes.envelope("deleted", "/communications/calls/1/operations/9", {"resultInfo": {"code": 200}})
    updated = notes.envelope("updated", "/communications/calls/1", {"state": "established"})
    for body in (created, deleted, unknown, operation, updated):
        m.notification_staged(entry(body))
    assert value(m, "opencomms_calls_started_total", direction="incoming") == 1
    assert value(m, "opencomms_calls_ended_total", code="486", subcode="0") == 1
    assert value(m, "opencomms_calls_ended_total", code="other", subcode="other") == 1
    assert sum(v for (n, _), v in samples(m).items() if n == "opencomms_calls_ended_total") == 2
    assert result_labels(True, 0) == ("other", "other")
    m.http_request("POST", "communications/calls", 201, 0.01)
    m.http_request("POST", "communications/calls", 429, 0.01)
    assert value(m, "opencomms_calls_started_total", direction="outgoing") == 1
    assert value(m, "opencomms_http_throttled_total", reason="graph_application") == 1


def test_rtp_quality_and_mos() -> None:
    assert estimated_mos(0.0, 0.0, 0.0) == pytest.approx(4.41, abs=0.02)
    assert estimated_mos(5.0, 30.0, 200.0) < estimated_mos(1.0, 5.0, 40.0) < estimated_mos(0.0, 1.0, 20.0)
    assert estimated_mos(60.0, 0.0, 0.0) == 1.0
    m = node_metrics()
    m.leg_quality(CallQuality(100, 98, 2, 2.0, 4.0, 30.0, remote_loss_percent=0.0, remote_jitter_ms=8.0))
    m.leg_quality(CallQuality(0, 0, 0, 0.0, 0.0, None))  # no media at all: not a quality figure
    assert value(m, "opencomms_rtp_loss_ratio_count", direction="in") == 1
    assert value(m, "opencomms_rtp_loss_ratio_bucket", direction="in", le="0.02") == 1
    assert value(m, "opencomms_rtp_loss_ratio_bucket", direction="in", le="0.01") == 0
    assert value(m, "opencomms_rtp_jitter_seconds_sum", direction="out") == pytest.approx(0.008)
    assert value(m, "opencomms_rtp_round_trip_seconds_sum") == pytest.approx(0.03)


def test_access_rules() -> None:
    open_ = MetricsConfig()
    check_access(open_, "127.0.0.1", {})
    check_access(open_, "::1", {})
    check_access(open_, "::ffff:127.0.0.1", {})
    for source, headers in (("192.0.2.1", {}), ("", {}), ("127.0.0.1", {"x-forwarded-for": "192.0.2.1"})):
        with pytest.raises(AccessDenied):
            check_access(open_, source, headers)
    with pytest.raises(NotFound):
        check_access(MetricsConfig(enabled=False), "127.0.0.1", {})
    remote = MetricsConfig(token="t0ken", allow_remote=True)
    check_access(remote, "192.0.2.1", {"authorization": "Bearer t0ken"})
    for headers in ({}, {"authorization": "Bearer t0ke"}, {"authorization": "Basic t0ken"}):
        with pytest.raises(Unauthenticated):
            check_access(remote, "192.0.2.1", headers)
    with pytest.raises(ValueError, match="token"):
        MetricsConfig(allow_remote=True)
    assert not is_loopback("localhost") and is_loopback("127.0.0.2")


def test_the_dashboard_uses_only_metrics_the_node_exports() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    m = node_metrics()
    exported: set[str] = set()
    for family in m.registry.collect():
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}[family.type]
        exported |= {family.name + s for s in suffixes}
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])] + [
        v["definition"] for v in dashboard["templating"]["list"] if "definition" in v
    ]
    assert len(exprs) > 30
    used = {name for e in exprs for name in re.findall(r"\bopencomms_[a-z0-9_]+", e)}
    assert used <= exported, used - exported
    families = {f.name for f in m.registry.collect()}
    unused = {f for f in families if not any(u.startswith(f) for u in used)}
    assert not unused, f"exported but on no panel: {unused}"
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
