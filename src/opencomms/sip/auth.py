"""HTTP Digest authentication for SIP (RFC 2617, RFC 7616, RFC 8760, RFC 3261 section 22).

Pure functions and classes over header *values* (the text after ``WWW-Authenticate:`` and friends), so that
nothing here depends on the SIP message classes.

* Parsing and building of challenges (``WWW-Authenticate`` / ``Proxy-Authenticate``) and credentials
  (``Authorization`` / ``Proxy-Authorization``): case-insensitive parameter names, quoted strings with
  backslash escapes, commas inside quotes, several challenges in one value.
* Algorithms MD5, MD5-sess, SHA-256, SHA-256-sess and, when hashlib has it, SHA-512-256(-sess); qop ``auth`` and
  ``auth-int``; legacy RFC 2069 responses (no qop) when a challenge offers no qop.
* :class:`DigestChallenger` (server side): stateless nonces (an HMAC over issue time, realm and a random salt),
  expiry with ``stale=true``, verification against stored HA1 values (never passwords), replay protection by a
  sliding nc window per nonce in bounded memory, constant-time comparisons.
* :class:`DigestClient` (client side, e.g. the gateway answering a trunk's 401/407): picks the challenge, counts
  nc per nonce and builds the credentials header value.

Every failure, malformed input included, raises :class:`AuthError` with a :class:`AuthFailure` reason; nothing
else escapes the parsers or the verifier. Reasons are for logs and metrics: a server should answer every failure
with the same fresh challenge (``stale=true`` when :attr:`AuthError.stale`), never telling an unknown user apart
from a wrong password.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "ALGORITHMS",
    "AuthError",
    "AuthFailure",
    "DigestChallenge",
    "DigestChallenger",
    "DigestClient",
    "DigestCredentials",
    "HA1Lookup",
    "HA1Table",
    "Verified",
    "base_algorithm",
    "canonical_algorithm",
    "compute_ha1",
    "compute_response",
    "parse_challenge",
    "parse_challenges",
    "parse_credentials",
    "select_challenge",
]


class AuthFailure(StrEnum):
    """Why a header was refused or a request not authenticated."""

    MALFORMED = "malformed"  # header syntax or a missing/invalid parameter
    UNSUPPORTED = "unsupported"  # scheme, algorithm or qop we do not do (or did not offer)
    REALM_MISMATCH = "realm_mismatch"  # no credentials for our realm
    URI_MISMATCH = "uri_mismatch"  # digest uri differs from the Request-URI
    OPAQUE_MISMATCH = "opaque_mismatch"
    INVALID_NONCE = "invalid_nonce"  # not issued by us (tampered, other secret, from the future)
    STALE_NONCE = "stale_nonce"  # ours, expired (or forgotten under memory pressure); the digest was right
    UNKNOWN_USER = "unknown_user"
    BAD_RESPONSE = "bad_response"  # wrong password (or wrong method/uri/body)
    REPLAY = "replay"  # nc already seen for this nonce; the digest was right


class AuthError(Exception):
    """The single error type of this module."""

    def __init__(self, reason: AuthFailure, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail

    @property
    def stale(self) -> bool:
        """Whether the fresh challenge answering this failure should say ``stale=true``.

        RFC 7616 section 3.3: only when the nonce is no longer valid but the digest was right, so the client
        retries with the new nonce without asking its user again.
        """
        return self.reason in (AuthFailure.STALE_NONCE, AuthFailure.REPLAY)


def _malformed(detail: str) -> AuthError:
    return AuthError(AuthFailure.MALFORMED, detail)


# --- algorithms -------------------------------------------------------------------------------------------------

_HASH_NAMES: dict[str, str] = {"MD5": "md5", "SHA-256": "sha256"}
try:  # SHA-512/256 needs OpenSSL; absent on some builds
    hashlib.new("sha512_256", b"")
    _HASH_NAMES["SHA-512-256"] = "sha512_256"
except ValueError:  # pragma: no cover - depends on the OpenSSL build
    pass

ALGORITHMS: tuple[str, ...] = tuple(name for base in _HASH_NAMES for name in (base, base + "-sess"))
"""Every algorithm name this module can compute, canonical spelling."""

_CANONICAL = {name.upper(): name for name in ALGORITHMS}


def canonical_algorithm(name: str) -> str:
    """The canonical spelling of a supported algorithm name (matched case-insensitively)."""
    found = _CANONICAL.get(name.strip().upper())
    if found is None:
        raise AuthError(AuthFailure.UNSUPPORTED, f"algorithm {name!r}")
    return found


def base_algorithm(name: str) -> str:
    """The hash under an algorithm: ``"SHA-256-sess"`` -> ``"SHA-256"``. HA1 values are stored per base."""
    canonical = canonical_algorithm(name)
    return canonical[: -len("-sess")] if canonical.endswith("-sess") else canonical


def _h(base: str, data: str | bytes) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return hashlib.new(_HASH_NAMES[base], raw).hexdigest()


def compute_ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """``H(username:realm:password)`` with the algorithm's hash: the value a server stores instead of passwords.

    For ``-sess`` algorithms this is still the stored (non-session) HA1; :func:`compute_response` derives the
    session key from it.
    """
    return _h(base_algorithm(algorithm), f"{username}:{realm}:{password}")


def compute_response(
    *,
    ha1: str,
    algorithm: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The ``response`` value (RFC 7616 section 3.4.1; RFC 2069 form when ``qop`` is None).

    ``nc`` is the literal 8-hex-digit string as sent: it enters the hash as text.
    """
    canonical = canonical_algorithm(algorithm)
    base = base_algorithm(canonical)
    key = ha1.lower()
    if canonical.endswith("-sess"):
        if cnonce is None:
            raise _malformed("a -sess algorithm needs a cnonce")
        key = _h(base, f"{key}:{nonce}:{cnonce}")
    if qop == "auth-int":
        ha2 = _h(base, f"{method}:{uri}:{_h(base, body)}")
    elif qop in (None, "auth"):
        ha2 = _h(base, f"{method}:{uri}")
    else:
        raise AuthError(AuthFailure.UNSUPPORTED, f"qop {qop!r}")
    if qop is None:
        return _h(base, f"{key}:{nonce}:{ha2}")
    if nc is None or cnonce is None:
        raise _malformed("qop needs nc and cnonce")
    return _h(base, f"{key}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


# --- header syntax ----------------------------------------------------------------------------------------------

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
            raise _malformed("control character in a quoted string")
        out.append(char)
        pos += 1
    raise _malformed("unterminated quoted string")


def _read_bare(text: str, pos: int) -> tuple[str, int]:
    """An unquoted value. Tolerant: anything up to whitespace or a comma (base64 nonces sent bare, ``sip:`` uris)."""
    start = pos
    while pos < len(text) and text[pos] not in _WS and text[pos] not in ',"':
        pos += 1
    if pos == start:
        raise _malformed("empty parameter value")
    return text[start:pos], pos


def _parse_auth_list(value: str) -> list[tuple[str, dict[str, str]]]:
    """``scheme param=value, param="value", scheme2 ...`` -> [(scheme lowercased, {name lowercased: value})]."""
    if not isinstance(value, str):
        raise _malformed("header value is not a string")
    if len(value) > _MAX_HEADER:
        raise _malformed("header value too long")
    if any(char in _FORBIDDEN for char in value):
        raise _malformed("control character in header value")
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
            raise _malformed(f"unexpected {value[pos]!r} at {pos}")
        probe = _skip_ws(value, after)
        if probe < len(value) and value[probe] == "=" and current is not None:
            name = token.lower()
            pos = _skip_ws(value, probe + 1)
            if pos >= len(value):
                raise _malformed(f"no value for {name}")
            if value[pos] == '"':
                param, pos = _read_quoted(value, pos)
            else:
                param, pos = _read_bare(value, pos)
            if name in current:
                raise _malformed(f"duplicate parameter {name}")
            current[name] = param
            pos = _skip_ws(value, pos)
            if pos < len(value) and value[pos] != ",":
                raise _malformed(f"expected ',' at {pos}")
            continue
        if after < len(value) and value[after] not in _WS and value[after] != ",":
            raise _malformed(f"bad scheme at {pos}")
        current = {}
        items.append((token.lower(), current))
        pos = after
    if not items:
        raise _malformed("empty header value")
    return items


def _quote(text: str) -> str:
    if any(char in _FORBIDDEN for char in text):
        raise _malformed("control character in a value to quote")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _bare(text: str) -> str:
    if not text or any(char not in _TOKEN_CHARS for char in text):
        raise _malformed(f"{text!r} is not a token")
    return text


def _decode_ext_value(value: str) -> str:
    """RFC 8187 ext-value (``UTF-8''J%C3%A4s``), used by RFC 7616 for ``username*``."""
    parts = value.split("'", 2)
    if len(parts) != 3 or parts[0].lower() not in ("utf-8", "iso-8859-1"):
        raise _malformed("bad username* value")
    try:
        return urllib.parse.unquote(parts[2], encoding=parts[0].lower(), errors="strict")
    except UnicodeDecodeError:
        raise _malformed("bad username* value") from None


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
        parts = [f"realm={_quote(self.realm)}"]
        if self.domain is not None:
            parts.append(f"domain={_quote(self.domain)}")
        parts.append(f"nonce={_quote(self.nonce)}")
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        if self.stale:
            parts.append("stale=TRUE")
        parts.append(f"algorithm={_bare(self.algorithm)}")
        if self.qop:
            parts.append(f"qop={_quote(','.join(_bare(q) for q in self.qop))}")
        if self.charset is not None:
            parts.append(f"charset={_bare(self.charset)}")
        if self.userhash:
            parts.append("userhash=true")
        return "Digest " + ", ".join(parts)


def _challenge_from(params: dict[str, str]) -> DigestChallenge:
    known = {"realm", "nonce", "algorithm", "qop", "opaque", "stale", "domain", "userhash", "charset"}
    for required in ("realm", "nonce"):
        if required not in params:
            raise _malformed(f"challenge without {required}")
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
            f"username={_quote(self.username)}",
            f"realm={_quote(self.realm)}",
            f"nonce={_quote(self.nonce)}",
            f"uri={_quote(self.uri)}",
            f"response={_quote(self.response)}",
            f"algorithm={_bare(self.algorithm)}",
        ]
        if self.cnonce is not None:
            parts.append(f"cnonce={_quote(self.cnonce)}")
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        if self.qop is not None:
            parts.append(f"qop={_bare(self.qop)}")
        if self.nc is not None:
            parts.append(f"nc={_bare(self.nc)}")
        if self.userhash:
            parts.append("userhash=true")
        return "Digest " + ", ".join(parts)


