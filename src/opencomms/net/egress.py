"""The one outbound-address (egress) policy: where the node may connect or post to when a bot chooses the URL.

Owns the URL rules (absolute http(s), a host, no credentials, canonical IP literals only), the address rules
(`classify_address`: private, loopback, link-local, cloud metadata, reserved, CGNAT, multicast and the IPv6 forms
embedding them are refused), the allow list (CIDRs, addresses, host names) and the checking resolver every client
connection goes through. It must not send anything itself: clients (notifications, prompt fetching, app-hosted
media) use `check_url` for each URL and hop, and connect only to addresses `resolve` returned.

Design notes
------------
* **Connect-time check, no DNS rebinding.** Names are resolved by `resolve` (getaddrinfo off the loop, with a time
  limit); every address is judged and the caller connects to exactly those addresses, so a name that answered a
  public address to an earlier check cannot point the connection somewhere else. aiohttp clients get it as
  `CheckingResolver` (their DNS cache off); IP literals, which aiohttp never hands to a resolver, are judged by
  `check_url` before each request and at every redirect hop (`trace_config`).
* **Strict.** A host is refused when any of its addresses is refused (a name answering a public and a private
  address is refused), unless the host name itself is on the allow list.
* **Encoded IPv4.** `http://2130706433/`, `http://0x7f.1/`, `http://017700000001/` or `http://127.1/` are what
  resolvers decode to 127.0.0.1: such non-canonical numeric hosts are refused whatever they decode to.
* **`localhost`.** `localhost` and `*.localhost` are loopback by definition (RFC 6761): judged as 127.0.0.1 and ::1
  without asking a resolver, so the API can refuse them synchronously.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

__all__ = [
    "CheckingResolver",
    "EgressPolicy",
    "EgressRefused",
    "IPAddress",
    "ResolvedAddress",
    "classify_address",
    "merge_allow",
    "refusal",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_CHARS = 8192
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$"
)
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
_METADATA = ipaddress.IPv4Address("169.254.169.254")
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LOOPBACK_NAME_ADDRESSES = (ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1"))


def classify_address(address: str | IPAddress) -> str | None:
    """Why `address` must not be connected to (e.g. "loopback"), or None when it is globally routable.

    IPv6 addresses that embed an IPv4 address (IPv4-mapped, 6to4, NAT64) are judged by that IPv4 address too.
    """
    addr = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.scope_id is not None:
            addr = ipaddress.IPv6Address(int(addr))
        if addr.ipv4_mapped is not None:
            inner = classify_address(addr.ipv4_mapped)
            return None if inner is None else f"IPv4-mapped {inner}"
        embedded = addr.sixtofour
        if embedded is None and addr in _NAT64:
            embedded = ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
        if embedded is not None and (inner := classify_address(embedded)) is not None:
            return f"embeds a {inner} IPv4 address"
    if addr == _METADATA:
        return "cloud metadata"
    checks: tuple[tuple[bool, str], ...] = (
        (addr.is_unspecified, "unspecified"),
        (addr.is_loopback, "loopback"),
        (addr.is_link_local, "link-local"),
        (addr.is_multicast, "multicast"),
        (isinstance(addr, ipaddress.IPv4Address) and addr in _THIS_NETWORK, "'this network' (0.0.0.0/8)"),
        (isinstance(addr, ipaddress.IPv4Address) and addr in _SHARED, "shared/CGNAT (100.64.0.0/10)"),
        (addr.is_reserved, "reserved"),
        (addr.is_private, "private"),
        (not addr.is_global, "not globally routable"),
    )
    return next((reason for refused, reason in checks if refused), None)


class EgressRefused(OSError):
    """The policy refuses a URL or a destination. An OSError so that it travels through aiohttp's connector.

    `reason` reads after a field name ("loopback address 127.0.0.1 is not allowed"); `bad_url` tells a URL that is
    malformed (scheme, credentials, encoded numeric host) from one whose destination is refused.
    """

    def __init__(self, reason: str, *, bad_url: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.bad_url = bad_url

    def __str__(self) -> str:
        return self.reason


def refusal(exc: BaseException) -> EgressRefused | None:
    """The policy's verdict buried in a client error (aiohttp wraps resolver errors), if that is what it is."""
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            return None
        if isinstance(seen, EgressRefused):
            return seen
        nested = seen.os_error if isinstance(seen, aiohttp.ClientConnectorError) else None
        seen = nested if nested is not None and nested is not seen else (seen.__cause__ or seen.__context__)
    return None


def _normalise_host(host: str) -> str:
    return host.rstrip(".").lower()


@dataclass(frozen=True, slots=True)
class ResolvedAddress:
    """One checked address of a host: connect to `address` (numeric, with an IPv6 scope if any)."""

    family: socket.AddressFamily
    address: str
    port: int
    proto: int = 0


