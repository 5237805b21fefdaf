"""What the console shows, as JSON-able data (the pages and /console/api/ share them) and inline SVG charts.

Read-only views of the calling core (live legs), the timelines, the call records in the store and the directory.
Phone numbers are masked and SIP user parts hidden, as in the logs; app and instance names are shown (they are
the operator's own configuration, not callers' data).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from opencomms.calling import records
from opencomms.console.timeline import Timelines, party
from opencomms.directory import Directory
from opencomms.logs import mask_phone, mask_text
from opencomms.store.base import Store

__all__ = ["apps", "failures", "live", "quality", "quality_svg", "timeline"]

JsonObj = dict[str, Any]
_DURATION = re.compile(r"^PT(\d+(?:\.\d+)?)S$")


def when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _names(directory: Directory) -> Callable[[str], str | None]:
    cache: dict[str, str | None] = {}

    def name(ident: str) -> str | None:
        if ident not in cache:
            app = directory.get_app(ident)
            inst = None if app is not None else directory.get_instance(ident)
            cache[ident] = app.display_name if app else inst.display_name if inst else None
        return cache[ident]

    return name


def live(calls: Any, directory: Directory) -> JsonObj:
    """Live conversations (calls and meetings) with their legs, newest first."""
    names = _names(directory)
    convs: dict[str, JsonObj] = {}
    for leg in calls.legs():
        conv = convs.get(leg.conversation_id)
        if conv is None:
            kind = calls.conversation_kind(leg.conversation_id)
            conv = convs[leg.conversation_id] = {
                "id": leg.conversation_id,
                "kind": str(kind) if kind is not None else "unknown",
                "started": leg.created_at,
                "legs": [],
            }
        conv["started"] = min(conv["started"], leg.created_at)
        other = (leg.targets[0] if leg.targets else {}) if leg.direction.value == "outgoing" else leg.source
        conv["legs"].append(
            {
                "id": leg.id,
                "kind": "sip" if leg.is_external else "bot",
                "app": names(leg.app_id) or "" if leg.app_id else "",
                "state": str(leg.state),
                "direction": str(leg.direction),
                "party": party(leg.identity, names),
                "peer": party(other, names),
                "muted": leg.muted,
                "since": when(leg.created_at),
            }
        )
    rows = sorted(convs.values(), key=lambda c: -c["started"])
    for row in rows:
        row["started"] = when(row["started"])
    meetings = sum(1 for c in rows if c["kind"] == "meeting")
    return {
        "calls": len(rows) - meetings,
        "meetings": meetings,
        "legs": sum(len(c["legs"]) for c in rows),
        "conversations": rows,
    }


def timeline(timelines: Timelines, calls: Any, call_id: str) -> JsonObj | None:
    """The timeline of the conversation of leg `call_id` (or of conversation `call_id`); None if unknown."""
    key = call_id.strip().lower()
    conv = timelines.conversation_of(key)
    if conv is None:
        leg = calls.leg(key)
        conv = leg.conversation_id if leg is not None else (key if timelines.entries(key) else None)
    if conv is None:
        return None
    entries = timelines.entries(conv)
    t0 = entries[0].at if entries else 0.0
    rows = [{**e.json(), "ms": round(1000 * (e.at - t0), 1)} for e in entries]
    return {"conversationId": conv, "started": when(t0) if entries else "", "entries": rows}


def _seconds(value: Any) -> float | None:
    match = _DURATION.match(value) if isinstance(value, str) else None
    return float(match.group(1)) if match else None


def quality(store: Store, limit: int = 30) -> list[JsonObj]:
    """The latest call records with measured media (SIP legs): worst jitter, loss and round trip of each."""
    rows: list[JsonObj] = []
    for _key, doc in store.scan(records.KIND):
        record = doc.get("record") or {}
        jitter: list[float] = []
        loss: list[float] = []
        rtt: list[float] = []
        for session in record.get("sessions") or ():
            for segment in session.get("segments") or ():
                for media in segment.get("media") or ():
                    for stream in media.get("streams") or ():
                        if (j := _seconds(stream.get("averageJitter"))) is not None:
                            jitter.append(j * 1000)
                        if (r := _seconds(stream.get("averageRoundTripTime"))) is not None:
                            rtt.append(r * 1000)
                        if isinstance(stream.get("averagePacketLossRate"), int | float):
                            loss.append(float(stream["averagePacketLossRate"]) * 100)
        if not (jitter or loss or rtt):
            continue
        rows.append(
            {
                "id": record.get("id"),
                "start": record.get("startDateTime"),
                "type": record.get("type"),
                "jitterMs": round(max(jitter), 2) if jitter else None,
                "lossPercent": round(max(loss), 2) if loss else None,
                "rttMs": round(max(rtt), 2) if rtt else None,
            }
        )
    rows.sort(key=lambda r: str(r["start"]))
    return rows[-limit:]


def quality_svg(rows: list[JsonObj], field: str, title: str, unit: str, warn: float) -> str:
    """An inline SVG bar chart of `field` over `rows` (oldest left); bars over `warn` drawn in the warning class."""
    width, height, pad = 640, 180, 30
    values = [float(r[field]) for r in rows if r.get(field) is not None]
    top = max([warn * 1.25, *values]) if values else warn
    n = max(len(values), 1)
    bar = min((width - 2 * pad) / n, 48.0)
    parts = [
        f'<svg class="chart" role="img" aria-label="{html.escape(title)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="{pad}" y="16" class="title">{html.escape(title)} ({html.escape(unit)})</text>',
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" class="axis"/>',
    ]
    y_warn = height - pad - (height - 2 * pad) * warn / top
    parts.append(f'<line x1="{pad}" y1="{y_warn:.1f}" x2="{width - pad}" y2="{y_warn:.1f}" class="warn-line"/>')
    parts.append(f'<text x="{width - pad}" y="{y_warn - 3:.1f}" class="label" text-anchor="end">{warn:g}</text>')
    for i, value in enumerate(values):
        h = (height - 2 * pad) * value / top
        x, y = pad + i * bar + 1, height - pad - h
        cls = "bar warn" if value > warn else "bar"
        parts.append(
            f'<rect class="{cls}" x="{x:.1f}" y="{y:.1f}" width="{max(bar - 2, 1):.1f}" height="{h:.1f}">'
            f"<title>{value:g} {html.escape(unit)}</title></rect>"
        )
    if not values:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" class="label" text-anchor="middle">no data yet</text>')
    parts.append("</svg>")
    return "".join(parts)


def failures(timelines: Timelines, directory: Directory) -> list[JsonObj]:
    names = _names(directory)
    out = []
    for failure in reversed(timelines.failures):
        row = failure.json()
        row["app"] = names(failure.app_id) or ("(phone leg)" if not failure.app_id else failure.app_id[:8])
        row["at"] = when(failure.at)
        out.append(row)
    return out


def apps(directory: Directory) -> list[JsonObj]:
    """Applications with their permissions, webhook host and numbers (masked)."""
    rows = []
    for app in sorted(directory.list_apps(), key=lambda a: a.display_name.lower()):
        tenant = directory.get_tenant(app.tenant_id)
        rows.append(
            {
                "id": app.id,
                "name": app.display_name,
                "tenant": tenant.name if tenant is not None else app.tenant_id,
                "permissions": sorted(app.permissions),
                "webhook": _host(app.callback_url),
                "numbers": [
                    {
                        "name": inst.display_name,
                        "phone": mask_phone(inst.phone_number) if inst.phone_number else "",
                        "sip": mask_text(inst.sip_uri) if inst.sip_uri else "",
                    }
                    for inst in directory.list_instances(app.id)
                ],
            }
        )
    return rows


def _host(url: str | None) -> str:
    if not url:
        return ""
    rest = url.split("://", 1)[-1]
    return url.split("://", 1)[0] + "://" + rest.split("/", 1)[0] if "://" in url else ""
