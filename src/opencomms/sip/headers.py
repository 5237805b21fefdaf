"""Header fields: the ordered multi-map of a message, name normalisation, and the structured values the core needs.

Owns: `Headers` (ordered, case-insensitive, compact forms expanded), comma splitting that respects quotes and
angle brackets, header parameters, and the value types `NameAddr` (From/To/Contact/Route/Record-Route/Refer-To),
`Via` and `CSeq` with their parsers and text forms.
Must not: know about transactions, dialogs or I/O, or mutate a message by itself; values are parsed on demand.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

from opencomms.sip.uri import (
    Params,
    SipUri,
    Uri,
    UriError,
    check_host,
    format_params,
    get_param,
    has_param,
    parse_uri,
    remove_param,
    set_param,
)


class HeaderError(ValueError):
    """A header value does not parse."""


COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_KNOWN = (
    "Accept",
    "Accept-Contact",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Allow",
    "Allow-Events",
    "Authentication-Info",
    "Authorization",
    "Call-ID",
    "Call-Info",
    "Contact",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Content-Length",
    "Content-Type",
    "CSeq",
    "Date",
    "Error-Info",
    "Event",
    "Expires",
    "From",
    "Identity",
    "Identity-Info",
    "In-Reply-To",
    "Max-Forwards",
    "Min-Expires",
    "Min-SE",
    "MIME-Version",
    "Organization",
    "P-Asserted-Identity",
    "P-Preferred-Identity",
    "Path",
    "Priority",
    "Privacy",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "RAck",
    "Reason",
    "Record-Route",
    "Refer-To",
    "Referred-By",
    "Reject-Contact",
    "Replaces",
    "Reply-To",
    "Request-Disposition",
    "Require",
    "Retry-After",
    "Route",
    "RSeq",
    "Server",
    "Session-Expires",
    "Subject",
    "Subscription-State",
    "Supported",
    "Timestamp",
    "To",
    "Unsupported",
    "User-Agent",
    "Via",
    "Warning",
    "WWW-Authenticate",
)
_CANONICAL: dict[str, str] = {name.lower(): name for name in _KNOWN}
_CANONICAL.update(COMPACT_FORMS)

LIST_HEADERS = frozenset({"via", "contact", "route", "record-route", "path"})
"""Headers whose comma-separated values are split into one entry each when a message is parsed (RFC 3261 §7.3.1)."""

_TOKEN_STR = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
TOKEN_CHARS = frozenset(_TOKEN_STR)


@functools.lru_cache(maxsize=1024)  # header names repeat in every message (pure function of a short string)
def canonical_name(name: str) -> str:
    """Long form with the usual spelling for known headers ("v" -> "Via", "cseq" -> "CSeq"); others unchanged."""
    return _CANONICAL.get(name.lower(), name)


@functools.lru_cache(maxsize=1024)
def header_key(name: str) -> str:
    """Lookup key of a header name: its canonical long form, lower-cased ("v", "VIA" -> "via")."""
    return canonical_name(name).lower()


def is_token(text: str) -> bool:
    return bool(text) and not text.strip(_TOKEN_STR)  # empty once every token character is stripped


class Headers:
    """Ordered multi-map of header fields. Names are stored in canonical form and compared case-insensitively
    through a parallel list of lower-case keys (computed once per field)."""

    __slots__ = ("_items", "_keys")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = [(canonical_name(n), v) for n, v in items]
        self._keys: list[str] = [n.lower() for n, _ in self._items]

    @classmethod
    def from_canonical(cls, items: list[tuple[str, str]], keys: list[str]) -> Headers:
        """From fields whose names are already canonical and their keys (no copy, no re-normalisation)."""
        new = cls()  # (not cls.__new__: mypyc cannot compile that)
        new._items = items
        new._keys = keys
        return new

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return header_key(name) in self._keys

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    __hash__ = None  # type: ignore[assignment]

    def copy(self) -> Headers:
        return Headers.from_canonical(list(self._items), list(self._keys))

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def keyed(self) -> Iterator[tuple[str, str, str]]:
        """(key, name, value) for each field, key being the lower-case canonical name."""
        for key, (name, value) in zip(self._keys, self._items, strict=True):
            yield key, name, value

    def get(self, name: str) -> str | None:
        key = header_key(name)
        keys = self._keys
        if key not in keys:
            return None
        return self._items[keys.index(key)][1]

    def get_all(self, name: str) -> list[str]:
        key = header_key(name)
        keys = self._keys
        found = keys.count(key)
        if found <= 1:  # the usual case, without a Python-level scan
            return [self._items[keys.index(key)][1]] if found else []
        return [item[1] for k, item in zip(keys, self._items, strict=True) if k == key]

    def count(self, name: str) -> int:
        return self._keys.count(header_key(name))

    def add(self, name: str, value: str) -> None:
        """Append a field at the end."""
        cname = canonical_name(name)
        self._items.append((cname, value))
        self._keys.append(cname.lower())

    def add_first(self, name: str, value: str) -> None:
        """Insert before the first field of that name (e.g. a new top Via), or at the very top if there is none."""
        cname = canonical_name(name)
        key = cname.lower()
        i = self._keys.index(key) if key in self._keys else 0
        self._items.insert(i, (cname, value))
        self._keys.insert(i, key)

    def set(self, name: str, value: str) -> None:
        """Replace the first field of that name in place and drop the others, or append."""
        cname = canonical_name(name)
        key = cname.lower()
        out: list[tuple[str, str]] = []
        keys: list[str] = []
        done = False
        for k, item in zip(self._keys, self._items, strict=True):
            if k == key:
                if not done:
                    out.append((cname, value))
                    keys.append(k)
                    done = True
                continue
            out.append(item)
            keys.append(k)
        if not done:
            out.append((cname, value))
            keys.append(key)
        self._items = out
        self._keys = keys

    def set_default(self, name: str, value: str) -> None:
        if name not in self:
            self.add(name, value)

    def replace_first(self, name: str, value: str) -> None:
        """Replace only the first field of that name (KeyError if absent)."""
        key = header_key(name)
        if key not in self._keys:
            raise KeyError(name)
        i = self._keys.index(key)
        self._items[i] = (self._items[i][0], value)

    def remove(self, name: str) -> int:
        key = header_key(name)
        before = len(self._items)
        kept = [(k, item) for k, item in zip(self._keys, self._items, strict=True) if k != key]
        self._keys = [k for k, _ in kept]
        self._items = [item for _, item in kept]
        return before - len(self._items)

    def remove_first(self, name: str) -> None:
        key = header_key(name)
        if key in self._keys:
            i = self._keys.index(key)
            del self._items[i]
            del self._keys[i]


# --- low-level scanning ------------------------------------------------------------------------------------


def _skip_ws(text: str, pos: int) -> int:
    n = len(text)
    while pos < n and text[pos] in " \t":
        pos += 1
    return pos


def _read_token(text: str, pos: int) -> tuple[str, int]:
    start = pos
    n = len(text)
    while pos < n and text[pos] in TOKEN_CHARS:
        pos += 1
    return text[start:pos], pos


def _read_quoted(text: str, pos: int) -> tuple[str, int]:
    """`text[pos]` is '"'. Return (raw quoted string including quotes, position after it)."""
    n = len(text)
    i = pos + 1
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            return text[pos : i + 1], i + 1
        i += 1
    raise HeaderError("unterminated quoted string")


def unquote_string(raw: str) -> str:
    """`"a\\"b"` -> `a"b`; a value that is not quoted is returned unchanged."""
    if len(raw) < 2 or raw[0] != '"' or raw[-1] != '"':
        return raw
    out: list[str] = []
    i, end = 1, len(raw) - 1
    while i < end:
        c = raw[i]
        if c == "\\" and i + 1 < end:
            out.append(raw[i + 1])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def quote_string(text: str) -> str:
    """Quote for a quoted-string, escaping what qdtext cannot carry; CR and LF are dropped (never quotable)."""
    out = ['"']
    for c in text:
        if c in "\r\n":
            continue
        if c in '"\\' or (c < " " and c != "\t") or c == "\x7f":
            out.append("\\")
        out.append(c)
    out.append('"')
    return "".join(out)


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value, ignoring commas inside quoted strings and <...>. Elements are stripped;
    empty elements are kept (callers decide whether they are an error)."""
    if "," not in value and '"' not in value:  # the usual case: one element
        return [value.strip()]
    out: list[str] = []
    start = 0
    i, n = 0, len(value)
    in_angle = False
    while i < n:
        c = value[i]
        if c == '"':
            _, i = _read_quoted(value, i)
            continue
        if c == "<":
            in_angle = True
        elif c == ">":
            in_angle = False
        elif c == "," and not in_angle:
            out.append(value[start:i].strip())
            start = i + 1
        i += 1
    out.append(value[start:].strip())
    return out


