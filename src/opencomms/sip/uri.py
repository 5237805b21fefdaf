"""SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966): parse, format, compare.

Owns: the URI value types (`SipUri`, `TelUri`, `AbsoluteUri`), their text form, the parameter-list helpers
shared with header values, and the RFC 3261 §19.1.4 equivalence used for matching.
Must not: know about messages, headers or transports, resolve host names, or accept whitespace inside a URI
(RFC 4475 badaspec/lwsruri depend on that).
"""

from __future__ import annotations

import functools
import ipaddress
import re
import string
from dataclasses import dataclass, replace
from urllib.parse import unquote

Params = tuple[tuple[str, str | None], ...]
"""An ordered parameter list: (name as written, value or None for a valueless parameter)."""


class UriError(ValueError):
    """The text is not a URI we can parse."""


# --- parameter lists (shared with header values) -------------------------------------------------------------


def get_param(params: Params, name: str) -> str | None:
    """Value of the first parameter called `name` (case-insensitive); "" for a valueless one; None if absent."""
    lname = name.lower()
    for pname, value in params:
        if pname.lower() == lname:
            return "" if value is None else value
    return None


def has_param(params: Params, name: str) -> bool:
    lname = name.lower()
    return any(pname.lower() == lname for pname, _ in params)


def set_param(params: Params, name: str, value: str | None) -> Params:
    """Replace the first `name` parameter in place (dropping later duplicates) or append it."""
    lname = name.lower()
    out: list[tuple[str, str | None]] = []
    done = False
    for pname, pvalue in params:
        if pname.lower() == lname:
            if not done:
                out.append((name, value))
                done = True
            continue
        out.append((pname, pvalue))
    if not done:
        out.append((name, value))
    return tuple(out)


def remove_param(params: Params, name: str) -> Params:
    lname = name.lower()
    return tuple((n, v) for n, v in params if n.lower() != lname)


def format_params(params: Params) -> str:
    return "".join(f";{name}" if value is None else f";{name}={value}" for name, value in params)


# --- character classes ---------------------------------------------------------------------------------------

_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_ALNUM = string.ascii_letters + string.digits
_UNRESERVED = _ALNUM + "-_.!~*'()"
_PARAM_CHARS = frozenset(_UNRESERVED + "[]/:&+$%")
_HEADER_CHARS = frozenset(_UNRESERVED + "[]/?:+$%")
_HOST_CHARS = frozenset(_ALNUM + "-._")
_TEL_CHARS = frozenset(_ALNUM + "-.()+*#%")
# userinfo is checked leniently (phones put odd characters there): only what can never be part of a URI.
_USER_FORBIDDEN = frozenset('<>"@')
_IPV4_LIKE = re.compile(r"\d+\.\d+\.\d+\.\d+")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _has_space_or_ctl(text: str) -> bool:
    return any(c <= " " or c == "\x7f" for c in text)


def _check_chars(text: str, allowed: frozenset[str], what: str) -> None:
    if not text:
        raise UriError(f"empty {what}")
    for c in text:
        if c not in allowed:
            raise UriError(f"invalid character {c!r} in {what}")
    if "%" in text and _BAD_ESCAPE.search(text):
        raise UriError(f"invalid escape in {what}")


def _check_user(text: str, what: str) -> None:
    if not text:
        raise UriError(f"empty {what}")
    if any(c in _USER_FORBIDDEN for c in text):
        raise UriError(f"invalid character in {what}")


