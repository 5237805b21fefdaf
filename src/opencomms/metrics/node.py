"""The node's Prometheus metrics: one registry per node, observers for the few hot points, and a collector that
reads the counters the components already keep when /metrics is scraped.

Owns metric names, help texts, buckets and label vocabularies (every label has a bounded set of values: no call
ids, numbers, app ids or raw paths). Must not hold call state or be called from the media engine thread: the
engine keeps a plain-int histogram (`EngineThread.tick_histogram`) that the collector reads at scrape time.

Observed, only when metrics are enabled, into plain dicts of ints and fixed-bucket histograms (a dict look-up and
an add per event, ~0.2-0.5 us; no metrics-library call): REST requests (route template, method, status, latency),
SIP messages (method, code), notification delivery latency, call legs started (the created notification / POST 201)
and ended (the deleted notification's resultInfo), RTP quality of each finished SIP leg. Everything else comes from
`Sources` at scrape time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import prometheus_client
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from opencomms import __version__
from opencomms.config import MetricsConfig
from opencomms.domain import results
from opencomms.histogram import FixedHistogram
from opencomms.metrics.quality import mos_of
from opencomms.rtp.stats import CallQuality
from opencomms.store.base import OutboxEntry

__all__ = ["CONTENT_TYPE", "NodeMetrics", "Sources", "result_labels"]

log = logging.getLogger("opencomms.metrics")

# No `_created` series: half the output, and dashboards never use them.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The classic text exposition format, which every Prometheus version scrapes."""

HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
SIP_METHODS = frozenset(
    {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "INFO", "UPDATE", "PRACK", "REFER", "NOTIFY"}
    | {"SUBSCRIBE", "MESSAGE", "PUBLISH"}
)
SIP_CODES = frozenset(
    {100, 180, 181, 182, 183, 200, 202, 301, 302, 400, 401, 403, 404, 405, 407, 408, 413, 415, 420, 423, 480}
    | {481, 482, 483, 486, 487, 488, 489, 491, 500, 501, 502, 503, 504, 513, 600, 603, 604, 606}
)
"""Codes kept as they are; any other becomes its class ("4xx"), so that a peer cannot mint label values."""
KNOWN_RESULTS = frozenset((ri.code, ri.subcode) for ri in vars(results).values() if isinstance(ri, results.ResultInfo))
"""Every resultInfo the platform reports (domain/results.py); anything else is labelled "other"."""

HTTP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
DELIVERY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0, 3600.0)
LOSS_BUCKETS = (0.0, 0.001, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5)
JITTER_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2)
RTT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)
MOS_BUCKETS = (1.0, 2.0, 2.5, 3.0, 3.5, 3.8, 4.0, 4.2, 4.3, 4.4, 4.5)


def result_labels(code: Any, subcode: Any) -> tuple[str, str]:
    """(code, subcode) as label values when the pair is in the platform's result table, else ("other", "other")."""
    if isinstance(code, int) and isinstance(subcode, int) and (code, subcode) in KNOWN_RESULTS:
        return str(code), str(subcode)
    return "other", "other"


def sip_code_label(status: int) -> str:
    return str(status) if status in SIP_CODES else f"{status // 100}xx" if 100 <= status < 700 else "other"


def throttle_reason(route: str) -> str:
    """Which limit a 429 on `route` (a route template) came from."""
    if "oauth2" in route:
        return "token_endpoint"
    if route.startswith("media/recordings"):
        return "recording_download"
    return "graph_application" if route.startswith("communications/") else "other"