_HEX = frozenset("0123456789abcdefABCDEF")


def _credentials_from(params: dict[str, str]) -> DigestCredentials:
    if "username" in params and "username*" in params:
        raise _malformed("both username and username*")
    if "username*" in params:
        username = _decode_ext_value(params["username*"])
    elif "username" in params:
        username = params["username"]
    else:
        raise _malformed("credentials without username")
    for required in ("realm", "nonce", "uri", "response"):
        if required not in params:
            raise _malformed(f"credentials without {required}")
    response = params["response"]
    if not response or any(char not in _HEX for char in response):
        raise _malformed("response is not hex")
    qop = params["qop"].strip().lower() if "qop" in params else None
    nc = params.get("nc")
    cnonce = params.get("cnonce")
    if qop is not None:
        if nc is None or cnonce is None:
            raise _malformed("qop without nc or cnonce")
        if len(nc) != 8 or any(char not in _HEX for char in nc):
            raise _malformed("nc is not 8 hex digits")
        if not cnonce:
            raise _malformed("empty cnonce")
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
        raise _malformed("more than one set of Digest credentials in one value")
    return _credentials_from(digests[0])


# --- server side ------------------------------------------------------------------------------------------------

HA1Lookup = Callable[[str, str, str], str | None]
"""``(username, realm, base algorithm) -> HA1 hex or None``: e.g. ``("alice", "example.com", "SHA-256")``."""


