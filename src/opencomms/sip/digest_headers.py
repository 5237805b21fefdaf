"""Digest header syntax (RFC 7616, RFC 8760): challenges (``WWW-Authenticate`` / ``Proxy-Authenticate``) and
credentials (``Authorization`` / ``Proxy-Authorization``) as frozen values, parsed and written symmetrically.

Case-insensitive parameter names, quoted strings with backslash escapes, commas inside quotes, several challenges
in one value, RFC 8187 ``username*``; hostile values bounded in length and refused with :class:`AuthError`.
Must not: compute digests beyond what a parsed value needs, verify credentials or keep state.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass

from opencomms.sip.digest import ALGORITHMS, AuthError, AuthFailure, canonical_algorithm, is_hex

__all__ = [
    "DigestChallenge",
    "DigestCredentials",
    "bare_token",
    "parse_challenge",
    "parse_challenges",
    "parse_credentials",
    "quote_string",
    "select_challenge",
]

_WS = " \t"
_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")
_FORBIDDEN = frozenset("\x00\r\n")
_MAX_HEADER = 8192  # far above any real Digest header; bounds the work a hostile value can cause


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WS:
        pos += 1
    return pos


def _read_token(text: str, pos: int) -> tuple[str, int]:
    start = pos
    while pos < len(text) and text[pos] in _TOKEN_CHARS:
        pos += 1
    return text[start:pos], pos


def _read_quoted(text: str, pos: int) -> tuple[str, int]:
    """A quoted-string starting at ``text[pos] == '"'``: its unescaped content and the position after it."""
    out: list[str] = []
    pos += 1
    while pos < len(text):
        char = text[pos]
        if char == '"':
            return "".join(out), pos + 1
        if char == "\\":
            pos += 1
            if pos >= len(text):
                break
            char = text[pos]
        if char in _FORBIDDEN:
            raise AuthError.malformed("control character in a quoted string")
        out.append(char)
        pos += 1
    raise AuthError.malformed("unterminated quoted string")


def _readbare_token(text: str, pos: int) -> tuple[str, int]:
    """An unquoted value. Tolerant: anything up to whitespace or a comma (base64 nonces sent bare, ``sip:`` uris)."""
    start = pos
    while pos < len(text) and text[pos] not in _WS and text[pos] not in ',"':
        pos += 1
    if pos == start:
        raise AuthError.malformed("empty parameter value")
    return text[start:pos], pos


def _parse_auth_list(value: str) -> list[tuple[str, dict[str, str]]]:
    """``scheme param=value, param="value", scheme2 ...`` -> [(scheme lowercased, {name lowercased: value})]."""
    if not isinstance(value, str):
        raise AuthError.malformed("header value is not a string")
    if len(value) > _MAX_HEADER:
        raise AuthError.malformed("header value too long")
    if any(char in _FORBIDDEN for char in value):
        raise AuthError.malformed("control character in header value")
    items: list[tuple[str, dict[str, str]]] = []
    pos = 0
    current: dict[str, str] | None = None
    while True:
        pos = _skip_ws(value, pos)
        while pos < len(value) and value[pos] == ",":  # empty list elements are allowed (RFC 7230 #rule)
            pos = _skip_ws(value, pos + 1)
        if pos >= len(value):
            break
        token, after = _read_token(value, pos)
        if not token:
            raise AuthError.malformed(f"unexpected {value[pos]!r} at {pos}")
        probe = _skip_ws(value, after)
        if probe < len(value) and value[probe] == "=" and current is not None:
            name = token.lower()
            pos = _skip_ws(value, probe + 1)
            if pos >= len(value):
                raise AuthError.malformed(f"no value for {name}")
            if value[pos] == '"':
                param, pos = _read_quoted(value, pos)
            else:
                param, pos = _readbare_token(value, pos)
            if name in current:
                raise AuthError.malformed(f"duplicate parameter {name}")
            current[name] = param
            pos = _skip_ws(value, pos)
            if pos < len(value) and value[pos] != ",":
                raise AuthError.malformed(f"expected ',' at {pos}")
            continue
        if after < len(value) and value[after] not in _WS and value[after] != ",":
            raise AuthError.malformed(f"bad scheme at {pos}")
        current = {}
        items.append((token.lower(), current))
        pos = after
    if not items:
        raise AuthError.malformed("empty header value")
    return items


def quote_string(text: str) -> str:
    """``text`` as a quoted-string (backslash escapes); control characters are refused."""
    if any(char in _FORBIDDEN for char in text):
        raise AuthError.malformed("control character in a value to quote")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def bare_token(text: str) -> str:
    """``text`` unquoted, if it is a token."""
    if not text or any(char not in _TOKEN_CHARS for char in text):
        raise AuthError.malformed(f"{text!r} is not a token")
    return text


def _decode_ext_value(value: str) -> str:
    """RFC 8187 ext-value (``UTF-8''J%C3%A4s``), used by RFC 7616 for ``username*``."""
    parts = value.split("'", 2)
    if len(parts) != 3 or parts[0].lower() not in ("utf-8", "iso-8859-1"):
        raise AuthError.malformed("bad username* value")
    try:
        return urllib.parse.unquote(parts[2], encoding=parts[0].lower(), errors="strict")
    except UnicodeDecodeError:
        raise AuthError.malformed("bad username* value") from None


# --- challenges -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DigestChallenge:
    """One Digest challenge. ``algorithm`` is canonical when supported, else as received (see :attr:`supported`)."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()  # offered qop values, lowercased; () = legacy RFC 2069 challenge
    opaque: str | None = None
    stale: bool = False
    domain: str | None = None
    userhash: bool = False
    charset: str | None = None
    extra: tuple[tuple[str, str], ...] = ()  # parameters we do not know, kept for logs

    @property
    def supported(self) -> bool:
        """Whether :class:`DigestClient` can answer it: known algorithm and, if qop is offered, auth or auth-int."""
        if self.algorithm not in ALGORITHMS:
            return False
        return not self.qop or "auth" in self.qop or "auth-int" in self.qop

    def to_header(self) -> str:
        """The header value, e.g. ``Digest realm="a", nonce="b", algorithm=SHA-256, qop="auth"``."""
        parts = [f"realm={quote_string(self.realm)}"]
        if self.domain is not None:
            parts.append(f"domain={quote_string(self.domain)}")
        parts.append(f"nonce={quote_string(self.nonce)}")
        if self.opaque is not None:
            parts.append(f"opaque={quote_string(self.opaque)}")
        if self.stale:
            parts.append("stale=TRUE")
        parts.append(f"algorithm={bare_token(self.algorithm)}")
        if self.qop:
            parts.append(f"qop={quote_string(','.join(bare_token(q) for q in self.qop))}")
        if self.charset is not None:
            parts.append(f"charset={bare_token(self.charset)}")
        if self.userhash:
            parts.append("userhash=true")
        return "Digest " + ", ".join(parts)


