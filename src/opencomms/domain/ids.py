"""Identifier helpers: random GUIDs for every id, and Graph's case- and dash-insensitive id comparison.

Nothing personal ever goes into an id.
"""

from __future__ import annotations

import re
import uuid

_GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")


def new_id() -> str:
    """A new random GUID in Graph's lower-case dashed form."""
    return str(uuid.uuid4())


def is_guid(value: str) -> bool:
    """True if `value` is a GUID, dashed or not, in any case."""
    return bool(_GUID_RE.match(value))


def normalize_id(value: str) -> str:
    """Canonical form of an id: GUIDs (with or without dashes, any case) become lower-case dashed."""
    if _GUID_RE.match(value):
        return str(uuid.UUID(value))
    return value