@dataclass(frozen=True, slots=True)
class Sources:
    """Where the collector reads the node's own counters at scrape time (the composition root provides them)."""

    health: Callable[[], dict[str, Any]]
    """Node.health(): calls, notifications, media, app-hosted media, SIP, store and HTTP figures."""
    tick_histogram: FixedHistogram | None = None
    """The media engine thread's tick durations."""
    participants: Callable[[], int] | None = None
    """Legs in group calls (meetings) now."""
    sip_endpoint: Callable[[], dict[str, int]] | None = None
    """The SIP endpoint's counters (received, parse errors, rate-limited…)."""
    sip_admission: Callable[[], dict[str, int]] | None = None
    """The SIP gateway's admission counters (admitted, refused_<reason>)."""


class NodeMetrics:
    """A node's registry. The observer methods are what the hooks call; `render()` is the /metrics body.

    Observations go into plain dicts of ints and `FixedHistogram`s (no lock, no metrics-library call: the event
    loop is the only writer); `_ObservedCollector` turns them into metric families when /metrics is scraped.
    """

    def __init__(self, sources: Sources, config: MetricsConfig | None = None) -> None:
        self.config = config or MetricsConfig()
        """Access rules of GET /metrics (read by its route)."""
        self.registry = CollectorRegistry(auto_describe=False)
        self.http_counts: dict[tuple[str, str, int], int] = {}
        """(method, route template, status) -> requests."""
        self.http_latency: dict[tuple[str, str], FixedHistogram] = {}
        self.throttled: dict[str, int] = {}
        self.sip_counts: dict[tuple[bool, str, int | str], int] = {}
        """(sent, method, status or code class; 0 for requests) -> messages."""
        self.started = {"outgoing": 0, "incoming": 0}
        self.ended: dict[tuple[str, str], int] = {}
        self.delivery = FixedHistogram(DELIVERY_BUCKETS)
        self.rtp_loss = {"in": FixedHistogram(LOSS_BUCKETS), "out": FixedHistogram(LOSS_BUCKETS)}
        self.rtp_jitter = {"in": FixedHistogram(JITTER_BUCKETS), "out": FixedHistogram(JITTER_BUCKETS)}
        self.rtp_rtt = FixedHistogram(RTT_BUCKETS)
        self.rtp_mos = FixedHistogram(MOS_BUCKETS)
        self.registry.register(_ObservedCollector(self))
        self.registry.register(_StatsCollector(sources))

    def render(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)

    # -- observers (event loop) --------------------------------------------------------------------------
    def http_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        counts = self.http_counts
        if key in counts:
            counts[key] += 1
        else:
            counts[key] = 1
        hist = self.http_latency.get((method, route))
        if hist is None:
            hist = self.http_latency[(method, route)] = FixedHistogram(HTTP_BUCKETS)
        hist.observe(seconds)
        if status == 201 and route == "communications/calls" and method == "POST":
            self.started["outgoing"] += 1
        elif status == 429:
            reason = throttle_reason(route)
            self.throttled[reason] = self.throttled.get(reason, 0) + 1

    def sip_message(self, sent: bool, method: str, status: int) -> None:
        key: tuple[bool, str, int | str] = (sent, method, status)
        counts = self.sip_counts
        if key in counts:
            counts[key] += 1
        elif method in SIP_METHODS and (status == 0 or status in SIP_CODES):
            counts[key] = 1
        else:  # a value outside the label vocabularies (a peer's invention): counted under its bounded form
            key = (sent, method if method in SIP_METHODS else "other", sip_code_label(status) if status else 0)
            counts[key] = counts.get(key, 0) + 1

    def notification_staged(self, entry: OutboxEntry) -> None:
        """Every notification committed for delivery: a call leg's `created` starts it, its `deleted` ends it."""
        body = entry.body
        if body.find(b'"changeType":"created"', 0, 200) >= 0:
            self.started["incoming"] += 1
        elif body.find(b'"changeType":"deleted"', 0, 200) >= 0:
            try:
                note = orjson.loads(body)["value"][0]
                if "/operations/" in note["resourceUrl"]:
                    return  # a media operation finished, not a call
                info = note["resourceData"].get("resultInfo") or {}
                labels = result_labels(info.get("code"), info.get("subcode"))
            except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
                labels = ("other", "other")
            self.ended[labels] = self.ended.get(labels, 0) + 1

    def notification_delivered(self, seconds: float) -> None:
        self.delivery.observe(seconds if seconds > 0.0 else 0.0)

    def leg_quality(self, quality: CallQuality) -> None:
        if quality.packets_received == 0 and quality.packets_lost == 0:
            return  # no media at all (ended while ringing): nothing to say about its quality
        self.rtp_loss["in"].observe(quality.loss_percent / 100.0)
        self.rtp_jitter["in"].observe(quality.jitter_ms / 1000.0)
        if quality.remote_loss_percent is not None:
            self.rtp_loss["out"].observe(quality.remote_loss_percent / 100.0)
        if quality.remote_jitter_ms is not None:
            self.rtp_jitter["out"].observe(quality.remote_jitter_ms / 1000.0)
        if quality.rtt_ms is not None:
            self.rtp_rtt.observe(quality.rtt_ms / 1000.0)
        self.rtp_mos.observe(mos_of(quality))