def _challenge_from(params: dict[str, str]) -> DigestChallenge:
    known = {"realm", "nonce", "algorithm", "qop", "opaque", "stale", "domain", "userhash", "charset"}
    for required in ("realm", "nonce"):
        if required not in params:
            raise AuthError.malformed(f"challenge without {required}")
    raw_algorithm = params.get("algorithm", "MD5")
    try:
        algorithm = canonical_algorithm(raw_algorithm)
    except AuthError:
        algorithm = raw_algorithm  # kept: another challenge in the set may be usable
    qop = tuple(q.strip().lower() for q in params["qop"].split(",") if q.strip()) if "qop" in params else ()
    return DigestChallenge(
        realm=params["realm"],
        nonce=params["nonce"],
        algorithm=algorithm,
        qop=qop,
        opaque=params.get("opaque"),
        stale=params.get("stale", "").lower() == "true",
        domain=params.get("domain"),
        userhash=params.get("userhash", "").lower() == "true",
        charset=params.get("charset"),
        extra=tuple((k, v) for k, v in params.items() if k not in known),
    )


def parse_challenges(value: str) -> list[DigestChallenge]:
    """Every Digest challenge in one header value (other schemes are skipped; none at all is an error)."""
    found = [_challenge_from(params) for scheme, params in _parse_auth_list(value) if scheme == "digest"]
    if not found:
        raise AuthError(AuthFailure.UNSUPPORTED, "no Digest challenge")
    return found


def parse_challenge(value: str) -> DigestChallenge:
    """The first Digest challenge of a ``WWW-Authenticate`` / ``Proxy-Authenticate`` value."""
    return parse_challenges(value)[0]