_PARAM_VALUE_CHARS = TOKEN_CHARS | frozenset("[]:")


def parse_params(text: str, pos: int = 0) -> Params:
    """Parse `*( SEMI generic-param )` from `text[pos:]` to the end. Values keep their quotes if quoted."""
    out: list[tuple[str, str | None]] = []
    n = len(text)
    pos = _skip_ws(text, pos)
    while pos < n:
        if text[pos] != ";":
            raise HeaderError(f"expected ';' at {text[pos : pos + 20]!r}")
        pos = _skip_ws(text, pos + 1)
        name, pos = _read_token(text, pos)
        if not name:
            raise HeaderError("empty parameter")
        pos = _skip_ws(text, pos)
        value: str | None = None
        if pos < n and text[pos] == "=":
            pos = _skip_ws(text, pos + 1)
            if pos < n and text[pos] == '"':
                value, pos = _read_quoted(text, pos)
            else:
                start = pos
                while pos < n and text[pos] in _PARAM_VALUE_CHARS:
                    pos += 1
                value = text[start:pos]
                if not value:
                    raise HeaderError(f"empty value for parameter {name!r}")
            pos = _skip_ws(text, pos)
        out.append((name, value))
    return tuple(out)


# --- name-addr / addr-spec ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NameAddr:
    """`[display-name] <uri> *(;param)` as in From, To, Contact, Route, Record-Route, Refer-To."""

    uri: Uri
    display_name: str | None = None
    params: Params = ()

    def __str__(self) -> str:
        name = quote_string(self.display_name) + " " if self.display_name else ""
        return f"{name}<{self.uri}>{format_params(self.params)}"

    @property
    def tag(self) -> str | None:
        value = get_param(self.params, "tag")
        return value or None

    @property
    def sip_uri(self) -> SipUri:
        if not isinstance(self.uri, SipUri):
            raise HeaderError(f"not a SIP URI: {self.uri}")
        return self.uri

    def param(self, name: str) -> str | None:
        return get_param(self.params, name)

    def has_param(self, name: str) -> bool:
        return has_param(self.params, name)

    def with_param(self, name: str, value: str | None) -> NameAddr:
        return replace(self, params=set_param(self.params, name, value))

    def without_param(self, name: str) -> NameAddr:
        return replace(self, params=remove_param(self.params, name))

    def with_tag(self, tag: str) -> NameAddr:
        return self.with_param("tag", tag)

    @property
    def expires(self) -> int | None:
        """Contact `expires` parameter (RFC 3261 §10.2.1.1), clamped to 2**32-1; None if absent or not a number."""
        return clamp_delta_seconds(get_param(self.params, "expires"))