class HA1Table:
    """In-memory :data:`HA1Lookup`. :meth:`add` hashes a password once per algorithm and keeps only the HA1s."""

    def __init__(self) -> None:
        self._ha1: dict[tuple[str, str, str], str] = {}

    def add(self, username: str, realm: str, password: str, algorithms: Iterable[str] | None = None) -> None:
        for algorithm in algorithms if algorithms is not None else _HASH_NAMES:
            base = base_algorithm(algorithm)
            self._ha1[(username, realm, base)] = compute_ha1(username, realm, password, base)

    def set(self, username: str, realm: str, algorithm: str, ha1: str) -> None:
        """Store a precomputed HA1 (as provisioned by an operator)."""
        if not ha1 or any(char not in _HEX for char in ha1):
            raise ValueError("HA1 must be hex")
        self._ha1[(username, realm, base_algorithm(algorithm))] = ha1.lower()

    def remove(self, username: str, realm: str) -> None:
        for key in [key for key in self._ha1 if key[:2] == (username, realm)]:
            del self._ha1[key]

    def __call__(self, username: str, realm: str, algorithm: str) -> str | None:
        return self._ha1.get((username, realm, algorithm))


@dataclass(frozen=True)
class Verified:
    """Credentials that passed: who, and with what."""

    username: str
    realm: str
    algorithm: str
    qop: str | None
    nonce: str
    nc: int | None


