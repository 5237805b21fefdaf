"""The console's HTML (server-rendered; every value escaped) and its two static files: one stylesheet and one
script that polls `/console/api/...` and re-renders the tables with DOM text nodes (never innerHTML of data).
No inline script or style, so the Content-Security-Policy can forbid both."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from opencomms.console import views

__all__ = ["CSS", "JS", "apps_page", "failures_page", "live_page", "quality_page", "signin_page", "timeline_page"]

JsonObj = dict[str, Any]

NAV = (("live", "Live calls"), ("quality", "Call quality"), ("failures", "Failures"), ("apps", "Apps & numbers"))


def layout(title: str, body: str, *, operator: str = "", csrf: str = "", page: str = "", data: str = "") -> str:
    nav = ""
    if operator:
        links = "".join(
            f'<a href="/console/{key}"{" class=active" if key == page else ""}>{escape(label)}</a>'
            for key, label in NAV
        )
        nav = (
            f'<nav>{links}<span class="who">{escape(operator)}</span>'
            f'<form method="post" action="/console/signout"><input type="hidden" name="csrf" value="{escape(csrf)}">'
            f'<button type="submit">Sign out</button></form></nav>'
        )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(title)} · opencomms console</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="stylesheet" href="/console/static/console.css">'
        '<script src="/console/static/console.js" defer></script></head>'
        f"<body><header><b>opencomms</b> console</header>{nav}"
        f'<main data-page="{escape(page)}" data-csrf="{escape(csrf)}" data-id="{escape(data)}">'
        f"<h1>{escape(title)}</h1>{body}</main></body></html>"
    )


def signin_page(pre: str, message: str = "") -> str:
    note = f'<p class="error" role="alert">{escape(message)}</p>' if message else ""
    body = (
        f"{note}<form method=post action=/console/signin class=signin>"
        f'<input type=hidden name=pre value="{escape(pre)}">'
        "<label>Operator <input name=name autocomplete=username required maxlength=64></label>"
        "<label>Password <input name=password type=password autocomplete=current-password required maxlength=256>"
        "</label><button type=submit>Sign in</button></form>"
    )
    return layout("Sign in", body)


def _table(headers: tuple[str, ...], rows: Sequence[tuple[str, ...]], table_id: str) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


LIVE_HEADERS = ("Conversation", "Kind", "Started", "Leg", "Type", "App", "Party", "Peer", "State")


def live_rows(data: JsonObj) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for conv in data["conversations"]:
        for i, leg in enumerate(conv["legs"]):
            rows.append(
                (
                    escape(conv["id"][:8]) if i == 0 else "",
                    escape(conv["kind"]) if i == 0 else "",
                    escape(conv["started"]) if i == 0 else "",
                    f'<a href="/console/calls/{escape(leg["id"])}">{escape(leg["id"][:8])}</a>',
                    escape(leg["kind"]),
                    escape(leg["app"]),
                    escape(leg["party"]),
                    escape(leg["peer"]),
                    escape(leg["state"]) + (" (muted)" if leg["muted"] else ""),
                )
            )
    return rows


def live_page(data: JsonObj, operator: str, csrf: str) -> str:
    summary = (
        f'<p id="summary">{data["calls"]} calls, {data["meetings"]} meetings, {data["legs"]} legs '
        '<span class="hint">(refreshes every 2 s)</span></p>'
    )
    body = summary + _table(LIVE_HEADERS, live_rows(data), "live")
    return layout("Live calls and meetings", body, operator=operator, csrf=csrf, page="live")


def timeline_rows(data: JsonObj) -> list[tuple[str, ...]]:
    return [
        (f"{e['ms']:.1f} ms", escape(e["kind"]), escape(e["leg"]), f"<code>{escape(e['text'])}</code>")
        for e in data["entries"]
    ]


def timeline_page(call_id: str, data: JsonObj | None, operator: str, csrf: str) -> str:
    if data is None:
        body = '<p class="error">No timeline for this call (unknown id, or it ended long ago).</p>'
    else:
        body = (
            f"<p>Conversation <code>{escape(data['conversationId'])}</code>, first seen {escape(data['started'])}</p>"
            + _table(("Time", "Source", "Leg", "What"), timeline_rows(data), "timeline")
        )
    return layout(f"Call {call_id[:8]}", body, operator=operator, csrf=csrf, page="timeline", data=call_id)


_QUALITY_KEYS = ("id", "start", "type", "jitterMs", "lossPercent", "rttMs")


def quality_page(rows: list[JsonObj], operator: str, csrf: str) -> str:
    charts = "".join(
        f"<figure>{views.quality_svg(rows, field, title, unit, warn)}</figure>"
        for field, title, unit, warn in (
            ("jitterMs", "Jitter, worst stream per call", "ms", 30.0),
            ("lossPercent", "Packet loss, worst stream per call", "%", 1.0),
            ("rttMs", "Round-trip time, per call", "ms", 300.0),
        )
    )
    table = _table(
        ("Record", "Start", "Type", "Jitter ms", "Loss %", "RTT ms"),
        [
            tuple(
                escape("" if r[k] is None else str(r[k]))
                for k in ("id", "start", "type", "jitterMs", "lossPercent", "rttMs")
            )
            for r in reversed(rows)
        ],
        "quality",
    )
    body = f"<p>The latest {len(rows)} call records with measured media (SIP legs, from RTCP).</p>{charts}{table}"
    return layout("Call quality", body, operator=operator, csrf=csrf, page="quality")


FAILURE_HEADERS = ("When", "App", "Call", "Code", "Subcode", "Message")


def failure_rows(rows: list[JsonObj]) -> list[tuple[str, ...]]:
    return [
        (
            escape(r["at"]),
            escape(r["app"]),
            f'<a href="/console/calls/{escape(r["callId"])}">{escape(r["callId"][:8])}</a>',
            escape(str(r["resultInfo"]["code"])),
            escape(str(r["resultInfo"]["subcode"])),
            escape(r["resultInfo"]["message"]),
        )
        for r in rows
    ]


def failures_page(rows: list[JsonObj], operator: str, csrf: str) -> str:
    body = "<p>Legs that ended with a resultInfo code of 400 or more, newest first.</p>" + _table(
        FAILURE_HEADERS, failure_rows(rows), "failures"
    )
    return layout("Recent failures", body, operator=operator, csrf=csrf, page="failures")


def apps_page(rows: list[JsonObj], operator: str, csrf: str) -> str:
    table_rows = [
        (
            escape(r["name"]),
            escape(r["tenant"]),
            f"<code>{escape(r['id'])}</code>",
            escape(", ".join(r["permissions"])),
            escape(r["webhook"]),
            "<br>".join(escape(" ".join(filter(None, (n["name"], n["phone"], n["sip"])))) for n in r["numbers"]),
        )
        for r in rows
    ]
    body = _table(("App", "Tenant", "Id", "Permissions", "Webhook", "Numbers"), table_rows, "apps")
    return layout("Apps and numbers", body, operator=operator, csrf=csrf, page="apps")


CSS = b"""
body{font:14px system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#123;color:#fff;padding:8px 16px}
nav{display:flex;gap:12px;align-items:center;padding:8px 16px;background:#e8eef4}
nav a{color:#124;text-decoration:none}nav a.active{font-weight:bold}
nav .who{margin-left:auto;color:#555}nav form{display:inline}
main{padding:8px 16px}table{border-collapse:collapse;margin:8px 0;width:100%}
th,td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f0}code{font-size:12px}.error{color:#a00}.hint{color:#888}
form.signin{display:flex;flex-direction:column;gap:8px;max-width:320px}
svg.chart{background:#fff;border:1px solid #ddd}svg .bar{fill:#3a7}svg .bar.warn{fill:#d63}
svg .axis{stroke:#888}svg .warn-line{stroke:#d63;stroke-dasharray:4 3}svg .title{font-size:13px}
svg .label{font-size:11px;fill:#666}figure{margin:8px 0}
"""

JS = b"""
'use strict';
(function () {
  const main = document.querySelector('main');
  if (!main) return;
  const page = main.dataset.page;
  const csrf = main.dataset.csrf;
  function cell(row, text, href) {
    const td = document.createElement('td');
    if (href) { const a = document.createElement('a'); a.href = href; a.textContent = text; td.appendChild(a); }
    else td.textContent = text;
    row.appendChild(td);
  }
  function fill(id, rows) {
    const tbody = document.querySelector('#' + id + ' tbody');
    if (!tbody) return;
    tbody.replaceChildren();
    for (const cells of rows) {
      const tr = document.createElement('tr');
      for (const c of cells) cell(tr, c[0], c[1]);
      tbody.appendChild(tr);
    }
  }
  async function get(path) {
    const r = await fetch('/console/api/' + path, {headers: {'X-CSRF-Token': csrf}, credentials: 'same-origin'});
    if (r.status === 401) { window.location = '/console/signin'; return null; }
    return r.ok ? r.json() : null;
  }
  const render = {
    live: async function () {
      const d = await get('live');
      if (!d) return;
      document.getElementById('summary').firstChild.textContent =
        d.calls + ' calls, ' + d.meetings + ' meetings, ' + d.legs + ' legs ';
      const rows = [];
      for (const c of d.conversations) c.legs.forEach(function (l, i) {
        rows.push([[i ? '' : c.id.slice(0, 8)], [i ? '' : c.kind], [i ? '' : c.started],
          [l.id.slice(0, 8), '/console/calls/' + l.id], [l.kind], [l.app], [l.party], [l.peer],
          [l.state + (l.muted ? ' (muted)' : '')]]);
      });
      fill('live', rows);
    },
    timeline: async function () {
      const d = await get('calls/' + encodeURIComponent(main.dataset.id));
      if (!d) return;
      fill('timeline', d.entries.map(function (e) {
        return [[e.ms.toFixed(1) + ' ms'], [e.kind], [e.leg], [e.text]];
      }));
    },
    failures: async function () {
      const d = await get('failures');
      if (!d) return;
      fill('failures', d.map(function (f) {
        return [[f.at], [f.app], [f.callId.slice(0, 8), '/console/calls/' + f.callId],
          [String(f.resultInfo.code)], [String(f.resultInfo.subcode)], [f.resultInfo.message]];
      }));
    }
  };
  if (render[page]) {
    setInterval(function () { render[page]().catch(function () {}); }, 2000);
  }
})();
"""
