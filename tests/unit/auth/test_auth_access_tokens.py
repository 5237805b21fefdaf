"""Access tokens: claim layout, every refusal reason, rotation/pruning, and the validation cache."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.api_jws import PyJWS

from opencomms.auth import (
    KeyRing,
    Permission,
    SigningKey,
    TokenError,
    TokenService,
    generate_signing_key,
    tokens,
)

NOW = 1_700_000_000.0
BASE = "https://login.opencomms.test/"
GRAPH = "https://graph.microsoft.com"
OTHER_AUDIENCE = "api://someone-else"
TENANT = "7f3c8a1e-0000-4000-8000-000000000001"
OTHER_TENANT = "7f3c8a1e-0000-4000-8000-000000000002"
APP = "a1b2c3d4-0000-4000-8000-00000000000a"


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing.empty_with_new_key(NOW - 10)


@pytest.fixture
def service(ring: KeyRing) -> TokenService:
    return TokenService(ring, issuer_base=BASE, audiences=[GRAPH])


def _issue(service: TokenService, roles: tuple[str, ...] = ("Calls.Initiate.All",), now: float = NOW) -> str:
    token, _ = service.issue_access_token(tenant_id=TENANT, app_id=APP, roles=roles, audience=GRAPH, now=now)
    return token


def _claims(**overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "aud": GRAPH,
        "iss": f"https://login.opencomms.test/{TENANT}/v2.0",
        "iat": int(NOW),
        "nbf": int(NOW),
        "exp": int(NOW) + 3600,
        "tid": TENANT,
        "appid": APP,
        "roles": [],
        "jti": "j",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _forge(key: SigningKey, claims: dict[str, Any], **header: Any) -> str:
    return jwt.encode(claims, key.private_key(), algorithm="RS256", headers={"kid": key.kid, **header})


def _refused(service: TokenService, token: str, now: float = NOW) -> str:
    with pytest.raises(TokenError) as caught:
        service.validate_access_token(token, now)
    for part in token.split("."):
        if len(part) > 8:
            assert part not in str(caught.value)
    return caught.value.reason


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def test_issued_token_has_the_microsoft_v2_app_token_layout(service: TokenService, ring: KeyRing) -> None:
    token, expires_in = service.issue_access_token(
        tenant_id=TENANT, app_id=APP, roles=["b.role", "a.role", "b.role"], audience=GRAPH, now=NOW + 0.7
    )
    assert expires_in == 3600
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "RS256", "kid": ring.active.kid, "typ": "JWT"}
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims.pop("jti")
    assert claims == {
        "aud": GRAPH,
        "iss": f"https://login.opencomms.test/{TENANT}/v2.0",
        "iat": int(NOW),
        "nbf": int(NOW),
        "exp": int(NOW) + 3600,
        "tid": TENANT,
        "appid": APP,
        "azp": APP,
        "roles": ["a.role", "b.role"],
        "sub": APP,
        "oid": APP,
        "ver": "2.0",
        "idtyp": "app",
    }


def test_round_trip_carries_roles_canonicalised(service: TokenService) -> None:
    token = _issue(service, roles=("Calls.JoinGroupCalls.All", "Calls.AccessMedia.All", "Custom.Role"))
    claims = service.validate_access_token(token, NOW + 5)
    assert claims.tenant_id == TENANT
    assert claims.app_id == APP
    assert claims.audience == GRAPH
    assert claims.expires_at == int(NOW) + 3600
    assert claims.token_id == jwt.decode(token, options={"verify_signature": False})["jti"]
    assert claims.roles == {"Calls.JoinGroupCall.All", "Calls.AccessMedia.All", "Custom.Role"}
    assert Permission.CALLS_JOIN_GROUP_CALL_ALL in claims.roles


def test_missing_roles_are_not_a_token_error(service: TokenService) -> None:
    assert service.validate_access_token(_issue(service, roles=()), NOW).roles == frozenset()


def test_jti_is_unique_per_token(service: TokenService) -> None:
    assert _issue(service) != _issue(service)


def test_issuer_follows_the_tenant(service: TokenService) -> None:
    assert service.issuer_for("t1") == "https://login.opencomms.test/t1/v2.0"


def test_issuing_for_an_unaccepted_audience_is_a_programming_error(service: TokenService) -> None:
    with pytest.raises(ValueError):
        service.issue_access_token(tenant_id=TENANT, app_id=APP, roles=(), audience="x", now=NOW)


def test_expiry_honours_leeway(service: TokenService) -> None:
    token = _issue(service)
    assert service.validate_access_token(token, NOW + 3600 + 59).app_id == APP
    assert _refused(service, token, NOW + 3600 + 60) == "expired"


def test_not_yet_valid_honours_leeway(service: TokenService) -> None:
    token = _issue(service)
    assert service.validate_access_token(token, NOW - 60).app_id == APP
    assert _refused(service, token, NOW - 61) == "not_yet_valid"


def test_signed_token_living_longer_than_the_node_issues_is_refused(service: TokenService, ring: KeyRing) -> None:
    year_9999 = 253_402_300_799
    assert _refused(service, _forge(ring.active, _claims(exp=year_9999))) == "lifetime_too_long"
    # without iat, exp - now is what counts; with an old iat, exp - iat
    assert _refused(service, _forge(ring.active, _claims(iat=None, nbf=None, exp=int(NOW) + 7200))) == (
        "lifetime_too_long"
    )
    assert _refused(service, _forge(ring.active, _claims(iat=int(NOW) - 3000, exp=int(NOW) + 3000))) == (
        "lifetime_too_long"
    )
    # what the node issues, and a little clock skew, still pass
    assert service.validate_access_token(_forge(ring.active, _claims(exp=int(NOW) + 3600 + 60)), NOW).app_id == APP
    assert service.validate_access_token(_issue(service), NOW).app_id == APP


def test_lifetime_cap_follows_the_configured_lifetime(ring: KeyRing) -> None:
    short = TokenService(ring, issuer_base=BASE, audiences=[GRAPH], access_token_lifetime=600)
    assert _refused(short, _forge(ring.active, _claims(exp=int(NOW) + 3600))) == "lifetime_too_long"
    token, expires_in = short.issue_access_token(tenant_id=TENANT, app_id=APP, roles=(), audience=GRAPH, now=NOW)
    assert expires_in == 600 and short.validate_access_token(token, NOW + 599).app_id == APP


def test_token_for_another_tenants_issuer_is_wrong_issuer(service: TokenService, ring: KeyRing) -> None:
    token = _forge(ring.active, _claims(iss=service.issuer_for(OTHER_TENANT)))
    assert _refused(service, token) == "wrong_issuer"
    foreign_base = _forge(ring.active, _claims(iss=f"https://login.microsoftonline.com/{TENANT}/v2.0"))
    assert _refused(service, foreign_base) == "wrong_issuer"


def test_wrong_audience(ring: KeyRing) -> None:
    issuer = TokenService(ring, issuer_base=BASE, audiences=[GRAPH, OTHER_AUDIENCE])
    token, _ = issuer.issue_access_token(tenant_id=TENANT, app_id=APP, roles=(), audience=OTHER_AUDIENCE, now=NOW)
    graph_only = TokenService(ring, issuer_base=BASE, audiences=[GRAPH])
    assert _refused(graph_only, token) == "wrong_audience"
    assert _refused(graph_only, _forge(ring.active, _claims(aud=None))) == "wrong_audience"
    listed = _forge(ring.active, _claims(aud=[OTHER_AUDIENCE, GRAPH]))
    assert graph_only.validate_access_token(listed, NOW).audience == GRAPH


@pytest.mark.parametrize("dropped", ["tid", "appid", "exp"])
def test_missing_claims(service: TokenService, ring: KeyRing, dropped: str) -> None:
    assert _refused(service, _forge(ring.active, _claims(**{dropped: None}))) == "missing_claim"


def test_azp_stands_in_for_appid(service: TokenService, ring: KeyRing) -> None:
    token = _forge(ring.active, _claims(appid=None, azp=APP))
    assert service.validate_access_token(token, NOW).app_id == APP


def test_unknown_or_absent_kid(service: TokenService) -> None:
    stranger = generate_signing_key(NOW)
    assert _refused(service, _forge(stranger, _claims())) == "unknown_key"
    no_kid = jwt.encode(_claims(), stranger.private_key(), algorithm="RS256")
    assert _refused(service, no_kid) == "unknown_key"


def test_foreign_key_reusing_a_published_kid_is_bad_signature(service: TokenService, ring: KeyRing) -> None:
    impostor = SigningKey(ring.active.kid, generate_signing_key(NOW).private_pem, NOW)
    assert _refused(service, _forge(impostor, _claims())) == "bad_signature"


def test_tampered_payload_or_signature_is_bad_signature(service: TokenService) -> None:
    header, payload, signature = _issue(service, roles=()).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["roles"] = [Permission.CALLS_ACCESS_MEDIA_ALL.value]
    tampered = _b64(json.dumps(claims).encode())
    assert _refused(service, f"{header}.{tampered}.{signature}") == "bad_signature"
    flipped = ("B" if signature[0] == "A" else "A") + signature[1:]
    assert _refused(service, f"{header}.{payload}.{flipped}") == "bad_signature"
    assert _refused(service, f"{header}.{payload}.") == "bad_signature"


def test_alg_none_is_refused(service: TokenService, ring: KeyRing) -> None:
    unsigned = jwt.encode(_claims(), "", algorithm="none", headers={"kid": ring.active.kid})
    assert _refused(service, unsigned) == "malformed"
    header = _b64(json.dumps({"alg": "none", "kid": ring.active.kid}).encode())
    crafted = f"{header}.{_b64(json.dumps(_claims()).encode())}."
    assert _refused(service, crafted) == "malformed"


def test_hs256_signed_with_the_public_key_is_refused(service: TokenService, ring: KeyRing) -> None:
    public_pem = ring.active.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    for secret in (public_pem, json.dumps(ring.active.public_jwk()).encode()):
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": ring.active.kid}).encode())
        payload = _b64(json.dumps(_claims()).encode())
        mac = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        assert _refused(service, f"{header}.{payload}.{_b64(mac)}") == "malformed"


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "garbage",
        "a.b.c",
        "....",
        "Bearer abc.def.ghi",
        "é.é.é",
        "x" * 10_000,
        _b64(b"[1]") + "." + _b64(b"{}") + ".",
        _b64(b'{"alg":"RS256"') + ".e30.",
        "eyJhbGciOiJSUzI1NiJ9",
    ],
)
def test_garbage_is_malformed(service: TokenService, garbage: str) -> None:
    assert _refused(service, garbage) == "malformed"


@pytest.mark.parametrize(
    "payload",
    [b"[1]", b'"text"', b"not json", json.dumps(_claims(exp="tomorrow")).encode()],
)
def test_signed_but_unusable_payload_is_malformed(service: TokenService, ring: KeyRing, payload: bytes) -> None:
    key = ring.active
    token = PyJWS().encode(payload, key.private_key(), algorithm="RS256", headers={"kid": key.kid})
    assert _refused(service, token) == "malformed"


def test_non_list_roles_are_malformed(service: TokenService, ring: KeyRing) -> None:
    assert _refused(service, _forge(ring.active, _claims(roles="Calls.Initiate.All"))) == "malformed"


# -- rotation ----------------------------------------------------------------------------------------------


def test_rotation_keeps_old_tokens_valid_until_they_expire_then_pruning_refuses_them(
    service: TokenService, ring: KeyRing
) -> None:
    old_token = _issue(service, now=NOW)
    ring.rotate(NOW + 100)
    new_token = _issue(service, now=NOW + 100)
    assert jwt.get_unverified_header(new_token)["kid"] != jwt.get_unverified_header(old_token)["kid"]

    for now in (NOW + 101, NOW + 3600 + 59):
        assert service.validate_access_token(old_token, now).app_id == APP
    published = {k["kid"] for k in ring.jwks(NOW + 3600, service.max_token_lifetime)["keys"]}
    assert jwt.get_unverified_header(old_token)["kid"] in published
    assert _refused(service, old_token, NOW + 3600 + 60) == "expired"

    assert ring.prune(NOW + 200, service.max_token_lifetime) == []
    dropped = ring.prune(NOW + 100 + service.max_token_lifetime, service.max_token_lifetime)
    assert len(dropped) == 1
    assert _refused(service, old_token, NOW + 100 + service.max_token_lifetime) == "unknown_key"
    assert service.validate_access_token(new_token, NOW + 200).app_id == APP


def test_max_token_lifetime_covers_both_token_kinds_and_leeway(ring: KeyRing) -> None:
    service = TokenService(
        ring, issuer_base=BASE, audiences=[GRAPH], access_token_lifetime=600, callback_token_lifetime=900
    )
    assert service.max_token_lifetime == 900 + 60


# -- validation cache --------------------------------------------------------------------------------------


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts signature verifications (the expensive step the cache skips)."""
    calls: list[str] = []
    original: Callable[..., dict[str, Any]] = tokens._JWS.decode_complete

    def counting(token: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append(token)
        return original(token, *args, **kwargs)

    monkeypatch.setattr(tokens._JWS, "decode_complete", counting)
    return calls


def test_repeated_validation_skips_signature_check(service: TokenService, verifications: list[str]) -> None:
    token = _issue(service)
    first = service.validate_access_token(token, NOW)
    assert service.validate_access_token(token, NOW + 10) is first
    assert len(verifications) == 1


def test_cache_still_enforces_expiry(service: TokenService, verifications: list[str]) -> None:
    token = _issue(service)
    service.validate_access_token(token, NOW)
    assert _refused(service, token, NOW + 3600 + 60) == "expired"
    assert _refused(service, token, NOW - 61) == "not_yet_valid"


def test_cache_is_invalidated_when_the_key_leaves_the_ring(service: TokenService, ring: KeyRing) -> None:
    token = _issue(service)
    service.validate_access_token(token, NOW)
    ring.rotate(NOW + 10)
    ring.prune(NOW + 10, max_token_lifetime=0)  # the old key is gone while the token is still unexpired
    assert _refused(service, token, NOW + 20) == "unknown_key"


def test_cache_is_bounded(ring: KeyRing, verifications: list[str]) -> None:
    service = TokenService(ring, issuer_base=BASE, audiences=[GRAPH], validation_cache_size=2)
    a, b, c = _issue(service), _issue(service), _issue(service)
    for token in (a, b, c, c, b):
        service.validate_access_token(token, NOW)
    assert verifications == [a, b, c]
    service.validate_access_token(a, NOW)  # evicted as the oldest entry
    assert verifications == [a, b, c, a]


def test_failures_are_not_cached(service: TokenService, ring: KeyRing, verifications: list[str]) -> None:
    impostor = SigningKey(ring.active.kid, generate_signing_key(NOW).private_pem, NOW)
    token = _forge(impostor, _claims())
    assert _refused(service, token) == "bad_signature"
    assert _refused(service, token) == "bad_signature"
    assert len(verifications) == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"audiences": []},
        {"access_token_lifetime": 0},
        {"leeway": -1},
        {"validation_cache_size": -1},
    ],
)
def test_constructor_rejects_bad_configuration(ring: KeyRing, kwargs: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {"issuer_base": BASE, "audiences": [GRAPH], **kwargs}
    with pytest.raises(ValueError):
        TokenService(ring, **arguments)
