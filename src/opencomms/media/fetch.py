"""SSRF-safe HTTP(S) fetching of prompt files whose URLs come from untrusted bots.

Owns the URL rules (http/https only, no credentials), the address rules (every address a host resolves to
must be globally routable unless explicitly allowed), redirect handling, and the size and time limits.
Must not decode, cache or retry: it returns the body bytes or raises `PromptError` saying exactly why not.

Design notes
------------
* **No DNS rebinding.** Names are resolved by `_CheckingResolver`, an aiohttp resolver that checks every
  address it returns; aiohttp connects only to those addresses (the connector's DNS cache is off, so every
  new connection asks it). SNI and the Host header stay the original hostname. IP-literal hosts, which
  aiohttp never hands to a resolver, are checked here before the request is made.
* **Redirects by hand.** Each Location is resolved against the current URL and goes through the same URL
  and address checks as the first URL, so a redirect to a private address is refused before any connection.
* **Limits.** One total deadline covers DNS, every hop and the body. A Content-Length above the limit is
  refused before reading; a body without one is streamed and abandoned as soon as it exceeds the limit.
  Compression is not requested and not undone (no decompression bombs).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from opencomms.domain.media import PromptError, PromptFailure

__all__ = ["USER_AGENT", "AddressGuard", "FetchPolicy", "SafeFetcher", "classify_address"]

USER_AGENT = "opencomms-media/1"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_URL_CHARS = 8192
_CHUNK = 64 * 1024
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$"
)
_METADATA = ipaddress.IPv4Address("169.254.169.254")
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def classify_address(address: str | IPAddress) -> str | None:
    """Why `address` must not be fetched from (e.g. "loopback"), or None when it is globally routable.

    IPv6 addresses that embed an IPv4 address (IPv4-mapped, 6to4, NAT64) are judged by that IPv4 address too.
    """
    addr = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(addr, ipaddress.IPv6Address):
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


def _normalise_host(host: str) -> str:
    return host.rstrip(".").lower()


class AddressGuard:
    """Decides whether a host's resolved addresses may be connected to.

    `allow_private` entries are CIDRs/addresses (an address inside one is allowed whatever its kind) or
    hostnames (every address of that exact name is allowed, e.g. "localhost" for development).
    """

    def __init__(self, allow_private: Iterable[str] = ()) -> None:
        networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        hostnames: set[str] = set()
        for entry in allow_private:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                name = _normalise_host(entry.strip())
                if not _HOSTNAME.match(name):
                    raise ValueError(f"allow_private entry {entry!r} is neither a CIDR nor a hostname") from None
                hostnames.add(name)
        self._networks = tuple(networks)
        self._hostnames = frozenset(hostnames)

    def _allowed(self, addr: IPAddress) -> bool:
        candidates: list[IPAddress] = [addr]
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            candidates.append(addr.ipv4_mapped)
        return any(c in net for c in candidates for net in self._networks)

    def check(self, host: str, addresses: Iterable[IPAddress]) -> None:
        """Raise `PromptError(FORBIDDEN_ADDRESS)` unless every address of `host` is routable or allowed."""
        if _normalise_host(host) in self._hostnames:
            return
        for addr in addresses:
            reason = classify_address(addr)
            if reason is not None and not self._allowed(addr):
                shown = host if host == str(addr) else f"{host} ({addr})"
                raise PromptError(PromptFailure.FORBIDDEN_ADDRESS, f"{shown} is a forbidden address ({reason})")


@dataclass(frozen=True)
class FetchPolicy:
    """Limits of one fetch."""

    max_bytes: int = 8 * 1024 * 1024
    """Largest body accepted."""
    timeout_seconds: float = 10.0
    """Deadline of the whole fetch: DNS, connections, every redirect hop and the body."""
    max_redirects: int = 3
    """Redirects followed; one more is an HTTP_STATUS failure."""
    allow_private: tuple[str, ...] = ()
    """CIDRs or hostnames allowed although private/loopback (development and tests only)."""

    def __post_init__(self) -> None:
        if self.max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        if self.timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        if self.max_redirects < 0:
            raise ValueError("max_redirects must not be negative")
        AddressGuard(self.allow_private)  # validates the entries


class _Refused(OSError):
    """Raised inside aiohttp's connector by the resolver; carries the PromptError out through aiohttp."""

    def __init__(self, error: PromptError) -> None:
        super().__init__(error.message)
        self.error = error


