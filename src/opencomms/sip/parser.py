"""The SIP parser: bytes to `SipRequest` / `SipResponse`, under hostile-input limits.

Owns: `parse` (datagram and stream framing of the body), `ParseLimits`, the validation a UAS needs before it can
trust a message (RFC 3261 §8.2, §18.3; RFC 4475), `SipParseError` with the status a UAS should answer, and
`read_head` (the readable part of a message too broken to parse, to answer it).
Must not: do I/O, keep state between messages, build responses, or know about transactions and dialogs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from opencomms.sip.headers import (
    LIST_HEADERS,
    HeaderError,
    Headers,
    is_token,
    parse_cseq,
    parse_name_addr,
    parse_via,
    split_list,
)
from opencomms.sip.message import KNOWN_METHODS, SIP_VERSION, SipMessage, SipRequest, SipResponse, reason_phrase
from opencomms.sip.uri import AbsoluteUri, SipUri, UriError, parse_uri

__all__ = ["DEFAULT_LIMITS", "ParseLimits", "SipParseError", "parse", "read_head"]


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """Hostile-input bounds. A message larger than `max_message` is refused with 513 (413 when the body is what
    makes it too large); more than `max_headers` fields or a physical line longer than `max_line` is a 400."""

    max_message: int = 64 * 1024
    max_headers: int = 128
    max_line: int = 8 * 1024


DEFAULT_LIMITS = ParseLimits()


class SipParseError(Exception):
    """A message that must not be processed. `status`/`reason` is what a UAS should answer if it is a request;
    `start_line` and `headers` are what could be read (for `error_response`), or None."""

    def __init__(self, status: int, reason: str, start_line: str | None = None, headers: Headers | None = None):
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.start_line = start_line
        self.headers = headers

    @property
    def is_request(self) -> bool:
        return self.start_line is not None and not self.start_line.upper().startswith("SIP/")

    @property
    def method(self) -> str | None:
        if not self.is_request or self.start_line is None:
            return None
        return self.start_line.split(" ", 1)[0]


_HEAD_END = re.compile(rb"\r?\n\r?\n")
_VERSION_RE = re.compile(r"SIP/(\d{1,3})\.(\d{1,3})", re.IGNORECASE)
_STATUS_LINE_RE = re.compile(r"(SIP/\d{1,3}\.\d{1,3}) (\d{3})(?: (.*))?", re.IGNORECASE | re.DOTALL)


def parse(data: bytes, limits: ParseLimits = DEFAULT_LIMITS, *, stream: bool = False) -> SipMessage:
    """Parse one message. `stream=True` for a frame cut from TCP (Content-Length is mandatory and exact);
    otherwise a datagram (a longer body is truncated to Content-Length, a shorter one is an error).
    Raise SipParseError carrying the status a UAS should answer."""
    n = len(data)
    start = 0
    while start < n and data[start] in b"\r\n":
        start += 1
    m = _HEAD_END.search(data, start)
    head_end, body_start = (m.start(), m.end()) if m else (n, n)
    if n > limits.max_message:
        readable = head_end - start <= limits.max_message and m is not None
        status = 413 if readable else 513
        if readable:
            line, headers, _ = _split_head(data[start:head_end], limits)
            raise SipParseError(status, reason_phrase(status), line, headers)
        raise SipParseError(status, reason_phrase(status))
    if head_end <= start:
        raise SipParseError(400, "Empty Message")
    start_line, headers, head_error = _split_head(data[start:head_end], limits)
    message = _parse_start_line(start_line, headers)
    if head_error is not None:
        raise head_error
    _validate(message, start_line, limits)
    body = data[body_start:]
    length_text = message.headers.get("Content-Length")
    length = int(length_text) if length_text is not None else None
    if length is None:
        if stream:
            raise SipParseError(400, "Missing Content-Length", start_line, headers)
    elif length > len(body):
        raise SipParseError(400, "Content-Length Exceeds Message", start_line, headers)
    else:
        body = body[:length]
    message.body = bytes(body)
    return message


def read_head(head: bytes, limits: ParseLimits = DEFAULT_LIMITS) -> tuple[str, Headers]:
    """Start line and header fields of a header block, without validation (to answer what cannot be parsed)."""
    start_line, headers, _ = _split_head(head.lstrip(b"\r\n"), limits)
    return start_line, headers


def _split_head(raw: bytes, limits: ParseLimits) -> tuple[str, Headers, SipParseError | None]:
    """Start line and unfolded header fields. The first syntax error is returned (not raised) so that the caller can
    still use the readable fields to answer."""
    text = raw.decode("utf-8", "surrogateescape")
    lines = text.split("\n")
    start_line = lines[0][:-1] if lines[0].endswith("\r") else lines[0]
    fields: list[tuple[str, str]] = []
    error: str | None = None
    if not text.isascii():  # SIP text is UTF-8 (RFC 3261 §7.3.1): other bytes are a 400, never passed on
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            error = "Invalid UTF-8"
    if len(start_line) > limits.max_line:
        error = "Request-Line Too Long"
        start_line = start_line[: limits.max_line]
    for line in lines[1:]:
        if line.endswith("\r"):
            line = line[:-1]
        if len(line) > limits.max_line:
            error = error or "Header Line Too Long"
            continue
        if "\r" in line or "\x00" in line.split('"', 1)[0]:
            error = error or "Invalid Character In Header"
            continue
        if line[:1] in (" ", "\t"):
            if not fields:
                error = error or "Continuation Line Without Header"
                continue
            name, value = fields[-1]
            more = line.strip(" \t")
            fields[-1] = (name, f"{value} {more}" if value and more else value or more)
            continue
        if not line:
            continue
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not is_token(name):
            error = error or "Malformed Header Line"
            continue
        fields.append((name, value.strip(" \t")))
        if len(fields) > limits.max_headers:
            return start_line, Headers(fields), SipParseError(400, "Too Many Headers", start_line, Headers(fields))
    headers = Headers(fields)
    return start_line, headers, None if error is None else SipParseError(400, error, start_line, headers)


def _parse_start_line(line: str, headers: Headers) -> SipMessage:
    if line[:4].upper() == "SIP/":
        m = _STATUS_LINE_RE.fullmatch(line)
        if m is None:
            raise SipParseError(400, "Malformed Status-Line", line, headers)
        version, code, reason = m.group(1), int(m.group(2)), m.group(3) or ""
        if version.upper() != SIP_VERSION:
            raise SipParseError(505, "Version Not Supported", line, headers)
        if not 100 <= code <= 699:
            raise SipParseError(400, "Invalid Status Code", line, headers)
        return SipResponse(code, reason, headers)
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SipParseError(400, "Malformed Request-Line", line, headers)
    method, uri_text, version = parts
    vm = _VERSION_RE.fullmatch(version)
    if vm is None:
        raise SipParseError(400, "Malformed SIP-Version", line, headers)
    if (vm.group(1), vm.group(2)) != ("2", "0"):
        raise SipParseError(505, "Version Not Supported", line, headers)
    if not is_token(method):
        raise SipParseError(400, "Malformed Method", line, headers)
    try:
        uri = parse_uri(uri_text)
    except UriError:
        raise SipParseError(400, "Malformed Request-URI", line, headers) from None
    if isinstance(uri, AbsoluteUri):
        raise SipParseError(416, "Unsupported URI Scheme", line, headers)
    if isinstance(uri, SipUri) and uri.headers:
        raise SipParseError(400, "Headers Not Allowed In Request-URI", line, headers)
    return SipRequest(method, uri, headers, version=SIP_VERSION)


def _digits(value: str, max_len: int) -> bool:
    return value.isascii() and value.isdigit() and len(value) <= max_len


def _validate(message: SipMessage, line: str, limits: ParseLimits) -> None:
    original = message.headers

    def fail(reason: str, status: int = 400) -> SipParseError:
        return SipParseError(status, reason, line, original)

    # one entry per value for the list headers (RFC 3261 §7.3.1): a Via or Contact is then one field
    items: list[tuple[str, str]] = []
    keys: list[str] = []
    for key, name, value in original.keyed():
        if key in LIST_HEADERS:
            try:
                parts = split_list(value)
            except HeaderError:
                raise fail(f"Malformed {name}") from None
            if any(not p for p in parts):
                raise fail(f"Malformed {name}")
            items.extend((name, p) for p in parts)
            keys.extend(key for _ in parts)
        else:
            items.append((name, value))
            keys.append(key)
    if len(items) > limits.max_headers:
        raise fail("Too Many Headers")
    headers = Headers.from_canonical(items, keys)

    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        count = headers.count(name)
        if count == 0:
            raise fail(f"Missing {name}")
        if count > 1 and name != "Via":
            raise fail(f"Multiple {name}")
    try:
        for value in headers.get_all("Via"):
            via = parse_via(value)
            if via.protocol.upper() != SIP_VERSION:
                raise fail("Unsupported Via Protocol")
    except HeaderError:
        raise fail("Malformed Via") from None
    for name in ("From", "To"):
        try:
            parse_name_addr(headers.get(name) or "")
        except HeaderError:
            raise fail(f"Malformed {name}") from None
    call_id = headers.get("Call-ID") or ""
    if not call_id or any(c in call_id for c in " \t"):
        raise fail("Malformed Call-ID")
    try:
        cseq = parse_cseq(headers.get("CSeq") or "")
    except HeaderError:
        raise fail("Malformed CSeq") from None
    if isinstance(message, SipRequest) and cseq.method != message.method:
        if message.method not in KNOWN_METHODS:
            raise fail("Not Implemented", 501)
        raise fail("CSeq Method Mismatch")
    max_forwards = headers.get_all("Max-Forwards")
    if len(max_forwards) > 1 or (max_forwards and not (_digits(max_forwards[0], 10) and int(max_forwards[0]) <= 255)):
        raise fail("Invalid Max-Forwards")
    lengths = headers.get_all("Content-Length")
    if len(lengths) > 1:
        raise fail("Multiple Content-Length")
    if lengths and not _digits(lengths[0], 9):
        raise fail("Invalid Content-Length")
    contacts = headers.get_all("Contact")
    for value in contacts:
        if value == "*":
            if len(contacts) > 1:
                raise fail("Malformed Contact")
            continue
        try:
            parse_name_addr(value)
        except HeaderError:
            raise fail("Malformed Contact") from None
    for name in ("Route", "Record-Route"):
        try:
            for value in headers.get_all(name):
                parse_name_addr(value)
        except HeaderError:
            raise fail(f"Malformed {name}") from None
    message.headers = headers
