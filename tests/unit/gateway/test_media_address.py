"""MediaAddresses: a peer's SDP checked and its c= host names resolved with an injected resolver (fast, unknown,
black-holed), within a time limit and a cap on lookups in flight; loopback and family policy."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from opencomms.gateway.media_address import MediaAddresses, Resolver
from opencomms.rtp.address import AddressError
from opencomms.rtp.sdp import SessionDescription


def sdp(c: str) -> SessionDescription:
    return SessionDescription.parse(
        f"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc={c}\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    )


def resolver(table: dict[str, list[str]], delay: float = 0.0, calls: list[str] | None = None) -> Resolver:
    async def resolve(name: str, family: int) -> list[str]:
        if calls is not None:
            calls.append(name)
        await asyncio.sleep(delay)
        if name not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[name]

    return resolve


async def test_a_host_name_is_replaced_by_its_address() -> None:
    addresses = MediaAddresses("192.0.2.200", resolver=resolver({"media.example.com": ["192.0.2.9"]}))
    out = await addresses.prepare(sdp("IN IP4 Media.example.com"))
    assert out.connection is not None and out.connection.address == "192.0.2.9"
    assert addresses.stats() == {"refused": 0, "lookups": 1, "timeouts": 0}


async def test_literals_need_no_lookup() -> None:
    calls: list[str] = []
    addresses = MediaAddresses("192.0.2.200", resolver=resolver({}, calls=calls))
    assert await addresses.prepare(sdp("IN IP4 192.0.2.9")) == sdp("IN IP4 192.0.2.9")
    assert await addresses.prepare(sdp("IN IP4 0.0.0.0")) == sdp("IN IP4 0.0.0.0")  # hold
    assert calls == []


async def test_an_unknown_name_is_refused() -> None:
    addresses = MediaAddresses("192.0.2.200", resolver=resolver({}))
    with pytest.raises(AddressError, match="does not resolve"):
        await addresses.prepare(sdp("IN IP4 some.name.invalid"))
    assert addresses.refused == 1


async def test_a_black_holed_name_is_refused_within_the_time_limit() -> None:
    addresses = MediaAddresses("192.0.2.200", timeout=0.2, resolver=resolver({"slow.example": ["192.0.2.9"]}, 30))
    started = time.monotonic()
    with pytest.raises(AddressError, match=r"within 0\.2 s"):
        await addresses.prepare(sdp("IN IP4 slow.example"))
    assert time.monotonic() - started < 1.0 and addresses.timeouts == 1 and addresses.in_flight == 0


async def test_lookups_in_flight_are_capped() -> None:
    addresses = MediaAddresses("192.0.2.200", timeout=1.0, max_lookups=2, resolver=resolver({}, 0.5))
    results = await asyncio.gather(
        *(addresses.prepare(sdp(f"IN IP4 n{i}.example")) for i in range(4)), return_exceptions=True
    )
    assert all(isinstance(r, AddressError) for r in results)
    assert sum("too many" in str(r) for r in results) == 2 and addresses.lookups == 2


async def test_names_resolving_only_to_unusable_addresses_are_refused() -> None:
    table = {"loop.example": ["127.0.0.1"], "mcast.example": ["239.1.1.1"], "mixed.example": ["10.0.0.1"]}
    addresses = MediaAddresses("192.0.2.200", resolver=resolver(table))
    for name in ("loop.example", "mcast.example"):
        with pytest.raises(AddressError, match="no usable address"):
            await addresses.prepare(sdp(f"IN IP4 {name}"))
    out = await addresses.prepare(sdp("IN IP4 mixed.example"))  # private addresses are fine for RTP
    assert out.connection is not None and out.connection.address == "10.0.0.1"


async def test_loopback_media_only_for_a_loopback_node() -> None:
    with pytest.raises(AddressError, match="loopback"):
        await MediaAddresses("192.0.2.200").prepare(sdp("IN IP4 127.0.0.1"))
    assert await MediaAddresses("127.0.0.1").prepare(sdp("IN IP4 127.0.0.1"))


async def test_ipv6_media_on_an_ipv4_node_is_refused_without_a_lookup() -> None:
    calls: list[str] = []
    addresses = MediaAddresses("127.0.0.1", resolver=resolver({"v6.example": ["::1"]}, calls=calls))
    for c in ("IN IP6 2001:db8::1", "IN IP6 v6.example"):
        with pytest.raises(AddressError, match="IPv6"):
            await addresses.prepare(sdp(c))
    assert calls == []


async def test_host_names_can_be_refused_outright() -> None:
    addresses = MediaAddresses("127.0.0.1", resolve_names=False, resolver=resolver({"localhost": ["127.0.0.1"]}))
    with pytest.raises(AddressError, match="not accepted"):
        await addresses.prepare(sdp("IN IP4 localhost"))


async def test_the_system_resolver_runs_off_the_loop() -> None:
    addresses = MediaAddresses("127.0.0.1", timeout=5.0)
    try:
        out = await addresses.prepare(sdp("IN IP4 localhost"))
    finally:
        addresses.close()
    assert out.connection is not None and out.connection.address == "127.0.0.1"
