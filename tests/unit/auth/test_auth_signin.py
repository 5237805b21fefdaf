"""The sign-in core without sockets or sleeping: codes are single-use, expire, bind client, redirect URI and PKCE;
device codes answer pending / slow_down / expired as Entra ID does; refresh tokens rotate and expire; scopes parse."""

from __future__ import annotations

from dataclasses import replace

import pytest

from opencomms.auth.signin import (
    AuthRequest,
    DeviceFlow,
    GrantError,
    SignIn,
    parse_scopes,
    pkce_s256,
    redirect_allowed,
)
from opencomms.config import SignInConfig
from opencomms.store.memory import MemoryStore

AUD = ("https://node.example", "https://graph.microsoft.com")
VERIFIER = "v" * 43


def _signin(**changes: object) -> SignIn:
    return SignIn(SignInConfig(**changes), MemoryStore())  # type: ignore[arg-type]


def _request(now: float, csrf: str = "c" * 32) -> AuthRequest:
    return AuthRequest(
        "t",
        "app",
        "http://localhost/cb",
        AUD[0],
        ("OnlineMeetings.ReadWrite",),
        (f"{AUD[0]}/OnlineMeetings.ReadWrite",),
        ("openid", "offline_access"),
        "st",
        "n",
        pkce_s256(VERIFIER),
        csrf,
        now + 60,
    )


def _code(s: SignIn, now: float = 0.0) -> str:
    txn = s.open_form(_request(now))
    request = s.form(txn, "c" * 32, "c" * 32, now)
    return s.finish_form(txn, request, "user", now)


def test_the_form_needs_its_csrf_value_in_field_and_cookie_and_expires() -> None:
    s = _signin()
    txn = s.open_form(_request(0.0))
    for form, cookie in (("c" * 32, ""), ("", "c" * 32), ("x" * 32, "x" * 32)):
        with pytest.raises(GrantError):
            s.form(txn, form, cookie, 1.0)
    with pytest.raises(GrantError, match="expired"):
        s.form(txn, "c" * 32, "c" * 32, 61.0)
    assert s.form(txn, "c" * 32, "c" * 32, 1.0).app_id == "app"


def test_a_code_is_single_use_and_bound_to_client_redirect_and_verifier() -> None:
    s = _signin()
    grant = s.redeem_code(_code(s), "app", "http://localhost/cb", VERIFIER, 1.0)
    assert grant.user_id == "user" and grant.nonce == "n" and grant.scopes == ("OnlineMeetings.ReadWrite",)
    code = _code(s)
    s.redeem_code(code, "app", "http://localhost/cb", VERIFIER, 1.0)
    with pytest.raises(GrantError, match="used or expired"):
        s.redeem_code(code, "app", "http://localhost/cb", VERIFIER, 1.0)
    for client, redirect, verifier, needle in (
        ("other", "http://localhost/cb", VERIFIER, "another application"),
        ("app", "http://localhost/other", VERIFIER, "redirect_uri"),
        ("app", "http://localhost/cb", "w" * 43, "code_verifier"),
        ("app", "http://localhost/cb", "", "code_verifier"),
    ):
        code = _code(s)
        with pytest.raises(GrantError, match=needle):
            s.redeem_code(code, client, redirect, verifier, 1.0)
        with pytest.raises(GrantError, match="used or expired"):  # a failed redemption spends the code too
            s.redeem_code(code, "app", "http://localhost/cb", VERIFIER, 1.0)
    with pytest.raises(GrantError, match="expired"):
        s.redeem_code(_code(s), "app", "http://localhost/cb", VERIFIER, 301.0)