class EgressPolicy:
    """The allow list and the checks (see the module docstring).

    `allow` entries are CIDRs or addresses (an address inside one is allowed whatever its kind) or host names
    (every address of that exact name is allowed). `resolve_timeout` bounds each name resolution, in seconds.
    """

    def __init__(self, allow: Iterable[str] = (), *, resolve_timeout: float = 2.0) -> None:
        if resolve_timeout <= 0:
            raise ValueError("resolve_timeout must be positive")
        networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        hostnames: set[str] = set()
        for entry in allow:
            text = entry.strip()
            try:
                networks.append(ipaddress.ip_network(text.split("%")[0], strict=False))
            except ValueError:
                name = _normalise_host(text)
                if not _HOSTNAME.match(name) or all(_NUMERIC_LABEL.match(label) for label in name.split(".")):
                    raise ValueError(f"egress allow entry {entry!r} is neither a CIDR nor a hostname") from None
                hostnames.add(name)
        self.allow = tuple(allow)
        self.resolve_timeout = resolve_timeout
        self._networks = tuple(networks)
        self._hostnames = frozenset(hostnames)
        self._final: dict[str, URL] = {}
        """URLs whose host was judged allowed without resolving (a literal, an allowed or loopback name): the verdict
        depends only on the URL and this policy, which never changes, so the hot path (every callbackUri of every
        create and answer) does not parse and judge the same URL again. Bounded: cleared when full."""

    # -- judging addresses -----------------------------------------------------------------------------------
    def allowed_host(self, host: str) -> bool:
        """The host name itself is on the allow list (every address of it may be connected to)."""
        return _normalise_host(host) in self._hostnames

    def address_refusal(self, addr: IPAddress) -> str | None:
        """Why `addr` is refused ("loopback"), or None when it is routable or on the allow list."""
        reason = classify_address(addr)
        if reason is None:
            return None
        plain = ipaddress.IPv6Address(int(addr)) if isinstance(addr, ipaddress.IPv6Address) else addr
        candidates: list[IPAddress] = [plain]
        if isinstance(plain, ipaddress.IPv6Address) and plain.ipv4_mapped is not None:
            candidates.append(plain.ipv4_mapped)
        if any(c in net for c in candidates for net in self._networks):
            return None
        return reason

    def check(self, host: str, addresses: Iterable[IPAddress]) -> None:
        """Raise `EgressRefused` unless every address of `host` may be connected to (or the name is allowed)."""
        if self.allowed_host(host):
            return
        for addr in addresses:
            reason = self.address_refusal(addr)
            if reason is not None:
                shown = str(addr).split("%")[0]
                literal = _normalise_host(host).strip("[]").split("%")[0] == shown
                if literal:
                    raise EgressRefused(f"{reason} address {shown} is not allowed")
                raise EgressRefused(f"{host} resolves to {reason} address {shown}, which is not allowed")

    # -- judging URLs ------------------------------------------------------------------------------------------
    @staticmethod
    def parse_url(raw: str | URL, base: URL | None = None, *, schemes: tuple[str, ...] = ("http", "https")) -> URL:
        """An absolute, credential-free URL of one of `schemes` without fragment, or `EgressRefused(bad_url=True)`."""
        if len(str(raw)) > MAX_URL_CHARS:
            raise EgressRefused(f"URL longer than {MAX_URL_CHARS} characters", bad_url=True)
        try:
            url = raw if isinstance(raw, URL) else URL(raw)
            if base is not None:
                url = base.join(url)
            host, scheme = url.raw_host, url.scheme.lower()
        except (ValueError, TypeError) as exc:
            raise EgressRefused(f"malformed URL: {exc}", bad_url=True) from None
        if scheme not in schemes:
            shown = f"scheme {scheme!r}" if scheme else "a relative URL"
            raise EgressRefused(f"{shown} is not allowed, only {' and '.join(schemes)}", bad_url=True)
        if not host:
            raise EgressRefused("URL has no host", bad_url=True)
        if url.raw_user is not None or url.raw_password is not None:
            raise EgressRefused("credentials in the URL are not allowed", bad_url=True)
        return url.with_fragment(None)

    @staticmethod
    def literal(host: str) -> IPAddress | None:
        """The address of an IP-literal host (brackets, trailing dot and %-encoded scope tolerated), None for a name;
        `EgressRefused(bad_url=True)` for a non-canonical numeric host (decimal, octal, hex or short IPv4)."""
        text = host.strip().rstrip(".").strip("[]").replace("%25", "%")
        try:
            return ipaddress.ip_address(text)
        except ValueError:
            pass
        labels = text.lower().split(".")
        if labels and _NUMERIC_LABEL.match(labels[-1]):  # what a URL parser or resolver would take as IPv4
            try:
                decoded = f" ({socket.inet_ntoa(socket.inet_aton(text))})"
            except OSError:
                decoded = ""
            raise EgressRefused(f"non-canonical numeric host {host!r}{decoded} is not allowed", bad_url=True)
        return None

    def check_host(self, host: str) -> bool:
        """Judge a host without resolving it: raises `EgressRefused` for a refused IP literal or loopback name;
        True when the verdict is final (a literal, an allowed or a loopback name), False when only resolving the
        name can tell."""
        addr = self.literal(host)
        if addr is not None:
            self.check(host, [addr])
            return True
        if self.allowed_host(host):
            return True
        name = _normalise_host(host)
        if name == "localhost" or name.endswith(".localhost"):
            self.check(host, _LOOPBACK_NAME_ADDRESSES)
            return True
        return False

    def check_url(
        self, raw: str | URL, base: URL | None = None, *, schemes: tuple[str, ...] = ("http", "https")
    ) -> URL:
        """`parse_url`, then the host judged without resolving (see `check_host`). Run it on every hop."""
        url = self.parse_url(raw, base, schemes=schemes)
        self.check_host(url.host or "")
        return url

    async def check_url_resolved(self, raw: str | URL) -> URL:
        """`check_url`, then a host name resolved (within `resolve_timeout`) and its addresses judged. A name that
        does not resolve in time is let through: every connection checks it again."""
        key = raw if isinstance(raw, str) else None
        if key is not None and (known := self._final.get(key)) is not None:
            return known
        url = self.parse_url(raw)
        host = url.host or ""
        if self.check_host(host):
            if key is not None:
                if len(self._final) >= 1024:
                    self._final.clear()
                self._final[key] = url
        else:
            try:
                await self.resolve(host, url.port or 0)
            except EgressRefused:
                raise
            except (OSError, TimeoutError):
                pass
        return url

    # -- resolving and connecting -------------------------------------------------------------------------------
    async def resolve(
        self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[ResolvedAddress]:
        """getaddrinfo (off the loop, within `resolve_timeout`), then the checks: the addresses to connect to.

        Raises `EgressRefused`, `OSError` (no address) or `TimeoutError`."""
        addr = self.literal(host)
        if addr is not None:
            self.check(host, [addr])
            fam = socket.AF_INET6 if isinstance(addr, ipaddress.IPv6Address) else socket.AF_INET
            return [ResolvedAddress(fam, str(addr), port)]
        self.check_host(host)  # a loopback name not allowed is refused without asking a resolver
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.resolve_timeout):
            infos = await loop.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, family=family, flags=socket.AI_ADDRCONFIG
            )
        found: list[ResolvedAddress] = []
        addresses: list[IPAddress] = []
        for fam, _type, proto, _canon, sockaddr in infos:
            if fam not in (socket.AF_INET, socket.AF_INET6):
                continue
            text = str(sockaddr[0])
            if fam == socket.AF_INET6 and len(sockaddr) > 3 and sockaddr[3]:
                text = f"{text.split('%')[0]}%{sockaddr[3]}"  # keep the scope of a link-local address
            addresses.append(ipaddress.ip_address(text))
            found.append(ResolvedAddress(socket.AddressFamily(fam), text, int(sockaddr[1]), proto))
        if not found:
            raise OSError(f"{host} has no IPv4 or IPv6 address")
        self.check(host, addresses)
        return found

    def resolver(self) -> CheckingResolver:
        return CheckingResolver(self)

    def connector(self, **kwargs: Any) -> aiohttp.TCPConnector:
        """An aiohttp connector that connects only to addresses this policy allows (its DNS cache off)."""
        return aiohttp.TCPConnector(resolver=self.resolver(), use_dns_cache=False, **kwargs)

    def trace_config(self, schemes: tuple[str, ...] = ("http", "https", "ws", "wss")) -> aiohttp.TraceConfig:
        """Checks the URL of a request aiohttp makes and the Location of every redirect it would follow, before it
        connects there (IP literals skip the resolver; names are checked again by the resolver)."""

        async def on_request_start(
            _session: aiohttp.ClientSession, _ctx: SimpleNamespace, params: aiohttp.TraceRequestStartParams
        ) -> None:
            self.check_url(params.url, schemes=schemes)

        async def on_request_redirect(
            _session: aiohttp.ClientSession, _ctx: SimpleNamespace, params: aiohttp.TraceRequestRedirectParams
        ) -> None:
            headers = params.response.headers
            location = headers.get("Location") or headers.get("URI")
            if location:
                self.check_url(location, params.response.url, schemes=schemes)

        trace = aiohttp.TraceConfig()
        trace.on_request_start.append(on_request_start)
        trace.on_request_redirect.append(on_request_redirect)
        return trace


class CheckingResolver(AbstractResolver):
    """aiohttp resolver: `EgressPolicy.resolve`, so aiohttp only ever sees addresses that passed."""

    def __init__(self, policy: EgressPolicy) -> None:
        self._policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._policy.resolve(host, port, family)
        return [
            ResolveResult(
                hostname=host,
                host=r.address,
                port=r.port,
                family=r.family,
                proto=r.proto,
                flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            )
            for r in found
        ]

    async def close(self) -> None:
        return None


def merge_allow(*lists: Sequence[str]) -> tuple[str, ...]:
    """One allow list from several (the egress section and its deprecated per-client aliases), duplicates dropped."""
    merged: dict[str, None] = {}
    for entries in lists:
        for entry in entries:
            if entry.strip():
                merged.setdefault(entry.strip(), None)
    return tuple(merged)
