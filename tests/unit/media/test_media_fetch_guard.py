"""The fetcher's pure parts: address classification, policy validation and URL rules (the allow list and the
address checks themselves are the egress policy's: tests/unit/net/test_egress.py)."""

from __future__ import annotations

import ipaddress

import pytest

from opencomms.domain.media import PromptError, PromptFailure
from opencomms.media.fetch import FetchPolicy, SafeFetcher, classify_address


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("fc00::1", "private"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("0.1.2.3", "'this network'"),
        ("100.64.0.1", "CGNAT"),
        ("100.127.255.254", "CGNAT"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.10", "private"),  # documentation ranges are not routable either
        ("198.18.0.1", "private"),
        ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
        ("::ffff:10.0.0.1", "IPv4-mapped private"),
        ("::ffff:169.254.169.254", "IPv4-mapped cloud metadata"),
        ("2002:7f00:1::", "embeds a loopback"),  # 6to4 of 127.0.0.1
        ("64:ff9b::a00:1", "embeds a private"),  # NAT64 of 10.0.0.1
    ],
)
def test_refused_addresses_and_why(address: str, reason: str) -> None:
    got = classify_address(address)
    assert got is not None and reason in got


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "1.1.1.1", "100.63.255.255", "100.128.0.0", "2606:4700::1111"]
)
def test_public_addresses_pass(address: str) -> None:
    assert classify_address(address) is None
    assert classify_address(ipaddress.ip_address(address)) is None


def test_ipv4_mapped_public_address_passes() -> None:
    assert classify_address("::ffff:8.8.8.8") is None


@pytest.mark.parametrize("entry", ["not a host!", "10.0.0.0/33", "", "a..b"])
def test_bad_allow_list_entries_are_rejected(entry: str) -> None:
    with pytest.raises(ValueError, match="neither a CIDR nor a hostname"):
        FetchPolicy(allow_private=(entry,))


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"max_bytes": 0}, "max_bytes"), ({"timeout_seconds": 0}, "timeout"), ({"max_redirects": -1}, "redirects")],
)
def test_policy_limits_are_validated(changes: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FetchPolicy(**changes)  # type: ignore[arg-type]


def test_policy_defaults() -> None:
    p = FetchPolicy()
    assert (p.max_bytes, p.timeout_seconds, p.max_redirects, p.allow_private) == (8 << 20, 10.0, 3, ())


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/a.wav", "scheme 'ftp' is not allowed"),
        ("file:///etc/passwd", "scheme 'file' is not allowed"),
        ("gopher://example.com/", "scheme 'gopher'"),
        ("/relative.wav", "a relative URL"),
        ("http:///nohost", "no host"),
        ("https://user:pw@example.com/a.wav", "credentials"),
        ("https://user@example.com/a.wav", "credentials"),
        ("https://example.com/" + "a" * 9000, "longer than"),
        ("http://[::1/", "malformed URL"),
    ],
)
async def test_bad_urls_fail_before_any_network_activity(url: str, message: str) -> None:
    fetcher = SafeFetcher(FetchPolicy())
    with pytest.raises(PromptError, match=message) as info:
        await fetcher.fetch(url)
    assert info.value.failure is PromptFailure.BAD_URL
    assert fetcher._session is None  # refused before the session was even created
    await fetcher.close()


@pytest.mark.parametrize("url", ["http://127.1/", "http://2130706433/", "http://017700000001/"])
async def test_non_canonical_numeric_hosts_are_bad_urls(url: str) -> None:
    fetcher = SafeFetcher(FetchPolicy(allow_private=("127.0.0.0/8",)))
    with pytest.raises(PromptError) as info:
        await fetcher.fetch(url)
    assert info.value.failure is PromptFailure.BAD_URL
    await fetcher.close()