_NONCE_DOMAIN = b"opencomms sip digest nonce v1\x00"
_NONCE_TS = struct.Struct(">Q")  # issue time, milliseconds
_SALT_BYTES = 8
_MAC_BYTES = 16
_NONCE_BYTES = _NONCE_TS.size + _SALT_BYTES + _MAC_BYTES
_WINDOW = 64  # nc values remembered below the highest one seen, per nonce


@dataclass
class _NcWindow:
    issued: float
    highest: int
    mask: int  # bit i set = nc (highest - i) seen


@dataclass
class _NonceTracker:
    """nc values seen per nonce, bounded. A forgotten nonce is never trusted again: see :meth:`check`."""

    capacity: int
    entries: OrderedDict[str, _NcWindow] = field(default_factory=OrderedDict)
    # Issue time of the newest nonce ever evicted while possibly still valid. An untracked nonce issued at or
    # before it may have been used already, so it is treated as stale (the client re-authenticates without
    # prompting) instead of trusted: replay protection survives the memory bound.
    floor: float = float("-inf")

    def check(self, nonce: str, issued: float, nc: int, expires_before: float) -> AuthFailure | None:
        window = self.entries.get(nonce)
        if window is None:
            if issued <= self.floor:
                return AuthFailure.STALE_NONCE
            self._make_room(expires_before)
            self.entries[nonce] = _NcWindow(issued=issued, highest=nc, mask=1)
            return None
        self.entries.move_to_end(nonce)
        if nc > window.highest:
            shift = nc - window.highest
            window.mask = ((window.mask << shift) | 1) & ((1 << _WINDOW) - 1) if shift < _WINDOW else 1
            window.highest = nc
            return None
        offset = window.highest - nc
        if offset >= _WINDOW or (window.mask >> offset) & 1:
            return AuthFailure.REPLAY
        window.mask |= 1 << offset
        return None

    def _make_room(self, expires_before: float) -> None:
        # Expired entries at the old end go first; they need no floor (their nonces are stale anyway).
        while self.entries:
            oldest = next(iter(self.entries.values()))
            if oldest.issued >= expires_before:
                break
            self.entries.popitem(last=False)
        while len(self.entries) >= self.capacity:
            _nonce, evicted = self.entries.popitem(last=False)
            self.floor = max(self.floor, evicted.issued)

    def __len__(self) -> int:
        return len(self.entries)


