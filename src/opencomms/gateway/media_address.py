"""MediaAddresses: a peer's SDP made safe to send RTP to, before any RTP session or media command sees it.

Owns the gateway's media-address policy: every connection an offer or answer would have us send to is checked
(rtp/address.py); host names (RFC 4566 allows an FQDN in c=) are resolved here, on a small executor of their
own, never on the media thread, with a time limit and a cap on lookups in flight, and replaced by the address
found; loopback only when the node's own RTP address is loopback; IPv6 only when the node's RTP is IPv6. Must
not touch RTP sessions or SIP transactions: SDP in, SDP with checked IP literals out, or AddressError (488).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from opencomms.rtp.address import AddressError, check_destination, hostnames, media_connections, with_addresses
from opencomms.rtp.sdp import SessionDescription

__all__ = ["MediaAddresses", "Resolver"]

log = logging.getLogger("opencomms.sip")

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""(host name, socket family) -> the addresses it has; raises OSError when it has none."""


class MediaAddresses:
    """Checks and resolves the media addresses of SDP bodies for RTP sockets bound on `local_ip`.

    `await prepare(sdp)` returns `sdp` with every host name of its audio connections replaced by an address of
    the node's RTP family, each connection checked; AddressError when one is refused, a name is unknown or its
    lookup took longer than `timeout` seconds, or more than `max_lookups` lookups are in flight (a flood of
    black-holed names must not queue behind each other). With `resolve_names=False` host names are refused.
    `resolver` replaces the system one (tests: slow or failing resolvers).
    """

    def __init__(
        self,
        local_ip: str,
        *,
        resolve_names: bool = True,
        timeout: float = 1.0,
        max_lookups: int = 8,
        resolver: Resolver | None = None,
    ) -> None:
        try:
            ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(local_ip)
        except ValueError:
            ip = None
        self.version = 6 if ":" in local_ip else 4
        self.family = socket.AF_INET6 if self.version == 6 else socket.AF_INET
        self.allow_loopback = ip is not None and (ip.is_loopback or ip.is_unspecified)
        """Peers may give loopback media addresses only to a node whose own RTP address is loopback (or the
        wildcard): anywhere else such an address can only aim our RTP at this host's own services."""
        self.resolve_names = resolve_names
        self.timeout = timeout
        self.max_lookups = max_lookups
        self.resolver: Resolver = resolver or self._system
        self._pool: ThreadPoolExecutor | None = None
        self.in_flight = 0
        self.refused = 0
        """SDP bodies refused (bad address, unknown or slow name)."""
        self.lookups = 0
        self.timeouts = 0

    async def prepare(self, sdp: SessionDescription) -> SessionDescription:
        try:
            names = hostnames(sdp)
            if names:
                if not self.resolve_names:
                    raise AddressError("host names are not accepted in c= lines: use an IP address")
                resolved = dict(await asyncio.gather(*(self._lookup(name, kind) for name, kind in names)))
                sdp = with_addresses(sdp, resolved)
            for conn, port in media_connections(sdp):
                check_destination(conn.address, port, version=self.version, allow_loopback=self.allow_loopback)
        except AddressError:
            self.refused += 1
            raise
        return sdp

    async def _lookup(self, name: str, address_type: str) -> tuple[str, str]:
        want = 6 if address_type == "IP6" else 4
        if want != self.version:
            raise AddressError(f"IPv{want} media, but this node's RTP is IPv{self.version}")
        if self.in_flight >= self.max_lookups:
            raise AddressError("too many media host names being resolved: use an IP address")
        self.in_flight += 1
        self.lookups += 1
        try:
            async with asyncio.timeout(self.timeout):
                addresses = await self.resolver(name, self.family)
        except TimeoutError:
            self.timeouts += 1
            raise AddressError(f"the media host name did not resolve within {self.timeout:g} s") from None
        except (OSError, UnicodeError):
            raise AddressError("the media host name does not resolve") from None
        finally:
            self.in_flight -= 1
        for address in addresses:
            try:
                check_destination(address, 1, version=self.version, allow_loopback=self.allow_loopback)
            except AddressError:
                continue
            return name, str(ipaddress.ip_address(address))
        raise AddressError("the media host name resolves to no usable address")

    async def _system(self, name: str, family: int) -> list[str]:
        """getaddrinfo on a small pool of its own: a black-holed name holds one of its threads until the system
        resolver gives up, never the loop's default executor (store, SIP next hops) or the media thread."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=max(1, self.max_lookups), thread_name_prefix="media-dns")
        loop = asyncio.get_running_loop()
        infos = await loop.run_in_executor(
            self._pool, lambda: socket.getaddrinfo(name, None, family=family, type=socket.SOCK_DGRAM)
        )
        return [str(info[4][0]) for info in infos]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def stats(self) -> dict[str, int]:
        return {"refused": self.refused, "lookups": self.lookups, "timeouts": self.timeouts}
