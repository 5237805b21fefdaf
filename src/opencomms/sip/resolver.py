"""Next-hop resolution of a SIP URI (RFC 3261 §8.1.2 with a subset of RFC 3263): the `maddr` or host, the port
(5060, or 5061 for sips), the `transport` parameter, and host names through getaddrinfo with a time bound.

Must not: do NAPTR/SRV lookups, cache answers, or touch anything but the event loop's resolver.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from opencomms.sip.destination import Destination
from opencomms.sip.uri import SipUri, Uri

__all__ = ["next_hop", "resolve"]


def next_hop(uri: Uri, default_transport: str = "udp") -> tuple[str, str, int]:
    """(transport, host, port) a request for `uri` goes to; ValueError for a URI that is not sip/sips."""
    if not isinstance(uri, SipUri):
        raise ValueError(f"cannot route to {uri}")
    transport = uri.transport or ("tcp" if uri.secure else default_transport)
    host = uri.param("maddr") or uri.host_unbracketed
    port = uri.port or (5061 if uri.secure else 5060)
    return transport, host, port


async def resolve(uri: Uri, default_transport: str, *, loop: asyncio.AbstractEventLoop, timeout: float) -> Destination:
    """The `Destination` of `uri`'s next hop. Host names are resolved with getaddrinfo (A/AAAA only); a name that
    does not resolve within `timeout`, or that the IDNA codec refuses, raises OSError as an unknown one does."""
    transport, host, port = next_hop(uri, default_transport)
    try:
        return Destination(transport, str(ipaddress.ip_address(host)), port)
    except ValueError:
        pass
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(host, port, type=kind)
    except TimeoutError:
        raise OSError(f"resolving {host} timed out") from None
    except UnicodeError:  # a host the IDNA codec refuses
        raise OSError(f"cannot resolve {host!r}") from None
    if not infos:
        raise OSError(f"cannot resolve {host}")
    return Destination(transport, str(infos[0][4][0]), port)
