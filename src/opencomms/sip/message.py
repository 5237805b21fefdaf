"""SIP messages: `SipRequest`, `SipResponse`, their typed header accessors and their wire form (`serialize`).

Owns: the message classes every layer passes around, the method sets (`KNOWN_METHODS`, `DIALOG_CREATING`), the
reason phrases, and serialization (Content-Length always equal to the body).
Must not: parse bytes (`parser.py`), build responses or requests (`builders.py`), do I/O, or know about
transactions and dialogs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from opencomms.sip.headers import (
    CSeq,
    HeaderError,
    Headers,
    NameAddr,
    Via,
    clamp_delta_seconds,
    parse_cseq,
    parse_name_addr,
    parse_token_list,
    parse_via,
    split_list,
)
from opencomms.sip.uri import Uri

__all__ = [
    "DIALOG_CREATING",
    "KNOWN_METHODS",
    "REASON_PHRASES",
    "SIP_VERSION",
    "HeaderItems",
    "SipMessage",
    "SipRequest",
    "SipResponse",
    "reason_phrase",
]

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


HeaderItems = Iterable[tuple[str, str]]
"""Extra header fields to add, in order: (name, value) pairs."""


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