MAX_DELTA_SECONDS = 2**32 - 1


def clamp_delta_seconds(value: str | None) -> int | None:
    """delta-seconds: digits; values above 2**32-1 are taken as 2**32-1 (RFC 3261 §20.19, §20.10)."""
    if value is None:
        return None
    value = value.strip()
    if not value.isascii() or not value.isdigit():
        return None
    return min(int(value[:12]), MAX_DELTA_SECONDS)


def _display_tokens(text: str) -> str:
    words = text.split()
    for w in words:
        if not is_token(w):
            raise HeaderError(f"invalid display name {text[:40]!r}")
    return " ".join(words)


@functools.lru_cache(maxsize=4096)  # the same From/To/Contact recur in every message of a dialog (immutable result)
def parse_name_addr(text: str) -> NameAddr:
    """Parse a name-addr or addr-spec with header parameters. In addr-spec form the URI ends at the first ';'
    and must not contain ',', '?' or ';' (RFC 3261 §20.10: such URIs need angle brackets)."""
    s = text.strip()
    if not s:
        raise HeaderError("empty address")
    display: str | None = None
    if s[0] == '"':
        raw, pos = _read_quoted(s, 0)
        display = unquote_string(raw)
        pos = _skip_ws(s, pos)
        if pos >= len(s) or s[pos] != "<":
            raise HeaderError("quoted display name without <uri>")
        lt = pos
    else:
        lt = s.find("<")
        if lt >= 0:
            display = _display_tokens(s[:lt]) or None
    if lt >= 0:
        gt = s.find(">", lt)
        if gt < 0:
            raise HeaderError("missing '>'")
        try:
            uri = parse_uri(s[lt + 1 : gt])
        except UriError as exc:
            raise HeaderError(str(exc)) from exc
        return NameAddr(uri, display, parse_params(s, gt + 1))
    semi = s.find(";")
    uri_text = s if semi < 0 else s[:semi]
    if any(c in uri_text for c in ",?"):
        raise HeaderError("URI with ',' or '?' must be enclosed in <>")
    try:
        uri = parse_uri(uri_text.rstrip())
    except UriError as exc:
        raise HeaderError(str(exc)) from exc
    return NameAddr(uri, None, parse_params(s, semi) if semi >= 0 else ())


