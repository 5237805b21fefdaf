"""SIP messages: `SipRequest`, `SipResponse`, the parser, the serializer and the RFC 3261 message builders.

Owns: the byte <-> object boundary (`parse`, `SipMessage.serialize`), the validation a UAS needs before it can
trust a message (RFC 3261 §8.2, §18.3; RFC 4475), the status a UAS should answer when a request is malformed
(`SipParseError.status`), and stateless builders: responses (§8.2.6), the ACK for a non-2xx (§17.1.1.3), CANCEL
(§9.1), the stateless error response for an unparseable request.
Must not: do I/O, keep state between messages, or know about transactions and dialogs.
"""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from opencomms.sip.headers import (
    LIST_HEADERS,
    CSeq,
    HeaderError,
    Headers,
    NameAddr,
    Via,
    clamp_delta_seconds,
    is_token,
    parse_cseq,
    parse_name_addr,
    parse_token_list,
    parse_via,
    split_list,
)
from opencomms.sip.uri import AbsoluteUri, SipUri, Uri, UriError, parse_uri

SIP_VERSION = "SIP/2.0"

KNOWN_METHODS = frozenset(
    {
        "INVITE",
        "ACK",
        "CANCEL",
        "BYE",
        "OPTIONS",
        "REGISTER",
        "INFO",
        "UPDATE",
        "REFER",
        "NOTIFY",
        "SUBSCRIBE",
        "MESSAGE",
        "PRACK",
        "PUBLISH",
    }
)
DIALOG_CREATING = frozenset({"INVITE", "SUBSCRIBE", "REFER"})

REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}


