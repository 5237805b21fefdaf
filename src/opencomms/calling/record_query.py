"""Listing call records as Graph does: `$filter` on `startDateTime`, `$top` and a skip token, `$expand`.

`GET /communications/callRecords` answers a page of a tenant's records in (startDateTime, id) order. The filter
takes Graph's form for this resource: comparisons of `startDateTime` with `ge`, `gt`, `le`, `lt` (and `eq`) against
a date-time literal (bare, or quoted), joined by `and`. Anything else is a `BadRequest` that names the form.
The skip token is opaque to clients: the (startDateTime, id) of the last record of the page, so pages stay stable
while new records arrive. Pure apart from the store it reads.
"""

from __future__ import annotations

import base64
import binascii
import json
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from opencomms.calling import records
from opencomms.calling.model import JsonObj
from opencomms.domain.errors import BadRequest
from opencomms.store.base import Store

__all__ = ["DEFAULT_PAGE", "MAX_PAGE", "Page", "RecordQuery", "list_records", "parse_filter", "parse_query"]

DEFAULT_PAGE = 60
MAX_PAGE = 1000

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "ge": operator.ge,
    "gt": operator.gt,
    "le": operator.le,
    "lt": operator.lt,
    "eq": operator.eq,
}
_CLAUSE = re.compile(r"^\s*startDateTime\s+(ge|gt|le|lt|eq)\s+(?:'([^']*)'|(\S+))\s*$", re.IGNORECASE)
_FORM = (
    "Invalid $filter: only comparisons of startDateTime with ge, gt, le, lt or eq against a date-time "
    "(e.g. startDateTime ge 2024-01-01T00:00:00Z), joined by 'and', are supported."
)


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"Invalid $filter: {text!r} is not an ISO 8601 date-time.") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def parse_filter(text: str) -> list[tuple[Callable[[Any, Any], bool], datetime]]:
    """The comparisons of a `$filter` ('' : none); BadRequest for anything outside the supported form."""
    if not text.strip():
        return []
    out: list[tuple[Callable[[Any, Any], bool], datetime]] = []
    for clause in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
        match = _CLAUSE.match(clause.strip("() "))
        if match is None:
            raise BadRequest(_FORM)
        op, quoted, bare = match.groups()
        out.append((_OPS[op.lower()], _instant(quoted if quoted is not None else bare)))
    return out


@dataclass(frozen=True, slots=True)
class RecordQuery:
    """A validated list request."""

    filters: tuple[tuple[Callable[[Any, Any], bool], datetime], ...] = ()
    top: int = DEFAULT_PAGE
    after: tuple[str, str] | None = None
    """(startDateTime, id) of the last record already returned (from the skip token)."""
    expand: str = ""


@dataclass(frozen=True, slots=True)
class Page:
    items: list[JsonObj]
    next_token: str | None


def encode_token(start: str, record_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([start, record_id]).encode()).decode().rstrip("=")


def _decode_token(token: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        start, record_id = json.loads(raw)
        if isinstance(start, str) and isinstance(record_id, str):
            return start, record_id
    except (ValueError, binascii.Error, TypeError):
        pass
    raise BadRequest("Invalid $skiptoken: use the @odata.nextLink of the previous page as it is.")


def parse_query(query: dict[str, list[str]]) -> RecordQuery:
    """A RecordQuery from parsed query parameters ($filter, $top, $skiptoken, $expand; also without '$')."""

    def one(name: str) -> str | None:
        values = query.get(f"${name}") or query.get(name)
        return values[0] if values else None

    top = DEFAULT_PAGE
    if (raw_top := one("top")) is not None:
        if not raw_top.strip().isdigit() or not 1 <= int(raw_top) <= MAX_PAGE:
            raise BadRequest(f"Invalid $top: give a whole number from 1 to {MAX_PAGE}.")
        top = int(raw_top)
    token = one("skiptoken")
    return RecordQuery(
        filters=tuple(parse_filter(one("filter") or "")),
        top=top,
        after=None if token is None else _decode_token(token),
        expand=one("expand") or "",
    )


def _start(record: JsonObj) -> datetime:
    return _instant(str(record["startDateTime"]))


def list_records(store: Store, tenant_id: str, q: RecordQuery) -> Page:
    """One page of `tenant_id`'s records matching `q`, in (startDateTime, id) order."""
    rows: list[tuple[str, str]] = []
    for key, doc in store.scan(records.KIND):
        if doc.get("tenantId") != tenant_id:
            continue
        record = doc["record"]
        start = _start(record)
        if all(op(start, bound) for op, bound in q.filters):
            rows.append((start.isoformat(), key))
    rows.sort()
    if q.after is not None:
        rows = [row for row in rows if row > q.after]
    page, more = rows[: q.top], len(rows) > q.top
    items = [v for _, key in page if (v := records.view(store, tenant_id, key, q.expand)) is not None]
    return Page(items, encode_token(*page[-1]) if more and page else None)