# --- Via ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value: `SIP/2.0/UDP host[:port];params`."""

    transport: str
    host: str
    port: int | None = None
    params: Params = ()
    protocol: str = "SIP/2.0"

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.protocol}/{self.transport} {self.host}{port}{format_params(self.params)}"

    @property
    def branch(self) -> str | None:
        return get_param(self.params, "branch") or None

    @property
    def received(self) -> str | None:
        return get_param(self.params, "received") or None

    @property
    def rport(self) -> int | None:
        """The filled-in rport value (RFC 3581), None if absent or empty."""
        value = get_param(self.params, "rport")
        return int(value) if value and value.isdigit() and int(value) <= 65535 else None

    @property
    def wants_rport(self) -> bool:
        return has_param(self.params, "rport")

    @property
    def maddr(self) -> str | None:
        return get_param(self.params, "maddr") or None

    @property
    def default_port(self) -> int:
        return 5061 if self.transport.upper() in ("TLS", "WSS") else 5060

    @property
    def sent_by(self) -> str:
        """Normalised `host:port` (port defaulted) used for transaction matching (RFC 3261 §17.2.3)."""
        return f"{self.host.lower()}:{self.port if self.port is not None else self.default_port}"

    @property
    def host_unbracketed(self) -> str:
        return self.host[1:-1] if self.host.startswith("[") else self.host

    def param(self, name: str) -> str | None:
        return get_param(self.params, name)

    def has_param(self, name: str) -> bool:
        return has_param(self.params, name)

    def with_param(self, name: str, value: str | None) -> Via:
        return replace(self, params=set_param(self.params, name, value))


@functools.lru_cache(maxsize=4096)  # a message's Via is read several times (immutable result)
def parse_via(text: str) -> Via:
    s = text
    pos = _skip_ws(s, 0)
    parts: list[str] = []
    for i in range(3):
        tok, pos = _read_token(s, pos)
        if not tok:
            raise HeaderError("malformed Via sent-protocol")
        parts.append(tok)
        pos = _skip_ws(s, pos)
        if i < 2:
            if pos >= len(s) or s[pos] != "/":
                raise HeaderError("malformed Via sent-protocol")
            pos = _skip_ws(s, pos + 1)
    name, version, transport = parts
    if name.upper() != "SIP":
        raise HeaderError(f"unknown Via protocol {name!r}")
    n = len(s)
    if pos < n and s[pos] == "[":
        end = s.find("]", pos)
        if end < 0:
            raise HeaderError("unterminated IPv6 reference in Via")
        host = s[pos : end + 1]
        pos = end + 1
    else:
        start = pos
        while pos < n and s[pos] not in " \t;:":
            pos += 1
        host = s[start:pos]
    try:
        check_host(host)
    except UriError as exc:
        raise HeaderError(f"invalid Via host {host[:40]!r}") from exc
    pos = _skip_ws(s, pos)
    port: int | None = None
    if pos < n and s[pos] == ":":
        pos = _skip_ws(s, pos + 1)
        start = pos
        while pos < n and s[pos].isdigit():
            pos += 1
        digits = s[start:pos]
        if not digits or len(digits) > 5 or int(digits) > 65535:
            raise HeaderError("invalid Via port")
        port = int(digits)
    params = parse_params(s, pos)
    return Via(transport.upper(), host, port, params, f"SIP/{version}")


# --- CSeq -----------------------------------------------------------------------------------------------------

MAX_CSEQ = 2**31 - 1


@dataclass(frozen=True, slots=True)
class CSeq:
    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


@functools.lru_cache(maxsize=4096)  # read at validation and again by the transaction layer (immutable result)
def parse_cseq(text: str) -> CSeq:
    parts = text.split()
    if len(parts) != 2:
        raise HeaderError("malformed CSeq")
    num, method = parts
    if not num.isascii() or not num.isdigit() or len(num) > 12 or int(num) > MAX_CSEQ:
        raise HeaderError("invalid CSeq number")
    if not is_token(method):
        raise HeaderError("invalid CSeq method")
    return CSeq(int(num), method)


def parse_token_list(value: str) -> list[str]:
    """`Require`, `Supported`, `Allow` style lists of tokens."""
    return [item for item in (part.strip() for part in value.split(",")) if item]
