"""SSRF-safe HTTP(S) fetching of prompt files whose URLs come from untrusted bots.

Owns the URL rules (http/https only, no credentials), the address rules (every address a host resolves to
must be globally routable unless explicitly allowed), redirect handling, and the size and time limits.
Must not decode, cache or retry: it returns the body bytes or raises `PromptError` saying exactly why not.

Design notes
------------
* **Addresses.** Every URL and redirect hop goes through the node's one egress policy (`opencomms.net.egress`):
  the URL rules, IP-literal hosts judged before the request, and host names resolved by its checking resolver
  at connect time (no DNS rebinding). SNI and the Host header stay the original hostname.
* **Redirects by hand.** Each Location is resolved against the current URL and checked like the first URL, so a
  redirect to a private address is refused before any connection.
* **Limits.** One total deadline covers DNS, every hop and the body. A Content-Length above the limit is
  refused before reading; a body without one is streamed and abandoned as soon as it exceeds the limit.
  Compression is not requested and not undone (no decompression bombs).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

import aiohttp
from yarl import URL

from opencomms.domain.media import PromptError, PromptFailure
from opencomms.net.egress import EgressPolicy, EgressRefused, classify_address, refusal

__all__ = ["USER_AGENT", "FetchPolicy", "SafeFetcher", "classify_address"]

USER_AGENT = "opencomms-media/1"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024


def _prompt_error(refused: EgressRefused) -> PromptError:
    failure = PromptFailure.BAD_URL if refused.bad_url else PromptFailure.FORBIDDEN_ADDRESS
    return PromptError(failure, refused.reason)


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
    """CIDRs or hostnames allowed although private/loopback, when the fetcher is given no egress policy."""

    def __post_init__(self) -> None:
        if self.max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        if self.timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        if self.max_redirects < 0:
            raise ValueError("max_redirects must not be negative")
        EgressPolicy(self.allow_private)  # validates the entries


def _describe(url: URL) -> str:
    """The URL without query, fragment or credentials (queries often carry access tokens)."""
    return str(url.with_query(None).with_fragment(None).with_user(None))


class SafeFetcher:
    """Fetches prompt files under a `FetchPolicy`; one shared aiohttp session, created on first use."""

    def __init__(
        self,
        policy: FetchPolicy | None = None,
        *,
        egress: EgressPolicy | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.policy = policy or FetchPolicy()
        self._egress = egress if egress is not None else EgressPolicy(self.policy.allow_private)
        self._ssl_context = ssl_context
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = self._egress.connector(
                ssl=self._ssl_context if self._ssl_context is not None else True, limit=32
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
        try:
            return self._egress.parse_url(raw, base)
        except EgressRefused as exc:
            raise _prompt_error(exc) from None

    def _check_literal(self, url: URL) -> None:
        """IP-literal hosts never reach the resolver, so they are judged here, before any connection."""
        try:
            self._egress.check_host(url.host or "")
        except EgressRefused as exc:
            raise _prompt_error(exc) from None

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
            refused = refusal(exc)
            if refused is not None:
                raise _prompt_error(refused) from None
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
