"""`opencomms status`: how a node is doing, readable. With --url it asks the running node (/healthz and /readyz);
without, it reads the store (directory counts, calls by state, notifications waiting)."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections import Counter
from typing import Annotated, Any

import typer

from opencomms.cli.calls import stored_legs
from opencomms.cli.common import ConfigOpt, JsonOpt, StoreOpt, fail, open_cli_store, show

TIMEOUT = 5.0
"""Seconds allowed for each request to the node."""


def _get(url: str, insecure: bool) -> tuple[int, Any]:
    context = ssl._create_unverified_context() if insecure else None  # the operator asked for it
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT, context=context) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:  # /readyz answers 503 with a body naming what is not ready
        try:
            return exc.code, json.loads(exc.read())
        except ValueError:
            return exc.code, None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        fail(f"no node answers at {url}: {reason} (is it running? check --url)")


def _from_node(url: str, insecure: bool) -> dict[str, Any]:
    if not url.lower().startswith(("http://", "https://")):
        fail(f"--url must be the node's http(s) base URL, e.g. http://127.0.0.1:8080: {url!r}")
    base = url.rstrip("/")
    _, health = _get(f"{base}/healthz", insecure)
    code, ready = _get(f"{base}/readyz", insecure)
    if not isinstance(health, dict):
        fail(f"{base}/healthz did not answer JSON: is this an opencomms node?")
    media = health.get("media") or {}
    notes = health.get("notifications") or {}
    sip = health.get("sip")
    return {
        "node": base,
        "version": health.get("version"),
        "ready": code == 200,
        "not_ready": [] if code == 200 else sorted((ready or {}).get("failing", [])) if code != 404 else ["no /readyz"],
        "calls": health.get("calls"),
        "sip": "disabled" if sip is None else f"port {sip.get('port')}, {sip.get('calls')} calls",
        "media": f"{media.get('engine_legs', 0)} legs, tick p99 {media.get('tick_p99_ms')} ms, "
        f"{media.get('overruns', 0)} overruns",
        "notifications": ", ".join(f"{k} {v}" for k, v in notes.items() if isinstance(v, int | float)),
        "store_faults": health.get("store"),
        "cluster": _cluster(health.get("cluster")),
    }


def _cluster(part: Any) -> str:
    """One line of /healthz's cluster part: the role, and on a cluster the node id, leases and Redis."""
    if not isinstance(part, dict) or part.get("role") != "node":
        return "single node"
    return (
        f"node {part.get('node_id')}: {part.get('leases')} conversations leased, Redis {part.get('redis')}, "
        f"{part.get('forwarded')} requests forwarded, {part.get('taken_over')} conversations taken over"
    )


def _from_store(config_path: Any, store: str | None) -> dict[str, Any]:
    st = open_cli_store(config_path, store)
    states = Counter(str(leg.get("state")) for leg, _ in stored_legs(st))
    return {
        "store": store or "(from configuration)",
        "node": "not asked (give --url to ask a running node)",
        "tenants": sum(1 for _ in st.scan("tenant")),
        "applications": sum(1 for _ in st.scan("app")),
        "instances": sum(1 for _ in st.scan("instance")),
        "calls": sum(states.values()),
        "calls_by_state": dict(sorted(states.items())),
        "notifications_waiting": len(st.outbox_load()),
        "call_records": sum(1 for _ in st.scan("callRecord")),
    }


def status(
    url: Annotated[str | None, typer.Option(help="Base URL of a running node, e.g. http://127.0.0.1:8080.")] = None,
    insecure: Annotated[bool, typer.Option(help="Do not verify the node's TLS certificate (dev certs).")] = False,
    config_path: ConfigOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """How a node is doing: ask it (--url), or read the store when no node runs."""
    show(_from_node(url, insecure) if url else _from_store(config_path, store), as_json)
