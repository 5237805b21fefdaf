"""The egress policy's pure parts: address classes, encoded and IPv6 forms, the allow list, URL rules, and the
resolver's checks (with getaddrinfo faked, so that names resolve to whatever a hostile DNS would answer)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import pytest

from opencomms.net.egress import EgressPolicy, EgressRefused, classify_address, merge_allow


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.0.0.2", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.0.1", "private"),
        ("fd12::1", "private"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.0.1", "link-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),  # a scope id changes nothing
        ("224.0.0.251", "multicast"),
        ("ff05::2", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("0.0.0.7", "'this network'"),
        ("100.64.0.1", "CGNAT"),
        ("240.1.2.3", "reserved"),
        ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
        ("::ffff:169.254.169.254", "IPv4-mapped cloud metadata"),
        ("2002:a00:1::", "embeds a private"),  # 6to4 of 10.0.0.1
        ("2002:a9fe:a9fe::", "embeds a cloud metadata"),  # 6to4 of 169.254.169.254
        ("64:ff9b::7f00:1", "embeds a loopback"),  # NAT64 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "embeds a cloud metadata"),
    ],
)
def test_every_refused_address_class(address: str, reason: str) -> None:
    got = classify_address(address)
    assert got is not None and reason in got
    with pytest.raises(EgressRefused):
        EgressPolicy().check(address, [ipaddress.ip_address(address)])


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "2002:808:808::"])
def test_public_addresses_pass(address: str) -> None:
    assert classify_address(address) is None
    EgressPolicy().check(address, [ipaddress.ip_address(address)])


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:9/cb", "loopback address 127.0.0.1 is not allowed"),
        ("http://127.0.0.1.:9/cb", "loopback address 127.0.0.1 is not allowed"),  # trailing dot
        ("http://10.0.0.1/cb", "private address 10.0.0.1 is not allowed"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata address 169.254.169.254 is not allowed"),
        ("http://[::1]:8080/", "loopback address ::1 is not allowed"),
        ("http://[::ffff:127.0.0.1]/", "IPv4-mapped loopback address ::ffff:7f00:1 is not allowed"),
        ("http://[fe80::1%25eth0]/", "link-local address fe80::1 is not allowed"),
        ("http://[64:ff9b::a00:1]/", "embeds a private IPv4 address"),
        ("https://localhost/cb", "loopback address"),
        ("http://LOCALHOST./cb", "loopback address"),
        ("http://bot.localhost:80/", "loopback address"),
    ],
)
def test_literal_and_loopback_hosts_refused_without_resolving(url: str, message: str) -> None:
    with pytest.raises(EgressRefused) as info:
        EgressPolicy().check_url(url)
    assert message in info.value.reason and not info.value.bad_url


@pytest.mark.parametrize(
    ("url", "decoded"),
    [
        ("http://2130706433/", "127.0.0.1"),  # decimal
        ("http://017700000001/", "127.0.0.1"),  # octal
        ("http://0x7f000001/", "127.0.0.1"),  # hex
        ("http://0x7f.1/", "127.0.0.1"),  # mixed short form
        ("http://127.1/", "127.0.0.1"),
        ("http://0251.0376.0251.0376/", "169.254.169.254"),
        ("http://0xa9.0xfe.0xa9.0xfe/", "169.254.169.254"),
        ("http://1.2.3.4.5/", ""),
    ],
)
def test_encoded_ipv4_literals_are_refused(url: str, decoded: str) -> None:
    policy = EgressPolicy(("127.0.0.0/8", "169.254.0.0/16"))  # refused even where the decoded address is allowed
    with pytest.raises(EgressRefused) as info:
        policy.check_url(url)
    assert info.value.bad_url and "non-canonical numeric host" in info.value.reason
    assert decoded in info.value.reason


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/", "scheme 'ftp' is not allowed"),
        ("file:///etc/passwd", "scheme 'file'"),
        ("/relative", "a relative URL"),
        ("https://user:pw@example.com/", "credentials"),
        ("http://[::1/", "malformed URL"),
    ],
)
def test_url_rules(url: str, message: str) -> None:
    with pytest.raises(EgressRefused) as info:
        EgressPolicy().check_url(url)
    assert message in info.value.reason and info.value.bad_url


def test_public_urls_pass_and_names_are_left_to_the_resolver() -> None:
    policy = EgressPolicy()
    assert str(policy.check_url("https://bot.example.com/cb#frag")) == "https://bot.example.com/cb"
    assert policy.check_host("bot.example.com") is False  # only resolving can tell
    assert policy.check_host("8.8.8.8") is True


def test_allow_list_forms() -> None:
    policy = EgressPolicy(merge_allow(["127.0.0.1", " 10.20.0.0/16 "], ["Bots.Internal.", "fd00::/8", "127.0.0.1"]))
    assert policy.allow == ("127.0.0.1", "10.20.0.0/16", "Bots.Internal.", "fd00::/8")
    for url in ("http://127.0.0.1:9/", "http://[::ffff:127.0.0.1]/", "http://10.20.3.4/", "http://[fd00::5]/"):
        policy.check_url(url)
    policy.check("bots.internal", [ipaddress.ip_address("192.168.1.1"), ipaddress.ip_address("169.254.169.254")])
    for url in ("http://127.0.0.2/", "http://10.21.0.1/", "http://[::1]/", "http://localhost/", "http://[fe80::1]/"):
        with pytest.raises(EgressRefused):
            policy.check_url(url)
    EgressPolicy(("127.0.0.1", "::1")).check_url("http://localhost:8080/")  # both loopbacks allowed
    EgressPolicy(("localhost",)).check_url("http://localhost:8080/")


@pytest.mark.parametrize("entry", ["not a host!", "10.0.0.0/33", "", "2130706433", "a..b"])
def test_bad_allow_entries(entry: str) -> None:
    with pytest.raises(ValueError, match="neither a CIDR nor a hostname"):
        EgressPolicy((entry,))


def fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]], delay: float = 0.0) -> list[str]:
    asked: list[str] = []

    async def getaddrinfo(self: Any, host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        asked.append(host)
        await asyncio.sleep(delay)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        out: list[tuple[Any, ...]] = []
        for a in answers[host]:
            v6 = ":" in a
            fam = socket.AF_INET6 if v6 else socket.AF_INET
            out.append((fam, socket.SOCK_STREAM, 6, "", (a, port, 0, 0) if v6 else (a, port)))
        return out

    monkeypatch.setattr(asyncio.get_running_loop().__class__, "getaddrinfo", getaddrinfo)
    return asked


async def test_resolver_refuses_a_name_with_any_refused_address(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {"rebind.test": ["93.184.216.34", "10.0.0.1"], "ok.test": ["93.184.216.34"]})
    policy = EgressPolicy()
    with pytest.raises(EgressRefused, match=r"rebind\.test resolves to private address 10\.0\.0\.1"):
        await policy.resolve("rebind.test", 80)
    [ok] = await policy.resolve("ok.test", 443)
    assert (ok.address, ok.port, ok.family) == ("93.184.216.34", 443, socket.AF_INET)
    with pytest.raises(EgressRefused, match=r"rebind\.test resolves to private"):
        await policy.check_url_resolved("https://rebind.test/cb")
    await policy.check_url_resolved("https://ok.test/cb")
    await policy.check_url_resolved("https://nxdomain.test/cb")  # cannot tell now: checked at connect time


async def test_loopback_names_and_literals_never_reach_the_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = fake_dns(monkeypatch, {})
    policy = EgressPolicy()
    for host in ("localhost", "127.0.0.1", "::1", "0x7f.1"):
        with pytest.raises(EgressRefused):
            await policy.resolve(host, 80)
    assert asked == []


async def test_resolution_has_a_time_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {"slow.test": ["10.0.0.1"]}, delay=5.0)
    policy = EgressPolicy(resolve_timeout=0.05)
    with pytest.raises(TimeoutError):
        await policy.resolve("slow.test", 80)
    await policy.check_url_resolved("http://slow.test/")  # not judged in time: the connection is checked later