def select_challenge(values: Iterable[str | DigestChallenge], realm: str | None = None) -> DigestChallenge:
    """The challenge to answer among several headers: the topmost supported one (RFC 8760 section 2.4).

    Headers that do not parse are skipped; ``realm`` restricts the choice when given.
    """
    skipped: list[str] = []
    for value in values:
        try:
            candidates = [value] if isinstance(value, DigestChallenge) else parse_challenges(value)
        except AuthError as exc:
            skipped.append(exc.detail)
            continue
        for challenge in candidates:
            if challenge.supported and (realm is None or challenge.realm == realm):
                return challenge
            skipped.append(f"{challenge.algorithm}/{','.join(challenge.qop) or 'no qop'}")
    raise AuthError(AuthFailure.UNSUPPORTED, "no usable challenge: " + ("; ".join(skipped) or "none"))


# --- credentials ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DigestCredentials:
    """One Digest credentials set (``Authorization`` / ``Proxy-Authorization``)."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"
    qop: str | None = None  # message-qop, lowercased
    nc: str | None = None  # 8 hex digits, literal as sent
    cnonce: str | None = None
    opaque: str | None = None
    userhash: bool = False

    @property
    def nc_value(self) -> int | None:
        return None if self.nc is None else int(self.nc, 16)

    def to_header(self) -> str:
        """The header value. ``algorithm`` is always sent (RFC 8760 recommends it)."""
        parts = [
            f"username={quote_string(self.username)}",
            f"realm={quote_string(self.realm)}",
            f"nonce={quote_string(self.nonce)}",
            f"uri={quote_string(self.uri)}",
            f"response={quote_string(self.response)}",
            f"algorithm={bare_token(self.algorithm)}",
        ]
        if self.cnonce is not None:
            parts.append(f"cnonce={quote_string(self.cnonce)}")
        if self.opaque is not None:
            parts.append(f"opaque={quote_string(self.opaque)}")
        if self.qop is not None:
            parts.append(f"qop={bare_token(self.qop)}")
        if self.nc is not None:
            parts.append(f"nc={bare_token(self.nc)}")
        if self.userhash:
            parts.append("userhash=true")
        return "Digest " + ", ".join(parts)


def _credentials_from(params: dict[str, str]) -> DigestCredentials:
    if "username" in params and "username*" in params:
        raise AuthError.malformed("both username and username*")
    if "username*" in params:
        username = _decode_ext_value(params["username*"])
    elif "username" in params:
        username = params["username"]
    else:
        raise AuthError.malformed("credentials without username")
    for required in ("realm", "nonce", "uri", "response"):
        if required not in params:
            raise AuthError.malformed(f"credentials without {required}")
    response = params["response"]
    if not is_hex(response):
        raise AuthError.malformed("response is not hex")
    qop = params["qop"].strip().lower() if "qop" in params else None
    nc = params.get("nc")
    cnonce = params.get("cnonce")
    if qop is not None:
        if nc is None or cnonce is None:
            raise AuthError.malformed("qop without nc or cnonce")
        if len(nc) != 8 or not is_hex(nc):
            raise AuthError.malformed("nc is not 8 hex digits")
        if not cnonce:
            raise AuthError.malformed("empty cnonce")
    return DigestCredentials(
        username=username,
        realm=params["realm"],
        nonce=params["nonce"],
        uri=params["uri"],
        response=response.lower(),
        algorithm=params.get("algorithm", "MD5"),
        qop=qop,
        nc=nc,
        cnonce=cnonce,
        opaque=params.get("opaque"),
        userhash=params.get("userhash", "").lower() == "true",
    )


def parse_credentials(value: str) -> DigestCredentials:
    """The Digest credentials of an ``Authorization`` / ``Proxy-Authorization`` value.

    ``algorithm`` is returned as received (it is checked by whoever verifies).
    """
    items = _parse_auth_list(value)
    digests = [params for scheme, params in items if scheme == "digest"]
    if not digests:
        raise AuthError(AuthFailure.UNSUPPORTED, f"scheme {items[0][0]!r}")
    if len(digests) > 1:
        raise AuthError.malformed("more than one set of Digest credentials in one value")
    return _credentials_from(digests[0])