class _CheckingResolver(AbstractResolver):
    """getaddrinfo, then the guard; aiohttp only ever sees addresses that passed."""

    def __init__(self, guard: AddressGuard) -> None:
        self._guard = guard

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, family=family, flags=socket.AI_ADDRCONFIG)
        results: list[ResolveResult] = []
        addresses: list[IPAddress] = []
        for fam, _type, proto, _canon, sockaddr in infos:
            if fam not in (socket.AF_INET, socket.AF_INET6):
                continue
            text, resolved_port = str(sockaddr[0]), int(sockaddr[1])
            if fam == socket.AF_INET6 and len(sockaddr) > 3 and sockaddr[3]:
                text = f"{text.split('%')[0]}%{sockaddr[3]}"  # keep the scope of a link-local address
            addresses.append(ipaddress.ip_address(text))
            results.append(
                ResolveResult(
                    hostname=host,
                    host=text,
                    port=resolved_port,
                    family=fam,
                    proto=proto,
                    flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                )
            )
        if not results:
            raise OSError(f"{host} has no IPv4 or IPv6 address")
        try:
            self._guard.check(host, addresses)
        except PromptError as exc:
            raise _Refused(exc) from None
        return results

    async def close(self) -> None:
        return None


def _refusal(exc: BaseException) -> PromptError | None:
    """The guard's verdict buried in an aiohttp connector error, if that is what it is."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, _Refused):
            return seen.error
        nested = seen.os_error if isinstance(seen, aiohttp.ClientConnectorError) else None
        seen = nested if nested is not None and nested is not seen else seen.__cause__
    return None


def _describe(url: URL) -> str:
    """The URL without query, fragment or credentials (queries often carry access tokens)."""
    return str(url.with_query(None).with_fragment(None).with_user(None))


class SafeFetcher:
    """Fetches prompt files under a `FetchPolicy`; one shared aiohttp session, created on first use."""

    def __init__(self, policy: FetchPolicy | None = None, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.policy = policy or FetchPolicy()
        self._guard = AddressGuard(self.policy.allow_private)
        self._ssl_context = ssl_context
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=_CheckingResolver(self._guard),
                use_dns_cache=False,
                ssl=self._ssl_context if self._ssl_context is not None else True,
                limit=32,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=self.policy.timeout_seconds),
                headers={
                    "User-Agent": USER_AGENT,
                    "Accept": "audio/wav, audio/x-wav, audio/*;q=0.9, */*;q=0.1",
                    "Accept-Encoding": "identity",
                },
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch(self, url: str) -> bytes:
        """The body of `url` (following up to `max_redirects` redirects), or `PromptError`."""
        target = self._parse(url)
        try:
            async with asyncio.timeout(self.policy.timeout_seconds):
                return await self._fetch(target)
        except TimeoutError:
            raise PromptError(
                PromptFailure.TIMEOUT,
                f"fetching {_describe(target)} took longer than {self.policy.timeout_seconds:g} s",
            ) from None

    def _parse(self, raw: str, base: URL | None = None) -> URL:
        """An absolute, credential-free http(s) URL, or `PromptError(BAD_URL)`."""
        if len(raw) > _MAX_URL_CHARS:
            raise PromptError(PromptFailure.BAD_URL, f"URL longer than {_MAX_URL_CHARS} characters")
        try:
            url = URL(raw)
            if base is not None:
                url = base.join(url)
            host, scheme = url.raw_host, url.scheme.lower()
        except (ValueError, TypeError) as exc:
            raise PromptError(PromptFailure.BAD_URL, f"malformed URL: {exc}") from None
        if scheme not in ("http", "https"):
            shown = f"scheme {scheme!r}" if scheme else "a relative URL"
            raise PromptError(PromptFailure.BAD_URL, f"{shown} is not allowed, only http and https")
        if not host:
            raise PromptError(PromptFailure.BAD_URL, "URL has no host")
        if url.raw_user is not None or url.raw_password is not None:
            raise PromptError(PromptFailure.BAD_URL, "credentials in the URL are not allowed")
        return url.with_fragment(None)

    def _check_literal(self, url: URL) -> None:
        """IP-literal hosts never reach the resolver, so they are judged here, before any connection."""
        host = url.raw_host or ""
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            if host.replace(".", "").isdigit():  # 127.1, 2130706433: aiohttp refuses them anyway
                raise PromptError(PromptFailure.BAD_URL, f"non-canonical numeric host {host!r}") from None
            return
        self._guard.check(host, [addr])

    async def _fetch(self, url: URL) -> bytes:
        for hop in range(self.policy.max_redirects + 1):
            self._check_literal(url)
            location = await self._request(url, last_hop=hop == self.policy.max_redirects)
            if isinstance(location, bytes):
                return location
            url = self._parse(location, base=url)
        raise AssertionError("unreachable: the last hop either returns or raises")

    async def _request(self, url: URL, *, last_hop: bool) -> bytes | str:
        """One GET: the body, or the Location of a redirect."""
        where = _describe(url)
        try:
            async with self._get_session().get(url, allow_redirects=False) as resp:
                if resp.status in _REDIRECTS:
                    location = resp.headers.get("Location")
                    if not location:
                        raise PromptError(
                            PromptFailure.HTTP_STATUS, f"HTTP {resp.status} without Location from {where}"
                        )
                    if last_hop:
                        raise PromptError(
                            PromptFailure.HTTP_STATUS, f"too many redirects (more than {self.policy.max_redirects})"
                        )
                    return location
                if not 200 <= resp.status < 300:
                    raise PromptError(PromptFailure.HTTP_STATUS, f"HTTP {resp.status} {resp.reason or ''} from {where}")
                encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
                if encoding not in ("", "identity"):
                    raise PromptError(PromptFailure.NOT_WAV, f"{where} sent a {encoding}-encoded body")
                try:
                    return await self._read_body(resp, where)
                except PromptError:
                    resp.close()  # abandon the rest: the connection is not reused
                    raise
        except aiohttp.ClientConnectorError as exc:
            refused = _refusal(exc)
            if refused is not None:
                raise refused from None
            if isinstance(exc, aiohttp.ClientSSLError):
                raise PromptError(PromptFailure.UNREACHABLE, f"TLS failure with {url.host}: {exc}") from None
            if isinstance(exc, aiohttp.ClientConnectorDNSError):
                raise PromptError(PromptFailure.UNREACHABLE, f"cannot resolve {url.host}: {exc.os_error}") from None
            raise PromptError(PromptFailure.UNREACHABLE, f"cannot connect to {url.host}:{url.port}: {exc}") from None
        except aiohttp.InvalidURL as exc:
            raise PromptError(PromptFailure.BAD_URL, f"invalid URL: {exc}") from None
        except TimeoutError:
            raise  # aiohttp's own timeouts: the caller reports TIMEOUT
        except (aiohttp.ClientError, OSError, ssl.SSLError) as exc:
            raise PromptError(PromptFailure.UNREACHABLE, f"connection to {url.host} failed: {exc!r}") from None

    async def _read_body(self, resp: aiohttp.ClientResponse, where: str) -> bytes:
        limit = self.policy.max_bytes
        declared = resp.content_length
        if declared is not None and declared > limit:
            raise PromptError(PromptFailure.TOO_BIG, f"{where} is {declared} bytes, more than the limit of {limit}")
        body = bytearray()
        async for chunk in resp.content.iter_chunked(_CHUNK):
            body += chunk
            if len(body) > limit:
                raise PromptError(PromptFailure.TOO_BIG, f"{where} is more than the limit of {limit} bytes")
        return bytes(body)