def reason_phrase(status: int) -> str:
    return REASON_PHRASES.get(status) or REASON_PHRASES.get(status // 100 * 100, "Unknown")


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


class _Message:
    """Typed accessors shared by requests and responses. They parse on demand and raise HeaderError (a
    ValueError) for a missing or malformed field; messages returned by `parse` have their core fields checked."""

    headers: Headers
    body: bytes
    version: str

    def _start_line(self) -> str:
        raise NotImplementedError

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def _one(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise HeaderError(f"missing {name}")
        return value

    def _list(self, name: str) -> list[str]:
        return [item for value in self.headers.get_all(name) for item in split_list(value)]

    @property
    def vias(self) -> list[Via]:
        return [parse_via(v) for v in self._list("Via")]

    @property
    def top_via(self) -> Via:
        first = self._one("Via")
        return parse_via(split_list(first)[0])

    def set_top_via(self, via: Via) -> None:
        first = self._one("Via")
        items = split_list(first)
        items[0] = str(via)
        self.headers.replace_first("Via", ", ".join(items))

    @property
    def from_(self) -> NameAddr:
        return parse_name_addr(self._one("From"))

    @property
    def to(self) -> NameAddr:
        return parse_name_addr(self._one("To"))

    @property
    def call_id(self) -> str:
        return self._one("Call-ID")

    @property
    def cseq(self) -> CSeq:
        return parse_cseq(self._one("CSeq"))

    @property
    def contacts(self) -> list[NameAddr]:
        """Contact values, without the '*' form (see `contact_star`)."""
        return [parse_name_addr(v) for v in self._list("Contact") if v != "*"]

    @property
    def contact_star(self) -> bool:
        return self._list("Contact") == ["*"]

    @property
    def routes(self) -> list[NameAddr]:
        return [parse_name_addr(v) for v in self._list("Route")]

    @property
    def record_routes(self) -> list[NameAddr]:
        return [parse_name_addr(v) for v in self._list("Record-Route")]

    @property
    def max_forwards(self) -> int | None:
        value = self.headers.get("Max-Forwards")
        return None if value is None else int(value)

    @property
    def content_type(self) -> str | None:
        return self.headers.get("Content-Type")

    @property
    def expires(self) -> int | None:
        return clamp_delta_seconds(self.headers.get("Expires"))

    @property
    def require(self) -> list[str]:
        return [t for v in self.headers.get_all("Require") for t in parse_token_list(v)]

    @property
    def supported(self) -> list[str]:
        return [t for v in self.headers.get_all("Supported") for t in parse_token_list(v)]

    def serialize(self) -> bytes:
        """Wire form. Content-Length is always written and always equals len(body)."""
        lines = [self._start_line()]
        wrote_length = False
        for name, value in self.headers:
            if name == "Content-Length":
                if wrote_length:
                    continue
                value = str(len(self.body))
                wrote_length = True
            lines.append(f"{name}: {value}")
        if not wrote_length:
            lines.append(f"Content-Length: {len(self.body)}")
        head = "\r\n".join(lines) + "\r\n\r\n"
        return head.encode("utf-8", "surrogateescape") + self.body

    def __bytes__(self) -> bytes:
        return self.serialize()


@dataclass
class SipRequest(_Message):
    method: str
    uri: Uri
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = SIP_VERSION

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"

    def copy(self) -> SipRequest:
        return SipRequest(self.method, self.uri, self.headers.copy(), self.body, self.version)


@dataclass
class SipResponse(_Message):
    status: int
    reason: str = ""
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = SIP_VERSION

    def _start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    @property
    def is_provisional(self) -> bool:
        return self.status < 200

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    @property
    def is_final(self) -> bool:
        return self.status >= 200

    def copy(self) -> SipResponse:
        return SipResponse(self.status, self.reason, self.headers.copy(), self.body, self.version)


SipMessage = SipRequest | SipResponse


# --- parsing --------------------------------------------------------------------------------------------------

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


# --- builders -------------------------------------------------------------------------------------------------


def new_tag() -> str:
    """A From/To tag: 64 random bits (RFC 3261 §19.3 asks for at least 32)."""
    return secrets.token_hex(8)


def new_call_id(host: str | None = None) -> str:
    token = secrets.token_hex(16)
    return f"{token}@{host}" if host else token


HeaderItems = Iterable[tuple[str, str]]


def make_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: HeaderItems = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> SipResponse:
    """A response to `request` per RFC 3261 §8.2.6: Via (all, in order), From, To (plus `to_tag` if it has none),
    Call-ID, CSeq copied; Record-Route copied on 101-299 to a dialog-creating request (§12.1.1)."""
    req = request.headers
    items = [("Via", value) for value in req.get_all("Via")]
    keys = ["via"] * len(items)
    to = req.get("To") or ""
    if to_tag and status != 100:
        to = _to_with_tag(to, to_tag)
    items += [("From", req.get("From") or ""), ("To", to), ("Call-ID", req.get("Call-ID") or "")]
    items.append(("CSeq", req.get("CSeq") or ""))
    keys += ["from", "to", "call-id", "cseq"]
    out = Headers.from_canonical(items, keys)
    if status == 100 and "Timestamp" in req:
        out.add("Timestamp", req.get("Timestamp") or "")
    if 100 < status < 300 and request.method in DIALOG_CREATING:
        for value in req.get_all("Record-Route"):
            out.add("Record-Route", value)
    for name, value in headers:
        out.add(name, value)
    if body and content_type and "Content-Type" not in out:
        out.add("Content-Type", content_type)
    return SipResponse(status, reason if reason is not None else reason_phrase(status), out, body)


@functools.lru_cache(maxsize=1024)  # 180 and 200 of one INVITE add the same tag to the same To (pure function)
def _to_with_tag(to: str, to_tag: str) -> str:
    """The To value with `;tag=to_tag` added if it has no tag yet; unchanged if it has one or does not parse."""
    try:
        addr = parse_name_addr(to)
    except HeaderError:
        return to
    return to if addr.tag is not None else str(addr.with_tag(to_tag))


def error_response(error: SipParseError, to_tag: str | None = None) -> SipResponse | None:
    """Stateless answer to an unparseable request, if enough of it was readable (Via, From, To, Call-ID, CSeq);
    None for responses, ACKs, and requests too broken to answer."""
    headers = error.headers
    if headers is None or not error.is_request or error.method == "ACK":
        return None
    needed = ("Via", "From", "To", "Call-ID", "CSeq")
    if any(headers.get(name) is None for name in needed):
        return None
    out = Headers()
    for value in headers.get_all("Via"):
        out.add("Via", value)
    out.add("From", headers.get("From") or "")
    to = headers.get("To") or ""
    if to_tag and "tag=" not in to.lower():
        to = f"{to};tag={to_tag}"
    out.add("To", to)
    out.add("Call-ID", headers.get("Call-ID") or "")
    out.add("CSeq", headers.get("CSeq") or "")
    reason = error.reason if error.reason.isascii() and error.reason.isprintable() else reason_phrase(error.status)
    return SipResponse(error.status, reason, out)


def build_ack_for_non2xx(invite: SipRequest, response: SipResponse) -> SipRequest:
    """The ACK a client INVITE transaction sends for a 300-699 (RFC 3261 §17.1.1.3): same Request-URI, top Via,
    From, Call-ID, CSeq number and Route as the INVITE; To from the response."""
    headers = Headers()
    headers.add("Via", invite.headers.get_all("Via")[0])
    headers.add("Max-Forwards", "70")
    headers.add("From", invite.headers.get("From") or "")
    headers.add("To", response.headers.get("To") or "")
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq.number} ACK")
    for value in invite.headers.get_all("Route"):
        headers.add("Route", value)
    return SipRequest("ACK", invite.uri, headers)


def build_cancel(invite: SipRequest) -> SipRequest:
    """CANCEL for a pending INVITE (RFC 3261 §9.1): same Request-URI, top Via (branch), From, To, Call-ID,
    CSeq number and Route."""
    headers = Headers()
    headers.add("Via", invite.headers.get_all("Via")[0])
    headers.add("Max-Forwards", "70")
    headers.add("From", invite.headers.get("From") or "")
    headers.add("To", invite.headers.get("To") or "")
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq.number} CANCEL")
    for value in invite.headers.get_all("Route"):
        headers.add("Route", value)
    return SipRequest("CANCEL", invite.uri, headers)


def build_request(
    method: str,
    uri: Uri,
    *,
    from_: NameAddr,
    to: NameAddr,
    call_id: str,
    cseq: int,
    contact: NameAddr | None = None,
    routes: Iterable[NameAddr] = (),
    headers: HeaderItems = (),
    body: bytes = b"",
    content_type: str | None = None,
    max_forwards: int = 70,
) -> SipRequest:
    """A request per RFC 3261 §8.1.1, without Via (the endpoint adds the top Via when it sends)."""
    out = Headers()
    for route in routes:
        out.add("Route", str(route))
    out.add("Max-Forwards", str(max_forwards))
    out.add("From", str(from_))
    out.add("To", str(to))
    out.add("Call-ID", call_id)
    out.add("CSeq", f"{cseq} {method}")
    if contact is not None:
        out.add("Contact", str(contact))
    for name, value in headers:
        out.add(name, value)
    if body and content_type and "Content-Type" not in out:
        out.add("Content-Type", content_type)
    return SipRequest(method, uri, out, body)