class DigestChallenger:
    """Server side of Digest: issues challenges and verifies credentials. Time is an input (``now``, seconds).

    Nonces are stateless: ``base64url(issue_ms || salt || HMAC-SHA256(secret, realm || issue_ms || salt)[:16])``.
    Any node sharing ``secret`` verifies them; only the nc windows (replay protection) are per process.
    """

    def __init__(
        self,
        realm: str,
        secret: bytes,
        lookup: HA1Lookup,
        *,
        algorithms: Sequence[str] = ("SHA-256", "MD5"),
        qop: Sequence[str] = ("auth",),
        nonce_ttl: float = 300.0,
        max_tracked_nonces: int = 10_000,
        opaque: str | None = None,
        clock_skew: float = 5.0,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("secret must be at least 16 bytes")
        if not algorithms:
            raise ValueError("at least one algorithm")
        if any(q not in ("auth", "auth-int") for q in qop):
            raise ValueError("qop must be auth and/or auth-int")
        if nonce_ttl <= 0 or max_tracked_nonces < 1:
            raise ValueError("nonce_ttl and max_tracked_nonces must be positive")
        _quote(realm)
        self.realm = realm
        self.algorithms = tuple(canonical_algorithm(name) for name in algorithms)
        self.qop = tuple(qop)
        self.nonce_ttl = nonce_ttl
        self.opaque = opaque
        self.clock_skew = clock_skew
        self._secret = secret
        self._lookup = lookup
        self._tracker = _NonceTracker(capacity=max_tracked_nonces)

    # -- challenges

    def new_nonce(self, now: float) -> str:
        issued = _NONCE_TS.pack(max(0, int(now * 1000)))
        salt = secrets.token_bytes(_SALT_BYTES)
        raw = issued + salt + self._mac(issued + salt)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    def challenges(self, now: float, *, stale: bool = False) -> list[DigestChallenge]:
        """One challenge per algorithm, preferred first (RFC 8760: one header each), sharing one fresh nonce."""
        nonce = self.new_nonce(now)
        return [
            DigestChallenge(
                realm=self.realm, nonce=nonce, algorithm=algorithm, qop=self.qop, opaque=self.opaque, stale=stale
            )
            for algorithm in self.algorithms
        ]

    def challenge_headers(self, now: float, *, stale: bool = False) -> list[str]:
        """The ``WWW-Authenticate`` (401) or ``Proxy-Authenticate`` (407) values to send, in order."""
        return [challenge.to_header() for challenge in self.challenges(now, stale=stale)]

    # -- verification

    def verify(
        self,
        authorization: str | Sequence[str],
        method: str,
        request_uri: str | None,
        now: float,
        *,
        body: bytes = b"",
    ) -> Verified:
        """Check the credentials for our realm; raise :class:`AuthError` otherwise.

        ``authorization``: one header value or all of them (a request may carry credentials for several realms).
        ``request_uri``: when given, the digest ``uri`` must equal it (RFC 7616 section 3.4.6); None skips the check.
        """
        values = [authorization] if isinstance(authorization, str) else list(authorization)
        creds = self._ours(values)
        try:
            algorithm = canonical_algorithm(creds.algorithm)
        except AuthError:
            raise AuthError(AuthFailure.UNSUPPORTED, f"algorithm {creds.algorithm!r}") from None
        if algorithm not in self.algorithms:
            raise AuthError(AuthFailure.UNSUPPORTED, f"algorithm {algorithm} not offered")
        if creds.userhash:
            raise AuthError(AuthFailure.UNSUPPORTED, "userhash")
        if self.qop:
            if creds.qop not in self.qop:
                raise AuthError(AuthFailure.UNSUPPORTED, f"qop {creds.qop!r} not offered")
        elif creds.qop is not None:
            raise AuthError(AuthFailure.UNSUPPORTED, "qop not offered")
        if self.opaque is not None and not _equal(creds.opaque or "", self.opaque):
            raise AuthError(AuthFailure.OPAQUE_MISMATCH, "opaque differs from the challenge")
        if request_uri is not None and creds.uri != request_uri:
            raise AuthError(AuthFailure.URI_MISMATCH, "digest uri differs from the Request-URI")
        issued = self._issued(creds.nonce)
        if issued > now + self.clock_skew:
            raise AuthError(AuthFailure.INVALID_NONCE, "nonce from the future")
        base = base_algorithm(algorithm)
        ha1 = self._lookup(creds.username, self.realm, base)
        known = ha1 is not None and bool(ha1) and all(char in _HEX for char in ha1)
        expected = compute_response(
            ha1=ha1 if known and ha1 is not None else _h(base, secrets.token_bytes(16)),  # same work either way
            algorithm=algorithm,
            nonce=creds.nonce,
            method=method,
            uri=creds.uri,
            qop=creds.qop,
            nc=creds.nc,
            cnonce=creds.cnonce,
            body=body,
        )
        matches = _equal(expected, creds.response)
        if not known:
            raise AuthError(AuthFailure.UNKNOWN_USER, "no HA1 for this user")
        if not matches:
            raise AuthError(AuthFailure.BAD_RESPONSE, "response does not match")
        if now - issued > self.nonce_ttl:
            raise AuthError(AuthFailure.STALE_NONCE, "nonce expired")
        nc = creds.nc_value
        verdict = self._tracker.check(creds.nonce, issued, nc if nc is not None else 1, now - self.nonce_ttl)
        if verdict is AuthFailure.REPLAY:
            raise AuthError(verdict, f"nc {creds.nc or '(none)'} already used with this nonce")
        if verdict is AuthFailure.STALE_NONCE:
            raise AuthError(verdict, "nonce forgotten under memory pressure")
        return Verified(
            username=creds.username, realm=creds.realm, algorithm=algorithm, qop=creds.qop, nonce=creds.nonce, nc=nc
        )

    @property
    def tracked_nonces(self) -> int:
        return len(self._tracker)

    def _ours(self, values: Sequence[str]) -> DigestCredentials:
        errors: list[AuthError] = []
        for value in values:
            try:
                creds = parse_credentials(value)
            except AuthError as exc:
                errors.append(exc)
                continue
            if creds.realm == self.realm:
                return creds
            errors.append(AuthError(AuthFailure.REALM_MISMATCH, f"realm {creds.realm!r}"))
        if len(errors) == 1:
            raise errors[0]
        raise AuthError(AuthFailure.REALM_MISMATCH, "no credentials for our realm")

    def _mac(self, data: bytes) -> bytes:
        message = _NONCE_DOMAIN + self.realm.encode("utf-8") + b"\x00" + data
        return hmac.new(self._secret, message, hashlib.sha256).digest()[:_MAC_BYTES]

    def _issued(self, nonce: str) -> float:
        """The issue time of a nonce we made; INVALID_NONCE for anything else."""
        try:
            if len(nonce) > 64:
                raise ValueError
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (ValueError, binascii.Error):
            raise AuthError(AuthFailure.INVALID_NONCE, "nonce is not ours") from None
        if len(raw) != _NONCE_BYTES:
            raise AuthError(AuthFailure.INVALID_NONCE, "nonce is not ours")
        head, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(head)):
            raise AuthError(AuthFailure.INVALID_NONCE, "nonce is not ours")
        (issued_ms,) = _NONCE_TS.unpack(head[: _NONCE_TS.size])
        return float(issued_ms) / 1000.0


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


