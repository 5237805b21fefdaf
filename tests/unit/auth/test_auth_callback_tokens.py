"""Callback tokens: claims a bot checks (reference §8), reuse window, rotation, and validation failures."""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from opencomms.auth import KeyRing, SigningKey, TokenError, TokenService, generate_signing_key

NOW = 1_700_000_000.0
TENANT = "7f3c8a1e-0000-4000-8000-000000000001"
BOT = "b0b0b0b0-0000-4000-8000-00000000000b"
OTHER_BOT = "b0b0b0b0-0000-4000-8000-00000000000c"


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing.empty_with_new_key(NOW - 10)


@pytest.fixture
def service(ring: KeyRing) -> TokenService:
    return TokenService(ring, issuer_base="https://login.opencomms.test", audiences=["https://graph.microsoft.com"])


def _refused(service: TokenService, token: str, *, app_id: str = BOT, now: float = NOW) -> str:
    with pytest.raises(TokenError) as caught:
        service.validate_callback_token(token, app_id=app_id, now=now)
    return caught.value.reason


def _forge(key: SigningKey, **overrides: Any) -> str:
    claims: dict[str, Any] = {
        "iss": "https://api.botframework.com",
        "aud": BOT,
        "tid": TENANT,
        "iat": int(NOW),
        "nbf": int(NOW),
        "exp": int(NOW) + 3600,
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key.private_key(), algorithm="RS256", headers={"kid": key.kid})


def test_callback_token_carries_what_bots_validate(service: TokenService, ring: KeyRing) -> None:
    token = service.callback_token(app_id=BOT, tenant_id=TENANT, now=NOW)
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "kid": ring.active.kid, "typ": "JWT"}
    claims = service.validate_callback_token(token, app_id=BOT, now=NOW + 1)
    assert claims == {
        "iss": "https://api.botframework.com",
        "aud": BOT,
        "tid": TENANT,
        "appid": BOT,
        "iat": int(NOW),
        "nbf": int(NOW),
        "exp": int(NOW) + 3600,
    }


def test_a_bot_using_only_the_jwks_accepts_it(service: TokenService, ring: KeyRing) -> None:
    token = service.callback_token(app_id=BOT, tenant_id=TENANT, now=NOW)
    jwks = jwt.PyJWKSet.from_dict(ring.jwks(NOW, service.max_token_lifetime))
    key = jwks[jwt.get_unverified_header(token)["kid"]]
    claims = jwt.decode(
        token,
        key,
        algorithms=["RS256"],
        audience=BOT,
        issuer=["https://graph.microsoft.com", "https://api.botframework.com"],
        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False, "require": ["tid"]},
    )
    assert claims["tid"] == TENANT


def test_token_is_reused_until_five_minutes_before_expiry(service: TokenService) -> None:
    first = service.callback_token(app_id=BOT, tenant_id=TENANT, now=NOW)
    for now in (NOW + 1, NOW + 1800, NOW + 3600 - 300 - 0.001):
        assert service.callback_token(app_id=BOT, tenant_id=TENANT, now=now) == first
    renewed = service.callback_token(app_id=BOT, tenant_id=TENANT, now=NOW + 3600 - 300)
    assert renewed != first
    assert jwt.decode(renewed, options={"verify_signature": False})["iat"] == int(NOW) + 3300
    assert service.callback_token(app_id=BOT, tenant_id=TENANT, now=NOW + 3400) == renewed


def test_tokens_are_per_app_and_tenant(service: TokenService) -> None:
    a = service.callback_token(app_id=BOT, tenant_id=TENANT, now=NOW)
    b = service.callback_token(app_id=OTHER_BOT, tenant_id=TENANT, now=NOW)
    c = service.callback_token(app_id=BOT, tenant_id="another-tenant", now=NOW)
    assert len({a, b, c}) == 3
    assert _refused(service, b) == "wrong_audience"


def test_clock_going_backwards_issues_a_fresh_token(service: TokenService) -> None:
    first = service.callback_token(app_id=BOT, tenant_id=TENANT, now=NOW)
    assert service.callback_token(app_id=BOT, tenant_id=TENANT, now=NOW - 5) != first


def test_rotation_switches_to_the_new_key_and_old_tokens_stay_valid(service: TokenService, ring: KeyRing) -> None:
    before = service.callback_token(app_id=BOT, tenant_id=TENANT, now=NOW)
    new_key = ring.rotate(NOW + 60)
    after = service.callback_token(app_id=BOT, tenant_id=TENANT, now=NOW + 61)
    assert after != before
    assert jwt.get_unverified_header(after)["kid"] == new_key.kid
    assert service.validate_callback_token(before, app_id=BOT, now=NOW + 61)["tid"] == TENANT


def test_zero_margin_reuses_until_expiry(ring: KeyRing) -> None:
    service = TokenService(
        ring, issuer_base="https://x", audiences=["a"], callback_token_lifetime=600, callback_refresh_margin=0
    )
    first = service.callback_token(app_id=BOT, tenant_id=TENANT, now=NOW)
    assert service.callback_token(app_id=BOT, tenant_id=TENANT, now=NOW + 599) == first
    assert service.callback_token(app_id=BOT, tenant_id=TENANT, now=NOW + 600) != first


def test_validation_failures(service: TokenService, ring: KeyRing) -> None:
    token = service.callback_token(app_id=BOT, tenant_id=TENANT, now=NOW)
    assert _refused(service, token, app_id=OTHER_BOT) == "wrong_audience"
    assert _refused(service, token, now=NOW + 3600 + 60) == "expired"
    assert _refused(service, token, now=NOW - 61) == "not_yet_valid"
    assert _refused(service, _forge(ring.active, tid=None)) == "missing_claim"
    assert _refused(service, _forge(ring.active, iss="https://evil.example")) == "wrong_issuer"
    assert _refused(service, _forge(generate_signing_key(NOW))) == "unknown_key"
    impostor = SigningKey(ring.active.kid, generate_signing_key(NOW).private_pem, NOW)
    assert _refused(service, _forge(impostor)) == "bad_signature"
    assert _refused(service, "not a token") == "malformed"


def test_access_token_is_not_a_callback_token(service: TokenService) -> None:
    access, _ = service.issue_access_token(
        tenant_id=TENANT, app_id=BOT, roles=(), audience="https://graph.microsoft.com", now=NOW
    )
    assert _refused(service, access) == "wrong_issuer"


def test_custom_callback_issuer(ring: KeyRing) -> None:
    graph_issuer = TokenService(
        ring, issuer_base="https://x", audiences=["a"], callback_issuer="https://graph.microsoft.com"
    )
    default = TokenService(ring, issuer_base="https://x", audiences=["a"])
    token = graph_issuer.callback_token(app_id=BOT, tenant_id=TENANT, now=NOW)
    assert graph_issuer.validate_callback_token(token, app_id=BOT, now=NOW)["iss"] == "https://graph.microsoft.com"
    assert _refused(default, token) == "wrong_issuer"


def test_callback_token_living_longer_than_the_node_issues_is_refused(service: TokenService, ring: KeyRing) -> None:
    forged = _forge(ring.active, exp=253_402_300_799)
    assert _refused(service, forged) == "lifetime_too_long"
    assert service.validate_callback_token(_forge(ring.active), app_id=BOT, now=NOW + 1)["aud"] == BOT
