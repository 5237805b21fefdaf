"""Per-join tickets and grants: single use, expiry, a bounded table, and a grant that allows one target only."""

from __future__ import annotations

import base64
import hashlib
import hmac

from opencomms.gateway.webjoin import WebGrant, WebJoinTickets, ice_servers, normalize_target, turn_credentials


def test_normalize_target() -> None:
    assert normalize_target("<SIP:Support@Bob.Example:5060;transport=ws>") == "sip:support@bob.example"
    assert normalize_target("sips:a@[::1]:5061") == "sip:a@[::1]"
    assert normalize_target("tel:+1555") == "" and normalize_target("sip:host-only") == ""


def test_a_ticket_is_redeemed_once_and_not_after_it_expires() -> None:
    tickets = WebJoinTickets(ttl=60)
    grant = WebGrant("t1", "Wendy", "sip:support@bob.example")
    first = tickets.issue(grant, now=0)
    assert tickets.redeem(first, now=10) == grant
    assert tickets.redeem(first, now=10) is None
    late = tickets.issue(grant, now=0)
    assert tickets.redeem(late, now=60) is None
    assert tickets.redeem("x" * 1000, now=0) is None


def test_the_ticket_table_is_bounded_and_expires_oldest_first() -> None:
    tickets = WebJoinTickets(ttl=60, capacity=3)
    grant = WebGrant("t1", "W", "sip:a@b")
    issued = [tickets.issue(grant, now=float(i)) for i in range(5)]
    assert len(tickets) == 3
    assert tickets.redeem(issued[0], now=5) is None and tickets.redeem(issued[4], now=5) == grant
    tickets.issue(grant, now=100)  # the others expired meanwhile
    assert len(tickets) == 1


def test_a_grant_allows_its_target_only_and_a_user_grant_any() -> None:
    guest = WebGrant("t1", "W", "sip:support@bob.example")
    assert guest.allows("sip:Support@bob.example:5060")
    assert not guest.allows("sip:desk@alice.example")
    assert WebGrant("t1", "U", None, user_id="u1").allows("sip:anything@anywhere")


def test_turn_credentials_follow_the_turn_rest_scheme_coturn_checks() -> None:
    username, password = turn_credentials(b"s3cret", now=1000.0, ttl=3600, tag="ab12")
    assert username == "4600:ab12"
    expected = base64.b64encode(hmac.new(b"s3cret", b"4600:ab12", hashlib.sha1).digest()).decode()
    assert password == expected


def test_ice_servers_give_credentials_to_turn_urls_only_and_only_with_a_secret() -> None:
    urls = ("stun:stun.example:3478", "turn:turn.example:3478?transport=udp")
    servers = ice_servers(urls, b"k", now=0, ttl=60, tag="t")
    assert servers[0] == {"urls": ["stun:stun.example:3478"]}
    assert servers[1]["urls"] == ["turn:turn.example:3478?transport=udp"] and servers[1]["username"] == "60:t"
    assert ice_servers(urls, None, now=0, ttl=60, tag="t") == [{"urls": ["stun:stun.example:3478"]}]
    assert ice_servers((), b"k", now=0, ttl=60, tag="t") == []