class _ObservedCollector(Collector):
    """The observers' counts and histograms as metric families (label values normalised here, at scrape time)."""

    def __init__(self, metrics: NodeMetrics) -> None:
        self.m = metrics

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        m = self.m
        requests: dict[tuple[str, str, str], int] = {}
        for (method, route, status), n in list(m.http_counts.items()):
            labels3 = (_http_method(method), route or "unmatched", str(status))
            requests[labels3] = requests.get(labels3, 0) + n
        fam = CounterMetricFamily(
            "opencomms_http_requests", "REST requests answered, by route template", labels=["method", "route", "status"]
        )
        for labels3, n in requests.items():
            fam.add_metric(list(labels3), n)
        yield fam
        latency: dict[tuple[str, str], list[tuple[list[tuple[str, int]], float]]] = {}
        for (method, route), hist in list(m.http_latency.items()):
            latency.setdefault((_http_method(method), route or "unmatched"), []).append(hist.cumulative())
        hfam = HistogramMetricFamily(
            "opencomms_http_request_duration_seconds",
            "Time from the request reaching the application to its response being handed to the server",
            labels=["method", "route"],
        )
        for labels, parts in latency.items():
            buckets, total = _merge(parts)
            hfam.add_metric(list(labels), buckets, total)
        yield hfam
        yield _counter("opencomms_http_throttled", "REST requests answered 429, by the limit", "reason", m.throttled)
        req = CounterMetricFamily(
            "opencomms_sip_requests", "SIP requests received (in) or sent (out)", labels=["direction", "method"]
        )
        resp = CounterMetricFamily(
            "opencomms_sip_responses",
            "SIP responses received (in) or sent (out), by the method of their CSeq and status code",
            labels=["direction", "method", "code"],
        )
        merged: dict[tuple[str, str, str], int] = {}
        for (sent, method, code), n in list(m.sip_counts.items()):
            labels3 = ("out" if sent else "in", method if method in SIP_METHODS else "other", str(code))
            merged[labels3] = merged.get(labels3, 0) + n
        for (direction, method, code_label), n in merged.items():
            if code_label == "0":
                req.add_metric([direction, method], n)
            else:
                resp.add_metric([direction, method, code_label], n)
        yield req
        yield resp
        doc = "Bot call legs started (outgoing: POST /communications/calls)"
        yield _counter("opencomms_calls_started", doc, "direction", m.started)
        doc = "Bot call legs ended, by their resultInfo code and subcode"
        fam = CounterMetricFamily("opencomms_calls_ended", doc, labels=["code", "subcode"])
        for labels, n in list(m.ended.items()):
            fam.add_metric(list(labels), n)
        yield fam
        yield _histogram(
            "opencomms_notification_delivery_seconds",
            "Time from a notification's submission to its bot's 2xx (retries included)",
            {(): m.delivery},
        )
        yield _histogram(
            "opencomms_rtp_loss_ratio",
            "RTP loss of each finished SIP leg (0-1): in = measured here, out = the peer's last RTCP report",
            {(d,): h for d, h in m.rtp_loss.items()},
            ["direction"],
        )
        yield _histogram(
            "opencomms_rtp_jitter_seconds",
            "Interarrival jitter of each finished SIP leg: in = measured here, out = the peer's last RTCP report",
            {(d,): h for d, h in m.rtp_jitter.items()},
            ["direction"],
        )
        yield _histogram(
            "opencomms_rtp_round_trip_seconds",
            "RTCP round-trip time of each finished SIP leg that had a report",
            {(): m.rtp_rtt},
        )
        yield _histogram(
            "opencomms_rtp_mos", "Estimated listening MOS (E-model) of each finished SIP leg", {(): m.rtp_mos}
        )


