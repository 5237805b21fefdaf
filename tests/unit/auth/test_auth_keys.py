"""Signing keys and the key ring: JWK content, persistence, rotation, publication window, pruning."""

from __future__ import annotations

import base64
import json

import jwt
import pytest

from opencomms.auth import KeyRing, SigningKey, generate_signing_key

NOW = 1_700_000_000.0
LIFETIME = 3660.0


def _b64url_int(value: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


def test_public_jwk_describes_the_key() -> None:
    key = generate_signing_key(NOW)
    jwk = key.public_jwk()
    assert set(jwk) == {"kty", "use", "alg", "kid", "n", "e"}
    assert (jwk["kty"], jwk["use"], jwk["alg"], jwk["kid"], jwk["e"]) == (
        "RSA",
        "sig",
        "RS256",
        key.kid,
        "AQAB",
    )
    numbers = key.public_key().public_numbers()
    assert _b64url_int(jwk["n"]) == numbers.n
    assert numbers.n.bit_length() == 2048
    assert "=" not in jwk["n"]


def test_kid_is_the_rfc7638_thumbprint_and_unique() -> None:
    a, b = generate_signing_key(NOW), generate_signing_key(NOW)
    assert a.kid != b.kid
    assert a.kid == jwt.PyJWK(a.public_jwk()).key_id
    assert len(a.kid) == 43  # base64url SHA-256 without padding


def test_a_third_party_verifies_with_the_published_jwk() -> None:
    key = generate_signing_key(NOW)
    token = jwt.encode({"x": 1}, key.private_key(), algorithm="RS256", headers={"kid": key.kid})
    public = jwt.PyJWK(key.public_jwk())
    assert jwt.decode(token, public, algorithms=["RS256"]) == {"x": 1}


def test_doc_round_trip_through_json() -> None:
    key = generate_signing_key(NOW)
    retired = SigningKey(key.kid, key.private_pem, key.created_at, retired_at=NOW + 5)
    for original in (key, retired):
        restored = SigningKey.from_doc(json.loads(json.dumps(original.to_doc())))
        assert restored == original
        assert restored.public_jwk() == original.public_jwk()


@pytest.mark.parametrize(
    "doc",
    [
        {},
        {"kid": "k", "private_pem": "x"},
        {"kid": "", "private_pem": "x", "created_at": 1.0},
        {"kid": "k", "private_pem": 5, "created_at": 1.0},
        {"kid": "k", "private_pem": "x", "created_at": True},
        {"kid": "k", "private_pem": "x", "created_at": 1.0, "retired_at": "soon"},
    ],
)
def test_from_doc_rejects_malformed_documents(doc: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SigningKey.from_doc(doc)


def test_repr_does_not_leak_the_private_key() -> None:
    key = generate_signing_key(NOW)
    assert "PRIVATE" not in repr(key)
    assert key.kid in repr(key)


def test_ring_requires_an_active_key_and_unique_kids() -> None:
    key = generate_signing_key(NOW)
    with pytest.raises(ValueError):
        KeyRing([])
    with pytest.raises(ValueError):
        KeyRing([SigningKey(key.kid, key.private_pem, NOW, retired_at=NOW)])
    with pytest.raises(ValueError):
        KeyRing([key, key])


def test_active_is_the_newest_non_retired_key() -> None:
    old, new = generate_signing_key(NOW), generate_signing_key(NOW + 10)
    newest_retired = SigningKey("r", old.private_pem, NOW + 20, retired_at=NOW + 30)
    ring = KeyRing([new, old, newest_retired])
    assert ring.active == new
    assert ring.get(old.kid) == old
    assert ring.get("nope") is None
    assert [k.created_at for k in ring.keys] == [NOW, NOW + 10, NOW + 20]


def test_rotate_retires_the_previous_key_and_keeps_publishing_it_for_the_window() -> None:
    ring = KeyRing.empty_with_new_key(NOW)
    first = ring.active
    second = ring.rotate(NOW + 100)
    assert ring.active == second
    assert second.retired_at is None
    retired = ring.get(first.kid)
    assert retired is not None
    assert retired.retired_at == NOW + 100

    assert [k.kid for k in ring.published(NOW + 100, LIFETIME)] == [second.kid, first.kid]
    jwks = ring.jwks(NOW + 100 + LIFETIME - 1, LIFETIME)
    assert [k["kid"] for k in jwks["keys"]] == [second.kid, first.kid]
    assert ring.prune(NOW + 100 + LIFETIME - 1, LIFETIME) == []

    assert [k.kid for k in ring.published(NOW + 100 + LIFETIME, LIFETIME)] == [second.kid]
    dropped = ring.prune(NOW + 100 + LIFETIME, LIFETIME)
    assert [k.kid for k in dropped] == [first.kid]
    assert ring.get(first.kid) is None
    assert ring.keys == [second]


def test_active_key_is_never_pruned() -> None:
    ring = KeyRing.empty_with_new_key(NOW)
    assert ring.prune(NOW + 10**9, LIFETIME) == []
    assert ring.jwks(NOW + 10**9, LIFETIME)["keys"] == [ring.active.public_jwk()]


def test_ring_survives_persistence() -> None:
    ring = KeyRing.empty_with_new_key(NOW)
    ring.rotate(NOW + 1)
    restored = KeyRing(SigningKey.from_doc(d) for d in json.loads(json.dumps([k.to_doc() for k in ring.keys])))
    assert restored.keys == ring.keys
    assert restored.active == ring.active


def test_a_loaded_keyring_is_parsed_before_its_first_signature() -> None:
    """A node loading keys another node made pays the RSA parse at start, not in its first call's callback."""
    from opencomms.auth import keys as keys_module
    from opencomms.auth.keystore import KIND, load_keyring
    from opencomms.store.memory import MemoryStore

    made = generate_signing_key(NOW)
    store = MemoryStore()
    store.put(KIND, made.kid, made.to_doc())
    keys_module._load_private.cache_clear()
    keys_module._load_public.cache_clear()
    ring = load_keyring(store, NOW)
    misses = keys_module._load_private.cache_info().misses
    assert misses >= 1  # parsed by the load
    ring.active.private_key()
    ring.active.public_key()
    assert keys_module._load_private.cache_info().misses == misses
