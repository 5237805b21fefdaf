"""Structured logging with privacy by default: JSON lines carrying request and call ids, with phone numbers,
SIP user parts and display names masked before anything is written.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

_PHONE = re.compile(r"(?<![\w-])\+?\d[\d\s().-]{6,}\d(?![\w-])")
_SIP = re.compile(r"\b(sips?:)([^@\s;>]+)@", re.IGNORECASE)
_NAME_KEYS = frozenset({"displayName", "display_name", "name", "caller_name"})
_NUMBER_KEYS = frozenset({"phone", "phone_number", "number", "from_number", "to_number"})
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()) | {"message", "asctime"}


def mask_phone(number: str) -> str:
    """+14255550123 -> +1425*****23: enough to tell numbers apart in an incident, not to dial them."""
    digits = [c for c in number if c.isdigit()]
    if len(digits) < 6:
        return "*" * len(number)
    keep_head, keep_tail = 4, 2
    masked = digits[:keep_head] + ["*"] * (len(digits) - keep_head - keep_tail) + digits[-keep_tail:]
    return ("+" if number.strip().startswith("+") else "") + "".join(masked)


def mask_name(name: str) -> str:
    """'John Smith' -> 'J*** S****'."""
    return " ".join(w[:1] + "*" * (len(w) - 1) for w in name.split())


def mask_text(text: str) -> str:
    """Mask phone numbers and SIP user parts that appear anywhere in free text."""
    text = _SIP.sub(lambda m: f"{m.group(1)}{'*' * min(len(m.group(2)), 8)}@", text)
    return _PHONE.sub(
        lambda m: mask_phone(m.group(0)) if sum(c.isdigit() for c in m.group(0)) >= 7 else m.group(0), text
    )


def mask_value(key: str, value: Any) -> Any:
    if isinstance(value, str):
        if key in _NAME_KEYS:
            return mask_name(value)
        if key in _NUMBER_KEYS:
            return mask_phone(value)
        return mask_text(value)
    if isinstance(value, dict):
        return {k: mask_value(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_value(key, v) for v in value]
    return value


@contextmanager
def request_context(request_id: str) -> Iterator[None]:
    token = _request_id.set(request_id)
    try:
        yield
    finally:
        _request_id.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra fields included, everything masked."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": mask_text(record.getMessage()),
        }
        request_id = _request_id.get()
        if request_id:
            out["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = mask_value(key, value)
        if record.exc_info:
            out["exc"] = mask_text(self.formatException(record.exc_info))
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    """Human-readable lines for development, masked the same way."""

    def format(self, record: logging.LogRecord) -> str:
        extras = {
            k: mask_value(k, v) for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")
        }
        tail = " ".join(f"{k}={v}" for k, v in extras.items())
        line = f"{record.levelname.lower():7} {record.name}: {mask_text(record.getMessage())}"
        if record.exc_info:
            line += "\n" + mask_text(self.formatException(record.exc_info))
        return f"{line} {tail}".rstrip()


def setup_logging(level: str = "info", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
