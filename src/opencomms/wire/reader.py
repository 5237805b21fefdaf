"""Validation primitives for Graph request bodies: typed field access with precise error paths.

Tolerant where Graph's own material is inconsistent (enum case, `@odata.type` prefix); strict on types.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from opencomms.domain.errors import BadRequest

JsonObj = dict[str, Any]

_INT_STRING = re.compile(r"\s*-?[0-9]{1,18}\s*")
"""A number sent as a string: ASCII digits only, and short enough that int() is cheap and cannot fail."""


def _where(path: str) -> str:
    return f"'{path}'" if path else "the body"


def _quote(value: str, limit: int = 64) -> str:
    """A client's value for an error message: quoted, and cut short so a huge value is not reflected back."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + "…"


def as_object(value: Any, path: str) -> JsonObj:
    if not isinstance(value, dict):
        raise BadRequest(f"'{path}' must be a JSON object." if path else "The body must be a JSON object.")
    return value


def odata_type(obj: Mapping[str, Any], path: str, allowed: Iterable[str]) -> str | None:
    """The object's `@odata.type` normalised to `#microsoft.graph.x`, or None if absent.

    `allowed` lists short names (e.g. "call"); matching ignores case and a missing '#'.
    """
    raw = obj.get("@odata.type")
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise BadRequest(f"'{path + '.' if path else ''}@odata.type' must be a string.")
    short = raw.lstrip("#")
    if short.lower().startswith("microsoft.graph."):
        short = short[len("microsoft.graph.") :]
    for name in allowed:
        if name.lower() == short.lower():
            return f"#microsoft.graph.{name}"
    names = ", ".join(f"#microsoft.graph.{n}" for n in allowed)
    raise BadRequest(f"Unknown @odata.type {_quote(raw)} at {_where(path)}; expected one of: {names}.")


def string(obj: Mapping[str, Any], key: str, path: str, *, required: bool = False, max_len: int = 4096) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise BadRequest(f"'{path}{key}' is required.")
        return None
    if not isinstance(value, str):
        raise BadRequest(f"'{path}{key}' must be a string.")
    if len(value) > max_len:
        raise BadRequest(f"'{path}{key}' is longer than {max_len} characters.")
    if required and not value:
        raise BadRequest(f"'{path}{key}' must not be empty.")
    return value


def boolean(obj: Mapping[str, Any], key: str, path: str) -> bool | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise BadRequest(f"'{path}{key}' must be true or false.")
    return value


def integer(obj: Mapping[str, Any], key: str, path: str, *, lo: int | None = None, hi: int | None = None) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, str) and _INT_STRING.fullmatch(value):
        value = int(value)  # Graph examples sometimes send numbers as strings
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRequest(f"'{path}{key}' must be an integer.")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise BadRequest(f"'{path}{key}' must be between {lo} and {hi}.")
    return value


def array(
    obj: Mapping[str, Any],
    key: str,
    path: str,
    *,
    required: bool = False,
    min_items: int = 0,
    max_items: int = 1000,
) -> list[Any] | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise BadRequest(f"'{path}{key}' is required.")
        return None
    if not isinstance(value, list):
        raise BadRequest(f"'{path}{key}' must be an array.")
    if len(value) < min_items:
        raise BadRequest(f"'{path}{key}' needs at least {min_items} item(s).")
    if len(value) > max_items:
        raise BadRequest(f"'{path}{key}' accepts at most {max_items} items.")
    return value


def enum_value(value: Any, path: str, members: Iterable[str]) -> str:
    """Case-insensitive enum parsing returning the canonical camelCase member."""
    if not isinstance(value, str):
        raise BadRequest(f"'{path}' must be a string.")
    for member in members:
        if member.lower() == value.lower():
            return member
    raise BadRequest(f"'{path}' has unknown value {_quote(value)}; expected one of: {', '.join(members)}.")


def url(obj: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> str | None:
    value = string(obj, key, path, required=required, max_len=2048)
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        hostname = parts.hostname
    except ValueError:  # e.g. an unclosed IPv6 bracket, or characters that NFKC-normalise into delimiters
        raise BadRequest(f"'{path}{key}' must be an absolute http(s) URL.") from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise BadRequest(f"'{path}{key}' must be an absolute http(s) URL.")
    return value