# --- client side ------------------------------------------------------------------------------------------------


class DigestClient:
    """Answers challenges (e.g. a trunk's 401/407). Counts nc per (realm, nonce), remembering ``max_nonces``."""

    def __init__(self, *, cnonce: Callable[[], str] | None = None, max_nonces: int = 64) -> None:
        if max_nonces < 1:
            raise ValueError("max_nonces must be positive")
        self._cnonce = cnonce or (lambda: secrets.token_hex(16))
        self._max = max_nonces
        self._nc: OrderedDict[tuple[str, str], int] = OrderedDict()

    def credentials(
        self,
        challenge: str | DigestChallenge | Sequence[str | DigestChallenge],
        method: str,
        uri: str,
        username: str,
        password: str,
        body: bytes = b"",
    ) -> DigestCredentials:
        """The credentials answering ``challenge`` (a header value, a parsed challenge, or several: topmost usable).

        qop ``auth`` is preferred over ``auth-int``; the request body only matters for ``auth-int``.
        """
        if isinstance(challenge, str | DigestChallenge):
            chosen = select_challenge([challenge])
        else:
            chosen = select_challenge(challenge)
        algorithm = canonical_algorithm(chosen.algorithm)
        qop: str | None = None
        nc: str | None = None
        cnonce: str | None = None
        if chosen.qop:
            qop = "auth" if "auth" in chosen.qop else "auth-int"
        if qop is not None or algorithm.endswith("-sess"):
            cnonce = self._cnonce()
            _quote(cnonce)
        if qop is not None:
            nc = f"{self._next_nc(chosen.realm, chosen.nonce):08x}"
        ha1 = compute_ha1(username, chosen.realm, password, algorithm)
        response = compute_response(
            ha1=ha1,
            algorithm=algorithm,
            nonce=chosen.nonce,
            method=method,
            uri=uri,
            qop=qop,
            nc=nc,
            cnonce=cnonce,
            body=body,
        )
        sent_username = username
        if chosen.userhash:
            sent_username = _h(base_algorithm(algorithm), f"{username}:{chosen.realm}")
        return DigestCredentials(
            username=sent_username,
            realm=chosen.realm,
            nonce=chosen.nonce,
            uri=uri,
            response=response,
            algorithm=algorithm,
            qop=qop,
            nc=nc,
            cnonce=cnonce,
            opaque=chosen.opaque,
            userhash=chosen.userhash,
        )

    def authorize(
        self,
        challenge: str | DigestChallenge | Sequence[str | DigestChallenge],
        method: str,
        uri: str,
        username: str,
        password: str,
        body: bytes = b"",
    ) -> str:
        """The ``Authorization`` / ``Proxy-Authorization`` value answering ``challenge``."""
        return self.credentials(challenge, method, uri, username, password, body).to_header()

    def _next_nc(self, realm: str, nonce: str) -> int:
        key = (realm, nonce)
        count = self._nc.pop(key, 0) + 1
        if count > 0xFFFFFFFF:
            raise AuthError(AuthFailure.UNSUPPORTED, "nc exhausted for this nonce")
        self._nc[key] = count
        while len(self._nc) > self._max:
            self._nc.popitem(last=False)
        return count