def _parse_port(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 5:
        raise UriError(f"invalid port {text!r}")
    port = int(text)
    if port > 65535:
        raise UriError(f"port out of range {port}")
    return port


@functools.lru_cache(maxsize=4096)  # hosts repeat in every message (Via, Contact, From...); errors are not cached
def check_host(host: str) -> None:
    if host.startswith("["):
        if not host.endswith("]"):
            raise UriError("unterminated IPv6 reference")
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError as exc:
            raise UriError(f"invalid IPv6 reference {host!r}") from exc
        return
    _check_chars(host, _HOST_CHARS, "host")
    if _IPV4_LIKE.fullmatch(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError as exc:
            raise UriError(f"invalid IPv4 address {host!r}") from exc


def _parse_uri_params(parts: list[str]) -> Params:
    out: list[tuple[str, str | None]] = []
    for part in parts:
        name, eq, value = part.partition("=")
        _check_chars(name, _PARAM_CHARS, "URI parameter name")
        if eq:
            _check_chars(value, _PARAM_CHARS, "URI parameter value")
            out.append((name, value))
        else:
            out.append((name, None))
    return tuple(out)


def _norm_escapes(text: str) -> str:
    return unquote(text, errors="surrogateescape")


def _norm_host(host: str) -> str:
    h = host.lower()
    if h.startswith("["):
        try:
            return "[" + ipaddress.IPv6Address(h[1:-1]).compressed + "]"
        except ValueError:
            return h
    return h.rstrip(".")


# --- URI types -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SipUri:
    """sip: or sips: URI. Components keep their escaped text form, so `str(parse_uri(s)) == s` for valid input."""

    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: Params = ()
    headers: tuple[tuple[str, str], ...] = ()
    scheme: str = "sip"

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out.append(":" + self.password)
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        out.append(format_params(self.params))
        if self.headers:
            out.append("?" + "&".join(f"{n}={v}" for n, v in self.headers))
        return "".join(out)

    @property
    def secure(self) -> bool:
        return self.scheme == "sips"

    @property
    def transport(self) -> str | None:
        """The `transport` URI parameter, lower-cased, or None."""
        value = get_param(self.params, "transport")
        return value.lower() if value else None

    @property
    def host_unbracketed(self) -> str:
        return self.host[1:-1] if self.host.startswith("[") else self.host

    def param(self, name: str) -> str | None:
        return get_param(self.params, name)

    def has_param(self, name: str) -> bool:
        return has_param(self.params, name)

    def with_param(self, name: str, value: str | None = None) -> SipUri:
        return replace(self, params=set_param(self.params, name, value))

    def without_param(self, name: str) -> SipUri:
        return replace(self, params=remove_param(self.params, name))

    def without_headers(self) -> SipUri:
        return replace(self, headers=())

    def equivalent(self, other: Uri) -> bool:
        """RFC 3261 §19.1.4 equality (used for matching; the dataclass `==` is textual identity)."""
        if not isinstance(other, SipUri) or self.scheme != other.scheme:
            return False
        if _user_key(self.user) != _user_key(other.user) or _user_key(self.password) != _user_key(other.password):
            return False
        if _norm_host(self.host) != _norm_host(other.host) or self.port != other.port:
            return False
        mine, theirs = _param_map(self.params), _param_map(other.params)
        for name in ("user", "ttl", "method", "maddr", "transport"):
            if mine.get(name) != theirs.get(name):
                return False
        for name in mine.keys() & theirs.keys():
            if mine[name] != theirs[name]:
                return False
        return _header_map(self.headers) == _header_map(other.headers)


def _user_key(text: str | None) -> str | None:
    return None if text is None else _norm_escapes(text)


def _param_map(params: Params) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name, value in params:
        key = _norm_escapes(name).lower()
        if key not in out:
            out[key] = None if value is None else _norm_escapes(value).lower()
    return out


def _header_map(headers: tuple[tuple[str, str], ...]) -> dict[str, str]:
    return {_norm_escapes(n).lower(): _norm_escapes(v) for n, v in headers}


@dataclass(frozen=True, slots=True)
class TelUri:
    """tel: URI (RFC 3966): a global (+E.164) or local number with parameters."""

    number: str
    params: Params = ()

    @property
    def scheme(self) -> str:
        """Always "tel" (a property, not a ClassVar: mypyc-compiled classes keep class variables read-only)."""
        return "tel"

    def __str__(self) -> str:
        return f"tel:{self.number}{format_params(self.params)}"

    @property
    def is_global(self) -> bool:
        return self.number.startswith("+")

    @property
    def digits(self) -> str:
        """The number without visual separators (`-`, `.`, `(`, `)`)."""
        return "".join(c for c in self.number if c not in "-.()")

    def param(self, name: str) -> str | None:
        return get_param(self.params, name)

    def equivalent(self, other: Uri) -> bool:
        return (
            isinstance(other, TelUri)
            and self.digits == other.digits
            and _param_map(self.params) == _param_map(other.params)
        )


@dataclass(frozen=True, slots=True)
class AbsoluteUri:
    """Any other absolute URI (http:, urn:, isbn:, ...): kept opaque. Valid in headers, never as a target."""

    scheme: str
    opaque: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.opaque}"

    def equivalent(self, other: Uri) -> bool:
        return isinstance(other, AbsoluteUri) and self.scheme == other.scheme and self.opaque == other.opaque


Uri = SipUri | TelUri | AbsoluteUri


@functools.lru_cache(maxsize=4096)  # URIs recur in every message of a dialog (immutable result; errors not cached)
def parse_uri(text: str) -> Uri:
    """Parse one URI; raise UriError. Whitespace, controls and angle brackets are never part of a URI."""
    m = _SCHEME_RE.match(text)
    if m is None or m.end() >= len(text) or text[m.end()] != ":":
        raise UriError(f"not a URI: {text[:80]!r}")
    if _has_space_or_ctl(text):
        raise UriError("whitespace or control character in URI")
    scheme = m.group(0).lower()
    rest = text[m.end() + 1 :]
    if not rest:
        raise UriError("empty URI")
    if scheme in ("sip", "sips"):
        return _parse_sip(scheme, rest)
    if scheme == "tel":
        return _parse_tel(rest)
    if any(c in '<>"' for c in rest):
        raise UriError("invalid character in URI")
    return AbsoluteUri(scheme, rest)


def parse_sip_uri(text: str) -> SipUri:
    uri = parse_uri(text)
    if not isinstance(uri, SipUri):
        raise UriError(f"not a sip/sips URI: {text[:80]!r}")
    return uri


def _parse_sip(scheme: str, rest: str) -> SipUri:
    user: str | None = None
    password: str | None = None
    if "@" in rest:
        if rest.count("@") > 1:
            raise UriError("more than one '@' in SIP URI")
        userinfo, rest = rest.split("@")
        u, colon, p = userinfo.partition(":")
        _check_user(u, "user")
        user = u
        if colon:
            if p:
                _check_user(p, "password")
            password = p
    hostparams, qmark, headers_text = rest.partition("?")
    hostport, *param_parts = hostparams.split(";")
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise UriError("unterminated IPv6 reference")
        host, after = hostport[: end + 1], hostport[end + 1 :]
        if after and not after.startswith(":"):
            raise UriError("garbage after IPv6 reference")
        port_text = after[1:] if after else None
    else:
        host, colon, port_text_ = hostport.partition(":")
        port_text = port_text_ if colon else None
    check_host(host)
    port = _parse_port(port_text) if port_text is not None else None
    params = _parse_uri_params(param_parts)
    headers: list[tuple[str, str]] = []
    if qmark:
        for item in headers_text.split("&"):
            name, eq, value = item.partition("=")
            _check_chars(name, _HEADER_CHARS, "URI header name")
            if not eq:
                raise UriError("URI header without '='")
            if value:
                _check_chars(value, _HEADER_CHARS, "URI header value")
            headers.append((name, value))
    return SipUri(host, user, password, port, params, tuple(headers), scheme)


def _parse_tel(rest: str) -> TelUri:
    number, *param_parts = rest.split(";")
    _check_chars(number, _TEL_CHARS, "telephone number")
    return TelUri(number, _parse_uri_params(param_parts))


def uri_equivalent(a: Uri, b: Uri) -> bool:
    """RFC 3261 §19.1.4 (sip/sips), RFC 3966 §4 (tel, simplified), textual for other schemes."""
    return a.equivalent(b)
