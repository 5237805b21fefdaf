"""Softphone accounts: only digest HA1 values are stored, names and links are validated, targets resolve."""

from __future__ import annotations

import json

import pytest

from opencomms.config import SipConfig
from opencomms.directory import Directory
from opencomms.domain.errors import BadRequest, Conflict, NotFound
from opencomms.gateway.accounts import KIND, SipAccounts, realm_for
from opencomms.sip.digest import compute_ha1
from opencomms.store.memory import MemoryStore

REALM = "voice.example.com"
PASSWORD = "s3cret-enough"


@pytest.fixture
def accounts() -> SipAccounts:
    return SipAccounts(MemoryStore(), REALM, clock=lambda: 1000.0)


def test_realm_is_the_domain_else_the_public_host_else_the_bind_host() -> None:
    assert realm_for(SipConfig(domain="voice.example.com", public_host="198.51.100.7")) == "voice.example.com"
    assert realm_for(SipConfig(public_host="198.51.100.7")) == "198.51.100.7"
    assert realm_for(SipConfig(host="127.0.0.1")) == "127.0.0.1"


def test_the_password_is_stored_only_as_md5_and_sha256_ha1(accounts: SipAccounts) -> None:
    tenant = accounts.directory.create_tenant("Contoso")
    account = accounts.add(tenant.id, "alice", PASSWORD, display_name="Alice")
    doc = accounts.store.get(KIND, "alice")
    assert doc is not None and PASSWORD not in json.dumps(doc)
    assert dict(account.ha1) == {
        "MD5": compute_ha1("alice", REALM, PASSWORD, "MD5"),
        "SHA-256": compute_ha1("alice", REALM, PASSWORD, "SHA-256"),
    }
    assert PASSWORD not in repr(account) and "ha1" not in account.public()
    assert accounts.ha1("alice", REALM, "SHA-256-sess") == account.ha1["SHA-256"]
    assert accounts.ha1("alice", "other.realm", "MD5") is None  # the realm changed: passwords must be reset
    assert accounts.ha1("Alice", REALM, "MD5") is None  # SIP user names are case-sensitive
    accounts.set_password("alice", "another-password")
    assert accounts.ha1("alice", REALM, "MD5") == compute_ha1("alice", REALM, "another-password", "MD5")


def test_bad_input_gets_typed_errors(accounts: SipAccounts) -> None:
    tenant = accounts.directory.create_tenant("Contoso")
    other = accounts.directory.create_tenant("Fabrikam")
    stranger = accounts.directory.create_user(other.id, "Mallory")
    with pytest.raises(BadRequest):
        accounts.add(tenant.id, "al ice", PASSWORD)
    with pytest.raises(BadRequest):
        accounts.add(tenant.id, "-alice", PASSWORD)
    with pytest.raises(BadRequest):
        accounts.add(tenant.id, "alice", "short")
    with pytest.raises(NotFound):
        accounts.add("no-such-tenant", "alice", PASSWORD)
    with pytest.raises(NotFound):
        accounts.add(tenant.id, "alice", PASSWORD, user_id=stranger.id)  # a user of another tenant
    accounts.add(tenant.id, "alice", PASSWORD)
    with pytest.raises(Conflict):
        accounts.add(other.id, "ALICE", PASSWORD)  # one digest user name space per node
    with pytest.raises(NotFound):
        accounts.delete("bob")
    accounts.delete("alice")
    assert accounts.list_accounts() == []


def test_user_targets_reach_linked_accounts_or_unlinked_user_names(accounts: SipAccounts) -> None:
    directory: Directory = accounts.directory
    tenant = directory.create_tenant("Contoso")
    other = directory.create_tenant("Fabrikam")
    user = directory.create_user(tenant.id, "Alice")
    accounts.add(tenant.id, "alice-desk", PASSWORD, user_id=user.id)
    accounts.add(tenant.id, "alice-mobile", PASSWORD, user_id=user.id)
    accounts.add(tenant.id, "frontdesk", PASSWORD)
    names = sorted(a.username for a in accounts.for_target(tenant.id, user.id.upper().replace("-", "")))
    assert names == ["alice-desk", "alice-mobile"]  # Graph ids compare case- and dash-insensitively
    assert [a.username for a in accounts.for_target(tenant.id, "frontdesk")] == ["frontdesk"]
    assert accounts.for_target(tenant.id, "alice-desk") == []  # linked accounts answer to their user's id only
    assert accounts.for_target(other.id, user.id) == [] and accounts.for_target(other.id, "frontdesk") == []
    assert accounts.for_target(tenant.id, "") == []