def _http_method(method: str) -> str:
    return method if method in HTTP_METHODS else "other"


def _merge(parts: list[tuple[list[tuple[str, int]], float]]) -> tuple[list[tuple[str, int]], float]:
    buckets = [(le, sum(p[0][i][1] for p in parts)) for i, (le, _) in enumerate(parts[0][0])]
    return buckets, sum(p[1] for p in parts)


def _counter(name: str, doc: str, label: str, values: dict[str, int]) -> CounterMetricFamily:
    fam = CounterMetricFamily(name, doc, labels=[label])
    for key, n in list(values.items()):
        fam.add_metric([key], n)
    return fam


def _histogram(
    name: str, doc: str, hists: dict[tuple[str, ...], FixedHistogram], labels: list[str] | None = None
) -> HistogramMetricFamily:
    fam = HistogramMetricFamily(name, doc, labels=labels or [])
    for values, hist in hists.items():
        buckets, total = hist.cumulative()
        fam.add_metric(list(values), buckets, total)
    return fam


class _StatsCollector(Collector):
    """Reads the components' counters at scrape time: no cost between scrapes."""

    def __init__(self, sources: Sources) -> None:
        self.sources = sources

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        try:
            yield from self._collect()
        except Exception:  # a scrape must never fail the request: what was read so far is served
            log.exception("metrics collection failed")

    def _collect(self) -> Iterator[Metric]:
        s = self.sources
        health = s.health()
        info = GaugeMetricFamily("opencomms_build_info", "The node's version", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        yield _gauge("opencomms_calls_active", "Call legs live on this node", health.get("calls"))
        if s.participants is not None:
            yield _gauge("opencomms_meeting_participants_active", "Legs in group calls now", s.participants())
        yield from _notifications(health.get("notifications") or {})
        yield from _media(health.get("media") or {}, s.tick_histogram)
        yield from _app_hosted(health.get("app_hosted_media") or {})
        yield from _sip(health.get("sip"), s)
        store = health.get("store") or {}
        fam = CounterMetricFamily("opencomms_store_faults", "Storage faults survived, by writer", labels=["writer"])
        for key, writer in (("unit_faults", "calls"), ("notify_faults", "notifications")):
            if isinstance(store.get(key), int):
                fam.add_metric([writer], store[key])
        yield fam
        http = health.get("http") or {}
        yield _gauge("opencomms_http_connections", "Open HTTP connections", http.get("connections"))
        fam = CounterMetricFamily(
            "opencomms_http_guard_refusals", "Connections and requests the HTTP limits refused", labels=["reason"]
        )
        for key in ("refused_total_cap", "refused_per_source", "evicted_for_fairness", "url_too_long"):
            _add(fam, key, http.get(key))
        for key in ("headers_too_large", "body_too_large", "header_timeouts", "body_timeouts"):
            _add(fam, key, http.get(key))
        yield fam


def _gauge(name: str, doc: str, value: Any) -> GaugeMetricFamily:
    fam = GaugeMetricFamily(name, doc)
    if isinstance(value, int | float):
        fam.add_metric([], value)
    return fam


def _add(fam: CounterMetricFamily | GaugeMetricFamily, label: str, value: Any) -> None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        fam.add_metric([label], value)


def _notifications(n: dict[str, Any]) -> Iterator[Metric]:
    fam = CounterMetricFamily(
        "opencomms_notifications", "Notification deliveries by final outcome, and retried attempts", labels=["outcome"]
    )
    for key in ("delivered", "retried", "dropped", "given_up", "refused", "redirected"):
        _add(fam, key, n.get(key))
    yield fam
    yield _gauge("opencomms_notifications_pending", "Notifications accepted and not finished yet", n.get("pending"))


def _media(m: dict[str, Any], ticks: FixedHistogram | None) -> Iterator[Metric]:
    fam = CounterMetricFamily(
        "opencomms_media_engine_events",
        "Media engine thread: ticks run, overruns, skipped and late ticks, errors",
        labels=["event"],
    )
    for key in ("ticks", "overruns", "skipped_ticks", "late_ticks", "command_errors", "tick_errors", "event_errors"):
        _add(fam, key, m.get(key))
    yield fam
    yield _gauge("opencomms_media_engine_legs", "Legs in the media engine", m.get("engine_legs"))
    yield _gauge("opencomms_media_operations", "Media operations (prompts, recordings) running", m.get("operations"))
    yield _gauge("opencomms_media_prompt_bytes", "Prompt audio held in memory", m.get("prompt_bytes_held"))
    if ticks is not None:
        buckets, total = ticks.cumulative()
        fam_h = HistogramMetricFamily(
            "opencomms_media_engine_tick_seconds", "Duration of each 20 ms media tick (commands + mixing)"
        )
        fam_h.add_metric([], buckets, total)
        yield fam_h


def _app_hosted(a: dict[str, Any]) -> Iterator[Metric]:
    yield _gauge("opencomms_apphosted_active", "App-hosted media sockets open", a.get("active"))
    fam = CounterMetricFamily(
        "opencomms_apphosted_frames", "App-hosted media frames: sent to bots, received, and dropped", labels=["event"]
    )
    for key in ("frames_sent", "frames_received", "frames_unsent", "frames_trimmed"):
        _add(fam, key.removeprefix("frames_"), a.get(key))
    yield fam
    fam = CounterMetricFamily("opencomms_apphosted_connections", "App-hosted media socket events", labels=["event"])
    for key in ("connections", "reconnects", "failures", "refused", "bad_messages"):
        _add(fam, key, a.get(key))
    yield fam


def _sip(sip: dict[str, Any] | None, s: Sources) -> Iterator[Metric]:
    if sip is None:
        return
    yield _gauge("opencomms_sip_calls_active", "SIP calls on the gateway", sip.get("calls"))
    yield _gauge("opencomms_rtp_ports_in_use", "RTP port pairs in use", sip.get("rtp_ports_in_use"))
    yield _gauge("opencomms_rtp_streams", "RTP streams running", sip.get("rtp_streams"))
    fam = CounterMetricFamily("opencomms_rtp_stream_faults", "RTP streams stopped after an error")
    if isinstance(sip.get("rtp_stream_faults"), int):
        fam.add_metric([], sip["rtp_stream_faults"])
    yield fam
    if s.sip_endpoint is not None:
        fam = CounterMetricFamily("opencomms_sip_endpoint_events", "SIP endpoint counters", labels=["event"])
        for key, value in s.sip_endpoint().items():
            _add(fam, key, value)
        yield fam
    if s.sip_admission is not None:
        fam = CounterMetricFamily(
            "opencomms_sip_admission", "New SIP calls admitted or refused (by reason)", labels=["outcome"]
        )
        for key, value in s.sip_admission().items():
            _add(fam, key, value)
        yield fam
