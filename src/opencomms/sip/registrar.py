"""Sans-I/O SIP registrar (RFC 3261 section 10.3): bindings of contacts to addresses-of-record.

Input is already parsed: the AOR (To URI), the Contact values as ``(uri, expires param | None, q | None)`` (the
wildcard is ``("*", None, None)``), Call-ID, CSeq number, the Expires header (or None) and ``now``. Output is the
status line, every live binding with its remaining lifetime, and extra headers (``Min-Expires`` on 423). Time is
an input; keep ``now`` on the wall clock if :meth:`Registrar.snapshot` is persisted across restarts.

Steps 1-5 of section 10.3 (domain check, Require, authentication, authorisation, "does this AOR exist" -> 404)
belong to the caller, which knows the directory and owns the :class:`~opencomms.sip.digest_server.DigestChallenger`.
This module does steps 6-8:

* expiry per contact: ``expires`` parameter, else Expires header, else ``default_expires``; values above
  ``max_expires`` are shortened; ``0 < expiry < min_expires`` refuses the whole request with 423 and
  ``Min-Expires``;
* ``Contact: *`` removes every binding of the AOR, valid only alone and with ``Expires: 0`` (else 400);
* a binding with the request's Call-ID and a CSeq not lower than the request's refuses the request with 500
  (out-of-order or replayed REGISTER); a different Call-ID replaces or removes the binding;
* all-or-nothing: a refused request changes nothing;
* a REGISTER without Contact is a query and answers the current bindings;
* the caller may pass where the request came from (``source=``): it is kept on the bindings it touches.

Contacts are compared with a simplified RFC 3261 section 19.1.4 key (:func:`uri_key`); pass the SIP stack's own
comparison as ``uri_key=`` when it exists.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Binding",
    "BindingView",
    "RegisterResult",
    "Registrar",
    "RegistrarConfig",
    "format_q",
    "uri_key",
]

MAX_DELTA_SECONDS = 2**32 - 1  # RFC 3261 section 20.19: larger expires values are taken as this
MAX_CSEQ = 2**31 - 1  # RFC 3261 section 8.1.1.5
_SNAPSHOT_VERSION = 1


@dataclass(frozen=True)
class RegistrarConfig:
    """Expiry policy (seconds) and the per-AOR binding limit."""

    min_expires: int = 60
    default_expires: int = 3600
    max_expires: int = 7200
    max_bindings_per_aor: int = 16

    def __post_init__(self) -> None:
        if not 0 <= self.min_expires <= self.default_expires <= self.max_expires:
            raise ValueError("need 0 <= min_expires <= default_expires <= max_expires")
        if self.max_bindings_per_aor < 1:
            raise ValueError("max_bindings_per_aor must be positive")


@dataclass(frozen=True)
class Binding:
    """One contact bound to an AOR. Times are absolute, in the caller's ``now`` units (seconds)."""

    aor: str
    contact: str
    expires_at: float
    q: float | None
    call_id: str
    cseq: int
    registered_at: float  # first registration of this contact
    updated_at: float  # last refresh
    source: str | None = None  # where the last REGISTER came from, "udp:192.0.2.4:5060" (to reach a UA behind NAT)

    def remaining(self, now: float) -> int:
        """Whole seconds left (what a 200 reports in ``expires=``)."""
        return max(0, math.floor(self.expires_at - now))

    def to_doc(self) -> dict[str, Any]:
        return {
            "aor": self.aor,
            "contact": self.contact,
            "expires_at": self.expires_at,
            "q": self.q,
            "call_id": self.call_id,
            "cseq": self.cseq,
            "registered_at": self.registered_at,
            "updated_at": self.updated_at,
            "source": self.source,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Binding:
        def number(name: str) -> float:
            value = doc[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"binding {name} must be a finite number")
            return float(value)

        for name in ("aor", "contact", "call_id"):
            if not isinstance(doc.get(name), str) or not doc[name]:
                raise ValueError(f"binding {name} must be a non-empty string")
        cseq = doc.get("cseq")
        if isinstance(cseq, bool) or not isinstance(cseq, int) or not 0 <= cseq <= MAX_CSEQ:
            raise ValueError("binding cseq must be an integer in 0..2**31-1")
        source = doc.get("source")
        if source is not None and not isinstance(source, str):
            raise ValueError("binding source must be a string")
        q = doc.get("q")
        if q is not None:
            q = number("q")
            if not 0.0 <= q <= 1.0:
                raise ValueError("binding q must be within 0..1")
        return cls(
            aor=doc["aor"],
            contact=doc["contact"],
            expires_at=number("expires_at"),
            q=q,
            call_id=doc["call_id"],
            cseq=cseq,
            registered_at=number("registered_at"),
            updated_at=number("updated_at"),
            source=source or None,
        )


def format_q(q: float) -> str:
    """A qvalue as SIP writes it: ``1``, ``0.5``, ``0.125`` (at most three decimals)."""
    return f"{q:.3f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class BindingView:
    """A binding as a 200 reports it."""

    contact: str
    expires: int
    q: float | None

    def header_value(self) -> str:
        """A Contact header value: ``<sip:alice@192.0.2.4:5060>;expires=3600;q=0.5``."""
        uri = self.contact.strip()
        if not uri.startswith("<"):
            uri = f"<{uri}>"
        value = f"{uri};expires={self.expires}"
        if self.q is not None:
            value += f";q={format_q(self.q)}"
        return value


@dataclass(frozen=True)
class RegisterResult:
    """The response to send: status, reason phrase, the AOR's bindings, extra headers (name, value)."""

    status: int
    reason: str
    bindings: tuple[BindingView, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def contact_headers(self) -> list[str]:
        return [binding.header_value() for binding in self.bindings]


def _unescape(text: str) -> str:
    return urllib.parse.unquote(text, errors="surrogateescape")


_COMPARED_PARAMS = ("maddr", "method", "transport", "ttl", "user")


def uri_key(uri: str) -> str:
    """A comparison key approximating RFC 3261 section 19.1.4 URI equality.

    Scheme and host compare case-insensitively, user and password case-sensitively, %-escapes are decoded, the
    port is significant (``sip:h`` differs from ``sip:h:5060``), and of the URI parameters only ``user``, ``ttl``,
    ``method``, ``maddr`` and ``transport`` count (case-insensitively); other parameters and headers are
    ignored. Enclosing ``<>`` are dropped.
    """
    text = uri.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    scheme, sep, rest = text.partition(":")
    if not sep:
        return text.lower()
    rest = rest.split("?", 1)[0]
    address, *params = rest.split(";")
    userinfo, at, hostport = address.rpartition("@")
    key = f"{scheme.lower()}:"
    if at:
        key += _unescape(userinfo) + "@"
    key += _unescape(hostport).lower()
    compared: list[str] = []
    for param in params:
        name, _eq, value = param.partition("=")
        name = _unescape(name).strip().lower()
        if name in _COMPARED_PARAMS:
            compared.append(f"{name}={_unescape(value).strip().lower()}")
    if compared:
        key += ";" + ";".join(sorted(compared))
    return key


ContactSpec = tuple[str, int | None, float | None]


class Registrar:
    """Bindings by AOR, in memory. Every method is synchronous and clock-free (``now`` is an argument)."""

    def __init__(self, config: RegistrarConfig | None = None, *, uri_key: Callable[[str], str] = uri_key) -> None:
        self.config = config or RegistrarConfig()
        self._key = uri_key
        # AOR key -> contact key -> binding
        self._aors: dict[str, dict[str, Binding]] = {}

    # -- REGISTER

    def register(
        self,
        aor: str,
        contacts: Sequence[ContactSpec],
        call_id: str,
        cseq: int,
        expires_header: int | None,
        now: float,
        *,
        source: str | None = None,
    ) -> RegisterResult:
        """Process one REGISTER (RFC 3261 section 10.3 steps 6-8) and say what to answer. `source` (where the
        request came from) is kept on every binding it creates or refreshes."""
        config = self.config
        if not aor.strip():
            return RegisterResult(400, "Bad Request: no address-of-record")
        if not call_id:
            return RegisterResult(400, "Bad Request: no Call-ID")
        if isinstance(cseq, bool) or not isinstance(cseq, int) or not 0 <= cseq <= MAX_CSEQ:
            return RegisterResult(400, "Bad Request: invalid CSeq")
        if expires_header is not None and expires_header < 0:
            return RegisterResult(400, "Bad Request: invalid Expires")

        aor_key = self._key(aor)
        current = self._live(aor_key, now)
        wildcard = any(uri.strip() == "*" for uri, _exp, _q in contacts)

        if wildcard:
            if len(contacts) != 1 or contacts[0][1] is not None or contacts[0][2] is not None:
                return RegisterResult(400, "Bad Request: Contact * must be the only contact, without parameters")
            if expires_header != 0:
                return RegisterResult(400, "Bad Request: Contact * needs Expires: 0")
            for binding in current.values():
                if binding.call_id == call_id and cseq <= binding.cseq:
                    return RegisterResult(500, "Server Internal Error: out-of-order REGISTER")
            self._commit(aor_key, {})
            return RegisterResult(200, "OK")

        # Validate and compute every expiry first: a refused request must change nothing.
        changes: dict[str, tuple[str, int, float | None]] = {}  # contact key -> (uri, expiry, q); last one wins
        for uri, expires_param, q in contacts:
            if not uri.strip():
                return RegisterResult(400, "Bad Request: empty Contact")
            if expires_param is not None and expires_param < 0:
                return RegisterResult(400, "Bad Request: invalid expires parameter")
            if q is not None and not (isinstance(q, int | float) and 0.0 <= q <= 1.0):
                return RegisterResult(400, "Bad Request: q must be within 0..1")
            requested = expires_param if expires_param is not None else expires_header
            expiry = config.default_expires if requested is None else min(requested, MAX_DELTA_SECONDS)
            if 0 < expiry < config.min_expires:
                return RegisterResult(423, "Interval Too Brief", headers=(("Min-Expires", str(config.min_expires)),))
            changes[self._key(uri)] = (uri.strip(), min(expiry, config.max_expires), q)

        updated = dict(current)
        for key, (uri, expiry, q) in changes.items():
            existing = updated.get(key)
            if existing is not None and existing.call_id == call_id and cseq <= existing.cseq:
                return RegisterResult(500, "Server Internal Error: out-of-order REGISTER")
            if expiry == 0:
                updated.pop(key, None)
                continue
            updated[key] = Binding(
                aor=existing.aor if existing is not None else aor.strip(),
                contact=uri,
                expires_at=now + expiry,
                q=None if q is None else float(q),
                call_id=call_id,
                cseq=cseq,
                registered_at=existing.registered_at if existing is not None else now,
                updated_at=now,
                source=source,
            )
        if len(updated) > config.max_bindings_per_aor and len(updated) > len(current):
            return RegisterResult(503, "Service Unavailable: too many contacts for this address-of-record")
        self._commit(aor_key, updated)
        return RegisterResult(200, "OK", bindings=tuple(self._views(updated.values(), now)))

    # -- queries

    def lookup(self, aor: str, now: float) -> list[Binding]:
        """Live bindings of an AOR: highest q first (absent q counts as 1.0), then most recently refreshed."""
        return _ordered(self._live(self._key(aor), now).values())

    def purge(self, now: float) -> int:
        """Drop every expired binding; the number dropped."""
        dropped = 0
        for aor_key in list(self._aors):
            before = len(self._aors[aor_key])
            dropped += before - len(self._live(aor_key, now))
        return dropped

    def next_expiry(self) -> float | None:
        """When the next binding expires (to arm a purge timer), None without bindings."""
        return min((b.expires_at for bindings in self._aors.values() for b in bindings.values()), default=None)

    def aors(self) -> list[str]:
        return sorted(next(iter(bindings.values())).aor for bindings in self._aors.values() if bindings)

    def __len__(self) -> int:
        """Number of bindings held (expired ones included until purged or looked up)."""
        return sum(len(bindings) for bindings in self._aors.values())

    # -- persistence

    def snapshot(self) -> dict[str, Any]:
        """Every binding as plain JSON-able data."""
        return {
            "version": _SNAPSHOT_VERSION,
            "bindings": [b.to_doc() for key in sorted(self._aors) for b in _ordered(self._aors[key].values())],
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Replace every binding with a :meth:`snapshot`'s. ValueError (and no change) on invalid data."""
        if not isinstance(data, Mapping) or data.get("version") != _SNAPSHOT_VERSION:
            raise ValueError("not a registrar snapshot of a known version")
        docs = data.get("bindings")
        if not isinstance(docs, list):
            raise ValueError("snapshot bindings must be a list")
        aors: dict[str, dict[str, Binding]] = {}
        for doc in docs:
            if not isinstance(doc, Mapping):
                raise ValueError("snapshot binding must be an object")
            try:
                binding = Binding.from_doc(doc)
            except KeyError as exc:
                raise ValueError(f"snapshot binding without {exc.args[0]}") from None
            aors.setdefault(self._key(binding.aor), {})[self._key(binding.contact)] = binding
        self._aors = aors

    # -- internals

    def _live(self, aor_key: str, now: float) -> dict[str, Binding]:
        bindings = self._aors.get(aor_key)
        if not bindings:
            return {}
        live = {key: b for key, b in bindings.items() if b.expires_at > now}
        if len(live) != len(bindings):
            self._commit(aor_key, live)
        return live

    def _commit(self, aor_key: str, bindings: dict[str, Binding]) -> None:
        if bindings:
            self._aors[aor_key] = bindings
        else:
            self._aors.pop(aor_key, None)

    @staticmethod
    def _views(bindings: Iterable[Binding], now: float) -> list[BindingView]:
        return [BindingView(contact=b.contact, expires=b.remaining(now), q=b.q) for b in _ordered(bindings)]


def _ordered(bindings: Iterable[Binding]) -> list[Binding]:
    return sorted(bindings, key=lambda b: (-(1.0 if b.q is None else b.q), -b.updated_at, b.contact))
