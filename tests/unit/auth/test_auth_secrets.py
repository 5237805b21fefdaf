"""Client secrets: generation, hashing round trip, refusal of wrong secrets and malformed hashes."""

from __future__ import annotations

import string

import pytest

from opencomms.auth import generate_secret, hash_secret, verify_secret

_URL_SAFE = set(string.ascii_letters + string.digits + "-_")


def test_generate_secret_is_40_url_safe_chars_and_unique() -> None:
    secrets = {generate_secret() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert len(secret) == 40
        assert set(secret) <= _URL_SAFE


def test_hash_round_trip_and_wrong_secret() -> None:
    secret = generate_secret()
    hashed = hash_secret(secret)
    assert hashed.startswith("scrypt$")
    assert secret not in hashed
    assert verify_secret(secret, hashed)
    assert not verify_secret(secret + "x", hashed)
    assert not verify_secret("", hashed)


def test_hashes_are_salted() -> None:
    assert hash_secret("same secret") != hash_secret("same secret")


def test_non_ascii_secret_round_trip() -> None:
    hashed = hash_secret("pässwörd-🔑")
    assert verify_secret("pässwörd-🔑", hashed)
    assert not verify_secret("passwort", hashed)


@pytest.mark.parametrize(
    "hashed",
    [
        "",
        "scrypt",
        "scrypt$8192$8$1$c2FsdA==",
        "bcrypt$8192$8$1$c2FsdHNhbHRzYWx0c2FsdA==$" + "A" * 44,
        "scrypt$8192$8$1$not base64!$" + "A" * 44,
        "scrypt$8191$8$1$c2FsdHNhbHRzYWx0c2FsdA==$" + "A" * 44,  # N not a power of two
        "scrypt$1073741824$8$1$c2FsdHNhbHRzYWx0c2FsdA==$" + "A" * 44,  # N far too large
        "scrypt$8192$8$0$c2FsdHNhbHRzYWx0c2FsdA==$" + "A" * 44,
        "scrypt$8192$x$1$c2FsdHNhbHRzYWx0c2FsdA==$" + "A" * 44,
        "scrypt$8192$8$1$$" + "A" * 44,  # empty salt
        "scrypt$8192$8$1$c2FsdHNhbHRzYWx0c2FsdA==$QUJD",  # digest too short
    ],
)
def test_malformed_hash_is_false_not_an_exception(hashed: str) -> None:
    assert verify_secret("anything", hashed) is False


def test_surrogate_secret_is_false_not_an_exception() -> None:
    assert verify_secret("\ud800", hash_secret("x")) is False