def test_device_code_pending_slow_down_approved_then_spent_and_expiry() -> None:
    s = _signin(device_poll_interval=5)
    flow = DeviceFlow("t", "app", AUD[0], ("OnlineMeetings.ReadWrite",), (), (), s.user_code(), 900.0)
    device = s.start_device(flow)
    errors = []
    for now in (0.0, 1.0, 7.0):
        with pytest.raises(GrantError) as caught:
            s.poll_device(device, "app", now)
        errors.append(caught.value.error)
    assert errors == ["authorization_pending", "slow_down", "authorization_pending"]
    with pytest.raises(GrantError):
        s.poll_device(device, "other-app", 20.0)
    found = s.device_by_user_code(flow.user_code.lower(), 10.0)
    assert found is flow
    flow.user_id = "user"
    assert s.device_by_user_code(flow.user_code, 11.0) is None  # an approved code cannot be approved again
    assert s.poll_device(device, "app", 30.0).user_id == "user"
    with pytest.raises(GrantError, match="already redeemed"):
        s.poll_device(device, "app", 40.0)
    late = s.start_device(DeviceFlow("t", "app", AUD[0], (), (), (), s.user_code(), 100.0))
    with pytest.raises(GrantError) as caught:
        s.poll_device(late, "app", 100.0)
    assert caught.value.error == "expired_token"


def test_refresh_tokens_rotate_are_bound_to_the_client_and_expire() -> None:
    s = _signin(refresh_token_lifetime=100.0)
    grant = s.redeem_code(_code(s), "app", "http://localhost/cb", VERIFIER, 1.0)
    token = s.issue_refresh(grant, 0.0)
    assert token not in str(list(s.store.scan("refreshToken")))  # stored hashed
    again = s.redeem_refresh(token, "app", 10.0)
    assert again.user_id == "user" and again.scopes == grant.scopes and again.nonce is None
    with pytest.raises(GrantError, match="used"):
        s.redeem_refresh(token, "app", 11.0)
    other = s.issue_refresh(grant, 0.0)
    with pytest.raises(GrantError, match="another application"):
        s.redeem_refresh(other, "thief", 1.0)
    assert s.redeem_refresh(other, "app", 2.0).user_id == "user"  # the thief's attempt did not spend it
    with pytest.raises(GrantError, match="expired"):
        s.redeem_refresh(s.issue_refresh(grant, 0.0), "app", 100.0)


def test_scopes() -> None:
    assert parse_scopes("https://node.example/OnlineMeetings.ReadWrite openid offline_access profile", AUD) == (
        "https://node.example",
        ("OnlineMeetings.ReadWrite",),
        ("https://node.example/OnlineMeetings.ReadWrite",),
        ("openid", "offline_access", "profile"),
    )
    audience, names, _, _ = parse_scopes("onlinemeetings.read", AUD)
    assert audience == "https://graph.microsoft.com" and names == ("OnlineMeetings.Read",)
    assert "OnlineMeetings.ReadWrite" in parse_scopes("https://graph.microsoft.com/.default", AUD)[1]
    for bad, error in (
        ("openid", "invalid_scope"),
        ("https://evil.example/OnlineMeetings.Read", "invalid_resource"),
        ("Calls.Initiate.All", "invalid_scope"),
        ("https://node.example/User.Read https://graph.microsoft.com/User.Read", "invalid_scope"),
    ):
        with pytest.raises(GrantError) as caught:
            parse_scopes(bad, AUD)
        assert caught.value.error == error


def test_redirect_uris_match_exactly_or_by_loopback_port() -> None:
    registered = ("https://app.example/cb", "http://localhost/callback")
    assert redirect_allowed("https://app.example/cb", registered)
    assert redirect_allowed("http://localhost:8765/callback", registered)
    for uri in (
        "https://app.example/cb/../x",
        "https://app.example:444/cb",
        "http://localhost:8765/other",
        "https://localhost:8765/callback",
        "http://localhost@evil.example/callback",
        "http://127.0.0.1.evil.example/callback",
    ):
        assert not redirect_allowed(uri, registered), uri


def test_a_password_reset_revokes_the_users_refresh_tokens() -> None:
    from opencomms.directory import Directory

    s = _signin()
    d = Directory(s.store)
    tenant = d.create_tenant("Contoso")
    user = d.create_user(tenant.id, "Heidi", upn="heidi@contoso.example")
    grant = s.redeem_code(_code(s), "app", "http://localhost/cb", VERIFIER, 1.0)
    mine = s.issue_refresh(replace(grant, user_id=user.id), 0.0)
    other = s.issue_refresh(grant, 0.0)
    d.set_password("heidi@contoso.example", "a new password")
    with pytest.raises(GrantError):
        s.redeem_refresh(mine, "app", 1.0)
    assert s.redeem_refresh(other, "app", 1.0).user_id == "user"
