"""Peer-supplied media addresses (SDP c= lines and a=rtcp): what the node may ever send RTP to, checked before a
socket or the media thread sees it.

Owns the syntax and policy of a remote media address: an IPv4/IPv6 literal of the c= line's address type or an
RFC 1123 host name (resolved by the caller, off the media thread, with a time limit); refused with `AddressError`
(488, Warning 301): undecodable text, multicast, broadcast, scoped IPv6, the wrong family, ports out of range.
Must not resolve names, open sockets or know SIP: text in, a normalised address or a typed error out.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Iterator, Mapping

from .sdp import Connection, MediaDescription, SdpError, SessionDescription

__all__ = [
    "AddressError",
    "check_destination",
    "hostnames",
    "is_literal",
    "media_connections",
    "media_host",
    "with_addresses",
]

_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


class AddressError(SdpError):
    """A media address the node will not send to: answer with `sip_status` (488 Not Acceptable Here) and a
    Warning header with `warning_code` (301 incompatible network address formats) and the message."""

    sip_status = 488
    warning_code = 301


def media_host(address: str, address_type: str = "IP4") -> str:
    """The host part of a c= address, normalised: a compressed IP literal ('0.0.0.0' and '::' stay: hold), or a
    lower-case host name without trailing dot, still to be resolved. Raises AddressError for anything else: text
    that is not printable ASCII, a TTL/count suffix (multicast), a multicast or broadcast literal, a scoped IPv6
    literal, an IP literal of the other family than `address_type`, or a name that is not RFC 1123."""
    if not address or len(address) > 253 or not address.isascii() or not address.isprintable():
        raise AddressError("the connection address is not a readable host")
    if "/" in address:
        raise AddressError("multicast media addresses are not accepted")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        if not _HOSTNAME.fullmatch(address) or address.rstrip(".").rsplit(".", 1)[-1].isdigit():
            raise AddressError("the connection address is neither an IP address nor a host name") from None
        return address.rstrip(".").lower()
    if (ip.version == 6) != (address_type == "IP6"):
        raise AddressError(f"an IPv{ip.version} address in a c=IN {address_type} line")
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        raise AddressError("scoped IPv6 media addresses are not accepted")
    if ip.is_multicast:
        raise AddressError("multicast media addresses are not accepted")
    if ip == _BROADCAST:
        raise AddressError("broadcast media addresses are not accepted")
    return str(ip)


def is_literal(host: str) -> bool:
    """`host` is an IP address (not a name that would need resolving)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check_destination(host: str, port: int, *, version: int, allow_loopback: bool) -> None:
    """Where RTP (or RTCP) may actually be sent from a socket of IP `version` (4 or 6): a unicast literal of that
    family, not unspecified, loopback only when `allow_loopback` (the node's own media address is loopback), port
    1-65535. Raises AddressError."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise AddressError("the media address is not an IP address") from None
    if ip.version != version:
        raise AddressError(f"IPv{ip.version} media, but this node's RTP is IPv{version}")
    if ip.is_multicast or ip == _BROADCAST or ip.is_unspecified:
        raise AddressError("the media address is not a unicast address")
    if ip.is_loopback and not allow_loopback:
        raise AddressError("loopback media addresses are not accepted")
    if not 1 <= port <= 65535:
        raise AddressError(f"media port {port} out of range")


def media_connections(sdp: SessionDescription) -> Iterator[tuple[Connection, int]]:
    """Every (connection, port) the node could send to for `sdp`: the RTP and RTCP address of each audio m= line
    that is not rejected (port 0), skipping hold (c=0.0.0.0)."""
    for m in sdp.media:
        if m.media != "audio" or m.port == 0:
            continue
        conn = sdp.media_connection(m)
        if conn is None or conn.is_null:
            continue
        yield conn, m.port
        rtcp_conn = m.rtcp_connection or conn
        if not rtcp_conn.is_null:
            yield rtcp_conn, m.rtcp_port if m.rtcp_port is not None else m.port + 1


def hostnames(sdp: SessionDescription) -> frozenset[tuple[str, str]]:
    """(host name, address type) of every connection in `sdp` that names a host instead of an IP literal.
    Raises AddressError if any used connection address is unacceptable (see media_host)."""
    out: set[tuple[str, str]] = set()
    for conn, _port in media_connections(sdp):
        host = media_host(conn.address, conn.address_type)
        if not is_literal(host):
            out.add((host, conn.address_type))
    return frozenset(out)


def with_addresses(sdp: SessionDescription, resolved: Mapping[str, str]) -> SessionDescription:
    """`sdp` with every c= host name (session, media and a=rtcp level) in `resolved` replaced by its address."""

    def swap(conn: Connection | None) -> Connection | None:
        if conn is None:
            return None
        address = resolved.get(conn.address.rstrip(".").lower())
        return conn if address is None else Connection(address, "IP6" if ":" in address else "IP4", conn.net_type)

    def media(m: MediaDescription) -> MediaDescription:
        return dataclasses.replace(m, connection=swap(m.connection), rtcp_connection=swap(m.rtcp_connection))

    return dataclasses.replace(sdp, connection=swap(sdp.connection), media=tuple(media(m) for m in sdp.media))
