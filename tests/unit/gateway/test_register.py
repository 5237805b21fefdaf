"""REGISTER handling over a store: digest challenge, bindings with expiry, persistence, domain check, and where a
bot's INVITE to a registered softphone goes. Real SIP parser and digest; a recording stand-in for the transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from opencomms.config import SipConfig
from opencomms.gateway.register import KIND, Reachable, Registrations
from opencomms.gateway.softphone import _destination
from opencomms.sip.destination import Destination
from opencomms.sip.digest_client import DigestClient
from opencomms.sip.digest_headers import parse_challenges
from opencomms.sip.message import SipRequest
from opencomms.sip.parser import parse
from opencomms.sip.registrar import Binding
from opencomms.sip.uri import SipUri, parse_uri
from opencomms.store.memory import MemoryStore

PASSWORD = "correct horse"
NODE = "sip:127.0.0.1:5060"


@dataclass
class Handle:
    """Stands in for ServerTransactionHandle: records the response."""

    source: Destination = field(default_factory=lambda: Destination("udp", "203.0.113.9", 40000))
    status: int = 0
    reason: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)

    def respond(self, status: int, reason: str | None = None, *, headers: Any = ()) -> None:
        self.status, self.reason, self.headers = status, reason, list(headers)

    def all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def register_request(
    user: str, contacts: list[str], *, expires: int | None, cseq: int, authorization: str | None, to_host: str
) -> SipRequest:
    lines = [
        f"REGISTER {NODE} SIP/2.0",
        "Via: SIP/2.0/UDP 203.0.113.9:40000;branch=z9hG4bK-1",
        f"From: <sip:{user}@{to_host}>;tag=1",
        f"To: <sip:{user}@{to_host}>",
        "Call-ID: reg-1",
        f"CSeq: {cseq} REGISTER",
        "Max-Forwards: 70",
        *(f"Contact: {c}" for c in contacts),
    ]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    if authorization:
        lines.append(f"Authorization: {authorization}")
    message = parse(("\r\n".join([*lines, "Content-Length: 0"]) + "\r\n\r\n").encode())
    assert isinstance(message, SipRequest)
    return message


class Softphone:
    """Sends REGISTERs to a Registrations, answering its challenges like a UA would."""

    def __init__(self, regs: Registrations, user: str, password: str = PASSWORD, to_host: str = "127.0.0.1") -> None:
        self.regs, self.user, self.password, self.to_host = regs, user, password, to_host
        self.cseq = 0
        self.digest = DigestClient()

    def send(self, contacts: list[str], expires: int | None = 600, *, authenticate: bool = True) -> Handle:
        authorization: str | None = None
        for _ in range(2):
            self.cseq += 1
            handle = Handle()
            req = register_request(
                self.user, contacts, expires=expires, cseq=self.cseq, authorization=authorization, to_host=self.to_host
            )
            self.regs.handle(handle, req)  # type: ignore[arg-type]
            if handle.status != 401 or not authenticate or authorization:
                return handle
            challenges = parse_challenges(",".join(handle.all("WWW-Authenticate")))
            authorization = self.digest.authorize(challenges, "REGISTER", NODE, self.user, self.password)
        return handle


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def regs(clock: Clock) -> Registrations:
    store = MemoryStore()
    registrations = Registrations(SipConfig(register_min_expires=60, register_max_expires=3600), store, clock=clock)
    tenant = registrations.accounts.directory.create_tenant("Contoso")
    registrations.accounts.add(tenant.id, "alice", PASSWORD)
    registrations.accounts.add(tenant.id, "bob", PASSWORD)
    return registrations


def test_challenge_then_binding_with_source_kept_in_the_store(regs: Registrations, clock: Clock) -> None:
    alice = Softphone(regs, "alice")
    challenge = alice.send(["<sip:alice@192.168.1.20:5060>"], authenticate=False)
    assert challenge.status == 401
    assert [c.algorithm for c in parse_challenges(",".join(challenge.all("WWW-Authenticate")))] == ["MD5"]
    ok = alice.send(["<sip:alice@192.168.1.20:5060>"])
    assert ok.status == 200 and ok.all("Contact") == ["<sip:alice@192.168.1.20:5060>;expires=600"]
    [binding] = regs.bindings("alice")
    assert binding.source == "udp:203.0.113.9:40000"
    # a second node on the same store sees it, until it expires
    other = Registrations(SipConfig(), regs.store, clock=clock)
    assert [b.contact for b in other.bindings("alice")] == ["sip:alice@192.168.1.20:5060"]
    clock.now += 601
    assert other.bindings("alice") == []
    assert regs.purge() == 1 and regs.store.get(KIND, "alice") is None


def test_refusals(regs: Registrations) -> None:
    assert Softphone(regs, "alice", "wrong password").send(["<sip:alice@10.0.0.1>"]).status == 401
    assert Softphone(regs, "nobody").send(["<sip:nobody@10.0.0.1>"]).status == 401  # unknown = wrong password
    # bob's valid credentials on a REGISTER for alice's AOR
    challenges = parse_challenges(",".join(Softphone(regs, "bob").send([], authenticate=False).all("WWW-Authenticate")))
    auth = DigestClient().authorize(challenges, "REGISTER", NODE, "bob", PASSWORD)
    handle = Handle()
    request = register_request("alice", ["<sip:x@10.0.0.1>"], expires=None, cseq=1, authorization=auth, to_host="h")
    regs.handle(handle, request)  # type: ignore[arg-type]
    assert handle.status == 403
    brief = Softphone(regs, "alice").send(["<sip:alice@10.0.0.1>"], expires=30)
    assert brief.status == 423 and brief.all("Min-Expires") == ["60"]
    bad_q = Softphone(regs, "alice").send(["<sip:alice@10.0.0.1>;q=high"])
    assert bad_q.status == 400
    assert regs.bindings("alice") == []


def test_domain_is_checked_only_when_configured(clock: Clock) -> None:
    regs = Registrations(SipConfig(domain="voice.example.com", host="127.0.0.1"), MemoryStore(), clock=clock)
    tenant = regs.accounts.directory.create_tenant("Contoso")
    regs.accounts.add(tenant.id, "alice", PASSWORD)
    assert Softphone(regs, "alice", to_host="elsewhere.example").send(["<sip:a@10.0.0.1>"]).status == 404
    assert Softphone(regs, "alice", to_host="voice.example.com").send(["<sip:a@10.0.0.1>"]).status == 200
    assert Softphone(regs, "alice", to_host="127.0.0.1").send(["<sip:a@10.0.0.2>"]).status == 200


def test_reachable_users_and_invite_destination(regs: Registrations) -> None:
    tenant_id = regs.accounts.get("alice").tenant_id  # type: ignore[union-attr]
    assert regs.reachable(tenant_id, "alice") == []
    Softphone(regs, "alice").send(["<sip:alice@192.168.1.20:5060>"])
    [target] = regs.reachable(tenant_id, "alice")
    assert target.account.username == "alice"

    def where(contact: str, source: str | None) -> Destination | None:
        binding = Binding("sip:alice@x", contact, 0.0, None, "c", 1, 0.0, 0.0, source)
        uri = parse_uri(contact)
        assert isinstance(uri, SipUri)
        return _destination(Reachable(target.account, binding), uri)

    # behind NAT: a private Contact other than where the REGISTER came from -> the source address
    assert where("sip:alice@192.168.1.20:5060", "udp:203.0.113.9:40000") == Destination("udp", "203.0.113.9", 40000)
    # same host, or a public Contact, or TCP: the Contact itself
    assert where("sip:alice@127.0.0.1:5062", "udp:127.0.0.1:5999") is None
    assert where("sip:alice@93.184.216.34:5060", "udp:203.0.113.9:40000") is None
    assert where("sip:alice@192.168.1.20:5060;transport=tcp", "udp:203.0.113.9:40000") is None
    assert where("sip:alice@192.168.1.20:5060", None) is None
