"""SIP Digest: RFC test vectors, header syntax, the challenger (nonces, expiry, replay, memory bound) and the client."""

from __future__ import annotations

import base64
import random
import string

import pytest

from opencomms.sip import digest
from opencomms.sip.digest import ALGORITHMS, AuthError, AuthFailure, compute_ha1, compute_response
from opencomms.sip.digest_client import DigestClient
from opencomms.sip.digest_headers import (
    DigestChallenge,
    DigestCredentials,
    parse_challenge,
    parse_challenges,
    parse_credentials,
    select_challenge,
)
from opencomms.sip.digest_server import DigestChallenger, HA1Table

NOW = 1_800_000_000.0
REALM = "sip.opencomms.test"
SECRET = b"0123456789abcdef0123456789abcdef"
URI = "sip:bob@sip.opencomms.test"


# --- RFC vectors ------------------------------------------------------------------------------------------------

RFC2617_AUTHORIZATION = (
    'Digest username="Mufasa",\r\n realm="testrealm@host.com",\r\n'
    ' nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",\r\n uri="/dir/index.html",\r\n'
    " qop=auth,\r\n nc=00000001,\r\n"
    ' cnonce="0a4f113b",\r\n response="6629fae49393a05397450978507c4ef1",\r\n'
    ' opaque="5ccc069c403ebaf9f0171e9517f40e41"'
).replace("\r\n", "")  # the header as it arrives after unfolding


def test_rfc2617_section_3_5_example() -> None:
    challenge = parse_challenge(
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    assert challenge.realm == "testrealm@host.com"
    assert challenge.qop == ("auth", "auth-int")
    assert challenge.algorithm == "MD5"
    creds = parse_credentials(RFC2617_AUTHORIZATION)
    assert (creds.username, creds.nc, creds.nc_value, creds.qop) == ("Mufasa", "00000001", 1, "auth")
    ha1 = compute_ha1("Mufasa", "testrealm@host.com", "Circle Of Life")
    assert ha1 == "939e7578ed9e3c518a452acee763bce9"
    response = compute_response(
        ha1=ha1,
        algorithm="MD5",
        nonce=creds.nonce,
        method="GET",
        uri=creds.uri,
        qop="auth",
        nc=creds.nc,
        cnonce=creds.cnonce,
    )
    assert response == "6629fae49393a05397450978507c4ef1" == creds.response
    client = DigestClient(cnonce=lambda: "0a4f113b")
    value = client.authorize(challenge, "GET", "/dir/index.html", "Mufasa", "Circle Of Life")
    assert parse_credentials(value).response == "6629fae49393a05397450978507c4ef1"
    assert parse_credentials(value).opaque == "5ccc069c403ebaf9f0171e9517f40e41"


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_section_3_9_1_example(algorithm: str, expected: str) -> None:
    challenge = parse_challenge(
        'Digest\n realm="http-auth@example.org",\n qop="auth, auth-int",\n'.replace("\n", "")
        + f" algorithm={algorithm},"
        ' nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",'
        ' opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )
    assert challenge.algorithm == algorithm and challenge.qop == ("auth", "auth-int")
    client = DigestClient(cnonce=lambda: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")
    creds = client.credentials(challenge, "GET", "/dir/index.html", "Mufasa", "Circle of Life")
    assert (creds.response, creds.nc, creds.qop, creds.algorithm) == (expected, "00000001", "auth", algorithm)
    header = creds.to_header()
    assert parse_credentials(header) == creds
    assert 'username="Mufasa"' in header and "qop=auth" in header and "nc=00000001" in header


def test_sha512_256_is_supported_when_hashlib_has_it() -> None:
    assert "SHA-512-256" in ALGORITHMS  # OpenSSL 3 builds have it; the module drops it otherwise
    assert len(compute_ha1("a", "r", "p", "SHA-512-256")) == 64


def test_sess_and_auth_int_formulas() -> None:
    ha1 = compute_ha1("u", "r", "p", "SHA-256")
    sess = digest.digest_hex("SHA-256", f"{ha1}:n:c")
    ha2 = digest.digest_hex("SHA-256", "INVITE:sip:x:" + digest.digest_hex("SHA-256", b"v=0\r\n"))
    expected = digest.digest_hex("SHA-256", f"{sess}:n:00000002:c:auth-int:{ha2}")
    got = compute_response(
        ha1=ha1,
        algorithm="sha-256-SESS",
        nonce="n",
        method="INVITE",
        uri="sip:x",
        qop="auth-int",
        nc="00000002",
        cnonce="c",
        body=b"v=0\r\n",
    )
    assert got == expected


def test_legacy_rfc2069_response_without_qop() -> None:
    ha1 = compute_ha1("u", "r", "p")
    assert compute_response(ha1=ha1, algorithm="MD5", nonce="n", method="REGISTER", uri="sip:r") == digest.digest_hex(
        "MD5", f"{ha1}:n:" + digest.digest_hex("MD5", "REGISTER:sip:r")
    )


# --- header syntax ----------------------------------------------------------------------------------------------


def test_parameter_names_and_scheme_are_case_insensitive_and_whitespace_is_free() -> None:
    challenge = parse_challenge('dIgEsT   REALM = "r" ,NONCE="n",Algorithm=sha-256,QOP="AUTH" , STALE=true')
    assert (challenge.realm, challenge.nonce, challenge.algorithm, challenge.qop, challenge.stale) == (
        "r",
        "n",
        "SHA-256",
        ("auth",),
        True,
    )


def test_quoted_strings_keep_commas_and_equals_and_unescape_backslashes() -> None:
    value = r'Digest realm="a, b=c \"quoted\" \\ end", nonce="x,y", opaque="", domain="sip:a sip:b"'
    challenge = parse_challenge(value)
    assert challenge.realm == 'a, b=c "quoted" \\ end'
    assert challenge.nonce == "x,y"
    assert challenge.opaque == ""
    assert challenge.domain == "sip:a sip:b"
    # and back: building escapes what parsing unescapes
    assert parse_challenge(challenge.to_header()) == challenge


def test_bare_values_are_tolerated() -> None:
    creds = parse_credentials(
        "Digest username=alice, realm=r, nonce=abc/def==, uri=sip:bob@example.com, response=ABCDEF, qop=auth, "
        "nc=0000000a, cnonce=xyz"
    )
    assert creds.nonce == "abc/def==" and creds.uri == "sip:bob@example.com"
    assert creds.response == "abcdef" and creds.nc_value == 10


def test_unknown_parameters_are_kept_and_unknown_algorithms_are_marked_unsupported() -> None:
    challenge = parse_challenge('Digest realm="r", nonce="n", algorithm=SHA-1024, foo="bar"')
    assert challenge.extra == (("foo", "bar"),)
    assert challenge.algorithm == "SHA-1024" and not challenge.supported
    with pytest.raises(AuthError) as info:
        DigestClient().authorize(challenge, "INVITE", URI, "u", "p")
    assert info.value.reason is AuthFailure.UNSUPPORTED


def test_several_challenges_in_one_value_and_other_schemes() -> None:
    value = 'Basic realm="x", Digest realm="r", nonce="1", algorithm=SHA-256, Digest realm="r", nonce="1"'
    challenges = parse_challenges(value)
    assert [c.algorithm for c in challenges] == ["SHA-256", "MD5"]
    with pytest.raises(AuthError) as info:
        parse_challenges('Basic realm="x"')
    assert info.value.reason is AuthFailure.UNSUPPORTED


def test_select_challenge_takes_the_topmost_usable_one() -> None:
    headers = [
        'Digest realm="r", nonce="1", algorithm=SHA-3-999',
        "garbage ===",
        'Digest realm="r", nonce="2", qop="auth-conf"',
        'Digest realm="r", nonce="3", algorithm=SHA-256, qop="auth"',
        'Digest realm="r", nonce="4", algorithm=MD5, qop="auth"',
    ]
    assert select_challenge(headers).nonce == "3"
    with pytest.raises(AuthError):
        select_challenge(headers[3:], realm="other")
    with pytest.raises(AuthError) as info:
        select_challenge(headers[:3])
    assert info.value.reason is AuthFailure.UNSUPPORTED


def test_username_star_is_decoded() -> None:
    creds = parse_credentials(
        'Digest username*=UTF-8\'\'J%C3%A4s%C3%B8n%20Doe, realm="r", nonce="n", uri="sip:x", response="ab"'
    )
    assert creds.username == "Jäsøn Doe"


def test_building_refuses_header_injection() -> None:
    with pytest.raises(AuthError):
        DigestChallenge(realm="r\r\nVia: evil", nonce="n").to_header()
    with pytest.raises(AuthError):
        DigestCredentials(username="u", realm="r", nonce="n", uri="u", response="ab", qop="auth x").to_header()


MALFORMED = [
    "",
    "   ",
    "Digest",
    'Digest realm="r"',  # no nonce
    'Digest nonce="n"',  # no realm
    'Digest realm="r, nonce="n"',  # unterminated quote
    'Digest realm="r" nonce="n"',  # missing comma
    'Digest realm="r", realm="s", nonce="n"',  # duplicate
    'Digest realm=, nonce="n"',
    'Digest realm="r", nonce="n", =x',
    'realm="r", nonce="n"',  # no scheme
    'Digest realm="r\x00", nonce="n"',
    'Digest realm="r", nonce="n"\r\nX: y',
    "Digest " + "a" * 9000 + '="b"',
    'Digest, realm="r", nonce=n"',
    'Digest realm="r\\',
    "Digest\x7frealm=r",
    "@@@",
]

MALFORMED_CREDENTIALS = [
    'Digest realm="r", nonce="n", uri="u", response="ab"',  # no username
    'Digest username="u", nonce="n", uri="u", response="ab"',  # no realm
    'Digest username="u", realm="r", uri="u", response="ab"',  # no nonce
    'Digest username="u", realm="r", nonce="n", response="ab"',  # no uri
    'Digest username="u", realm="r", nonce="n", uri="u"',  # no response
    'Digest username="u", realm="r", nonce="n", uri="u", response="xyz"',  # not hex
    'Digest username="u", realm="r", nonce="n", uri="u", response="ab", qop=auth, cnonce="c"',  # no nc
    'Digest username="u", realm="r", nonce="n", uri="u", response="ab", qop=auth, nc=00000001',  # no cnonce
    'Digest username="u", realm="r", nonce="n", uri="u", response="ab", qop=auth, nc=1, cnonce="c"',  # short nc
    'Digest username="u", realm="r", nonce="n", uri="u", response="ab", qop=auth, nc=0000000g, cnonce="c"',
    'Digest username="u", realm="r", nonce="n", uri="u", response="ab", qop=auth, nc=00000001, cnonce=""',
    'Digest username*=latin2\'\'x, realm="r", nonce="n", uri="u", response="ab"',
    'Digest username*=UTF-8\'\'%FF, realm="r", nonce="n", uri="u", response="ab"',
    'Digest username*=x, username="u", realm="r", nonce="n", uri="u", response="ab"',
    'Digest username="u", realm="r", nonce="n", uri="u", response="ab", Digest username="v"',
    "Basic dXNlcjpwYXNz",
]


@pytest.mark.parametrize("value", MALFORMED)
def test_malformed_challenges_raise_auth_error(value: str) -> None:
    with pytest.raises(AuthError):
        parse_challenge(value)


@pytest.mark.parametrize("value", MALFORMED + MALFORMED_CREDENTIALS)
def test_malformed_credentials_raise_auth_error(value: str) -> None:
    with pytest.raises(AuthError):
        parse_credentials(value)


def test_random_garbage_only_ever_raises_auth_error() -> None:
    rng = random.Random(7)
    alphabet = string.printable + '"\\,=  \x00\x7fé'
    seeds = [RFC2617_AUTHORIZATION, 'Digest realm="r", nonce="n", qop="auth"']
    challenger = DigestChallenger(REALM, SECRET, HA1Table())
    for _ in range(3000):
        if rng.random() < 0.5:
            text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        else:  # mutate a valid header
            chars = list(rng.choice(seeds))
            for _ in range(rng.randint(1, 6)):
                chars[rng.randrange(len(chars))] = rng.choice(alphabet)
            text = "".join(chars)
        for call in (
            parse_challenge,
            parse_credentials,
            lambda value: challenger.verify(value, "INVITE", URI, NOW),
            lambda value: DigestClient().authorize(value, "INVITE", URI, "u", "p"),
        ):
            try:
                call(text)
            except AuthError:
                pass


def test_non_string_input_raises_auth_error() -> None:
    with pytest.raises(AuthError):
        parse_challenge(None)  # type: ignore[arg-type]


# --- server side ------------------------------------------------------------------------------------------------


def make_challenger(**kwargs: object) -> tuple[DigestChallenger, HA1Table]:
    table = HA1Table()
    table.add("alice", REALM, "wonderland")
    return DigestChallenger(REALM, SECRET, table, **kwargs), table  # type: ignore[arg-type]


def answer(
    header: str,
    password: str = "wonderland",
    method: str = "INVITE",
    uri: str = URI,
    client: DigestClient | None = None,
) -> str:
    return (client or DigestClient()).authorize(header, method, uri, "alice", password)


def test_ha1_table_stores_hashes_not_passwords() -> None:
    table = HA1Table()
    table.add("alice", REALM, "wonderland")
    assert table("alice", REALM, "MD5") == compute_ha1("alice", REALM, "wonderland")
    assert table("alice", REALM, "SHA-256") == compute_ha1("alice", REALM, "wonderland", "SHA-256")
    assert "wonderland" not in repr(vars(table))
    table.set("bob", REALM, "md5", "ABCDEF")
    assert table("bob", REALM, "MD5") == "abcdef"
    with pytest.raises(ValueError):
        table.set("bob", REALM, "MD5", "not hex")
    table.remove("alice", REALM)
    assert table("alice", REALM, "MD5") is None


def test_challenges_one_per_algorithm_in_preference_order_sharing_a_nonce() -> None:
    challenger, _ = make_challenger(opaque="op")
    headers = challenger.challenge_headers(NOW)
    parsed = [parse_challenge(h) for h in headers]
    assert [c.algorithm for c in parsed] == ["SHA-256", "MD5"]
    assert len({c.nonce for c in parsed}) == 1
    assert all(c.qop == ("auth",) and c.realm == REALM and c.opaque == "op" and not c.stale for c in parsed)
    assert "stale=TRUE" in challenger.challenge_headers(NOW, stale=True)[0]
    assert challenger.new_nonce(NOW) != challenger.new_nonce(NOW)  # salted


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_round_trip_every_algorithm(algorithm: str) -> None:
    challenger, _ = make_challenger(algorithms=[algorithm])
    header = challenger.challenge_headers(NOW)[0]
    verified = challenger.verify(answer(header), "INVITE", URI, NOW + 1)
    assert (verified.username, verified.realm, verified.algorithm, verified.qop, verified.nc) == (
        "alice",
        REALM,
        algorithm,
        "auth",
        1,
    )


def test_round_trip_auth_int_checks_the_body() -> None:
    challenger, _ = make_challenger(qop=["auth-int"])
    header = challenger.challenge_headers(NOW)[0]
    creds = DigestClient().authorize(header, "INVITE", URI, "alice", "wonderland", body=b"v=0\r\n")
    assert challenger.verify(creds, "INVITE", URI, NOW, body=b"v=0\r\n").qop == "auth-int"
    creds = DigestClient().authorize(header, "INVITE", URI, "alice", "wonderland", body=b"v=0\r\n")
    with pytest.raises(AuthError) as info:
        challenger.verify(creds, "INVITE", URI, NOW, body=b"v=1\r\n")
    assert info.value.reason is AuthFailure.BAD_RESPONSE


def test_wrong_password_unknown_user_wrong_method_and_uri() -> None:
    challenger, _ = make_challenger()
    header = challenger.challenge_headers(NOW)[0]
    cases = [
        (answer(header, password="looking-glass"), "INVITE", URI, AuthFailure.BAD_RESPONSE),
        (DigestClient().authorize(header, "INVITE", URI, "mallory", "x"), "INVITE", URI, AuthFailure.UNKNOWN_USER),
        (answer(header, method="REGISTER"), "INVITE", URI, AuthFailure.BAD_RESPONSE),
        (answer(header), "INVITE", "sip:other@sip.opencomms.test", AuthFailure.URI_MISMATCH),
    ]
    for value, method, uri, reason in cases:
        with pytest.raises(AuthError) as info:
            challenger.verify(value, method, uri, NOW)
        assert info.value.reason is reason
        assert not info.value.stale
    # request_uri=None skips the uri comparison (the response still covers the uri the client used)
    assert challenger.verify(answer(header, uri="sip:x"), "INVITE", None, NOW).username == "alice"


def test_stale_nonce_only_when_the_digest_is_right() -> None:
    challenger, _ = make_challenger(nonce_ttl=60)
    header = challenger.challenge_headers(NOW)[0]
    assert challenger.verify(answer(header), "INVITE", URI, NOW + 60).username == "alice"  # at the limit: fine
    with pytest.raises(AuthError) as wrong:
        challenger.verify(answer(header, password="nope"), "INVITE", URI, NOW + 61)
    assert wrong.value.reason is AuthFailure.BAD_RESPONSE and not wrong.value.stale
    with pytest.raises(AuthError) as expired:
        challenger.verify(answer(header), "INVITE", URI, NOW + 61)
    assert expired.value.reason is AuthFailure.STALE_NONCE and expired.value.stale
    # the client retries with the stale=true challenge without asking its user
    retry = challenger.challenge_headers(NOW + 61, stale=expired.value.stale)[0]
    assert parse_challenge(retry).stale
    assert challenger.verify(answer(retry), "INVITE", URI, NOW + 62).username == "alice"


def test_replayed_nc_is_refused_and_out_of_order_nc_accepted_once() -> None:
    challenger, _ = make_challenger()
    header = challenger.challenge_headers(NOW)[0]
    client = DigestClient()
    first = answer(header, client=client)  # nc 1
    second = answer(header, client=client)  # nc 2
    third = answer(header, client=client)  # nc 3
    assert challenger.verify(first, "INVITE", URI, NOW).nc == 1
    assert challenger.verify(third, "INVITE", URI, NOW).nc == 3
    assert challenger.verify(second, "INVITE", URI, NOW).nc == 2  # late arrival (UDP, parallel transactions)
    for value in (first, second, third):
        with pytest.raises(AuthError) as info:
            challenger.verify(value, "INVITE", URI, NOW)
        assert info.value.reason is AuthFailure.REPLAY and info.value.stale


def test_nc_far_behind_the_window_is_refused() -> None:
    challenger, _ = make_challenger()
    header = challenger.challenge_headers(NOW)[0]
    client = DigestClient()
    values = [answer(header, client=client) for _ in range(100)]
    assert challenger.verify(values[-1], "INVITE", URI, NOW).nc == 100
    assert challenger.verify(values[40], "INVITE", URI, NOW).nc == 41  # within 64 below the highest
    with pytest.raises(AuthError) as info:
        challenger.verify(values[10], "INVITE", URI, NOW)  # nc 11, too old to remember: refused
    assert info.value.reason is AuthFailure.REPLAY


def test_without_qop_a_nonce_is_single_use() -> None:
    challenger, _ = make_challenger(qop=[])
    header = challenger.challenge_headers(NOW)[0]
    assert "qop" not in header
    value = answer(header)
    assert "nc=" not in value and "qop" not in value
    assert challenger.verify(value, "INVITE", URI, NOW).qop is None
    with pytest.raises(AuthError) as info:
        challenger.verify(value, "INVITE", URI, NOW)
    assert info.value.reason is AuthFailure.REPLAY


def test_tampered_foreign_and_future_nonces() -> None:
    challenger, _ = make_challenger()
    nonce = challenger.new_nonce(NOW)
    flipped = nonce[:-2] + ("A" if nonce[-2] != "A" else "B") + nonce[-1]
    other = DigestChallenger(REALM, b"another secret of 32 bytes......", HA1Table()).new_nonce(NOW)
    other_realm = DigestChallenger("other", SECRET, HA1Table()).new_nonce(NOW)
    future = challenger.new_nonce(NOW + 3600)
    for bad in (flipped, other, other_realm, future, "short", "!!!not base64!!!", "A" * 200, nonce + "AAAA"):
        header = DigestChallenge(realm=REALM, nonce=bad, algorithm="SHA-256", qop=("auth",)).to_header()
        with pytest.raises(AuthError) as info:
            challenger.verify(answer(header), "INVITE", URI, NOW)
        assert info.value.reason is AuthFailure.INVALID_NONCE, bad
        assert not info.value.stale


def test_a_changed_issue_time_breaks_the_mac() -> None:
    challenger, _ = make_challenger(nonce_ttl=60)
    old = challenger.new_nonce(NOW - 3600)
    raw = bytearray(base64.urlsafe_b64decode(old + "=" * (-len(old) % 4)))
    raw[:8] = int(NOW * 1000).to_bytes(8, "big")  # pretend it was issued now
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    header = DigestChallenge(realm=REALM, nonce=forged, algorithm="SHA-256", qop=("auth",)).to_header()
    with pytest.raises(AuthError) as info:
        challenger.verify(answer(header), "INVITE", URI, NOW)
    assert info.value.reason is AuthFailure.INVALID_NONCE


def test_realm_opaque_algorithm_and_qop_must_match_the_offer() -> None:
    challenger, _ = make_challenger(algorithms=["SHA-256"], opaque="opaque-1")
    nonce = challenger.new_nonce(NOW)

    def creds(**changes: object) -> str:
        fields: dict[str, object] = {
            "realm": REALM,
            "nonce": nonce,
            "algorithm": "SHA-256",
            "qop": ("auth",),
            "opaque": "opaque-1",
        }
        fields.update(changes)
        return answer(DigestChallenge(**fields).to_header())  # type: ignore[arg-type]

    assert challenger.verify(creds(), "INVITE", URI, NOW).algorithm == "SHA-256"
    cases: list[tuple[dict[str, object], AuthFailure]] = [
        ({"realm": "elsewhere"}, AuthFailure.REALM_MISMATCH),
        ({"opaque": "opaque-2"}, AuthFailure.OPAQUE_MISMATCH),
        ({"opaque": None}, AuthFailure.OPAQUE_MISMATCH),
        ({"algorithm": "MD5"}, AuthFailure.UNSUPPORTED),
        ({"qop": ("auth-int",)}, AuthFailure.UNSUPPORTED),
        ({"qop": ()}, AuthFailure.UNSUPPORTED),
    ]
    for changes, reason in cases:
        with pytest.raises(AuthError) as info:
            challenger.verify(creds(**changes), "INVITE", URI, NOW)
        assert info.value.reason is reason, changes
    bogus = creds().replace("algorithm=SHA-256", "algorithm=SHA-1")
    with pytest.raises(AuthError) as info:
        challenger.verify(bogus, "INVITE", URI, NOW)
    assert info.value.reason is AuthFailure.UNSUPPORTED
    with pytest.raises(AuthError) as info:
        challenger.verify(creds().replace("Digest ", "Digest userhash=true, "), "INVITE", URI, NOW)
    assert info.value.reason is AuthFailure.UNSUPPORTED


def test_credentials_for_several_realms_pick_ours() -> None:
    challenger, _ = make_challenger()
    header = challenger.challenge_headers(NOW)[0]
    foreign = DigestClient().authorize('Digest realm="proxy.example", nonce="x"', "INVITE", URI, "a", "b")
    verified = challenger.verify(["garbage", foreign, answer(header)], "INVITE", URI, NOW)
    assert verified.username == "alice"
    with pytest.raises(AuthError) as info:
        challenger.verify([foreign, "garbage"], "INVITE", URI, NOW)
    assert info.value.reason is AuthFailure.REALM_MISMATCH
    with pytest.raises(AuthError) as info:
        challenger.verify("Basic Z2FyYmFnZQ==", "INVITE", URI, NOW)
    assert info.value.reason is AuthFailure.UNSUPPORTED
    with pytest.raises(AuthError) as info:
        challenger.verify('Digest username="alice, realm=', "INVITE", URI, NOW)
    assert info.value.reason is AuthFailure.MALFORMED


def test_nonce_memory_is_bounded_and_forgotten_nonces_are_not_replayable() -> None:
    challenger, _ = make_challenger(max_tracked_nonces=4)
    client = DigestClient(max_nonces=100)
    headers = [challenger.challenge_headers(NOW + i)[0] for i in range(10)]
    used = []
    for i, header in enumerate(headers):
        value = answer(header, client=client)
        challenger.verify(value, "INVITE", URI, NOW + i)
        used.append(value)
        assert challenger.tracked_nonces <= 4
    # replaying a forgotten nonce's request is refused (stale, so an honest client just re-authenticates)
    with pytest.raises(AuthError) as info:
        challenger.verify(used[0], "INVITE", URI, NOW + 11)
    assert info.value.reason is AuthFailure.STALE_NONCE and info.value.stale
    # a nonce issued after every eviction still works
    fresh = challenger.challenge_headers(NOW + 20)[0]
    assert challenger.verify(answer(fresh), "INVITE", URI, NOW + 20).nc == 1


def test_expired_nonces_leave_the_tracker_first() -> None:
    challenger, _ = make_challenger(max_tracked_nonces=3, nonce_ttl=10)
    for i in range(3):
        challenger.verify(answer(challenger.challenge_headers(NOW + i)[0]), "INVITE", URI, NOW + i)
    assert challenger.tracked_nonces == 3
    late = challenger.challenge_headers(NOW + 30)[0]  # every earlier nonce has expired by now
    challenger.verify(answer(late), "INVITE", URI, NOW + 30)
    assert challenger.tracked_nonces == 1


def test_constructor_validation() -> None:
    with pytest.raises(ValueError):
        DigestChallenger(REALM, b"short", HA1Table())
    with pytest.raises(ValueError):
        DigestChallenger(REALM, SECRET, HA1Table(), qop=["auth-conf"])
    with pytest.raises(ValueError):
        DigestChallenger(REALM, SECRET, HA1Table(), algorithms=[])
    with pytest.raises(AuthError):
        DigestChallenger(REALM, SECRET, HA1Table(), algorithms=["SHA-1"])
    with pytest.raises(ValueError):
        DigestClient(max_nonces=0)


# --- client side ------------------------------------------------------------------------------------------------


def test_client_counts_nc_per_nonce_and_uses_fresh_cnonces() -> None:
    client = DigestClient()
    a = 'Digest realm="trunk", nonce="A", qop="auth", algorithm=SHA-256'
    b = 'Digest realm="trunk", nonce="B", qop="auth"'
    first, second, other = (
        parse_credentials(client.authorize(a, "INVITE", URI, "gw", "pw")),
        parse_credentials(client.authorize(a, "BYE", URI, "gw", "pw")),
        parse_credentials(client.authorize(b, "INVITE", URI, "gw", "pw")),
    )
    assert (first.nc, second.nc, other.nc) == ("00000001", "00000002", "00000001")
    assert first.cnonce != second.cnonce
    assert first.algorithm == "SHA-256" and other.algorithm == "MD5"


def test_client_nonce_memory_is_bounded() -> None:
    client = DigestClient(max_nonces=2)
    for nonce in ("A", "B", "C"):
        client.authorize(f'Digest realm="r", nonce="{nonce}", qop="auth"', "INVITE", URI, "u", "p")
    again = parse_credentials(client.authorize('Digest realm="r", nonce="A", qop="auth"', "INVITE", URI, "u", "p"))
    assert again.nc == "00000001"  # A was forgotten: counting restarts (the server answers stale at worst)


def test_client_prefers_auth_and_falls_back_to_auth_int_and_legacy() -> None:
    client = DigestClient()
    both = parse_credentials(client.authorize('Digest realm="r", nonce="n", qop="auth-int,auth"', "M", "u", "x", "y"))
    only_int = parse_credentials(client.authorize('Digest realm="r", nonce="m", qop="auth-int"', "M", "u", "x", "y"))
    legacy = parse_credentials(client.authorize('Digest realm="r", nonce="l"', "M", "u", "x", "y"))
    assert (both.qop, only_int.qop, legacy.qop, legacy.nc, legacy.cnonce) == ("auth", "auth-int", None, None, None)
    sess = parse_credentials(client.authorize('Digest realm="r", nonce="s", algorithm=MD5-sess', "M", "u", "x", "y"))
    assert sess.cnonce is not None and sess.qop is None and sess.algorithm == "MD5-sess"


def test_client_answers_userhash_and_the_topmost_of_several_headers() -> None:
    client = DigestClient()
    creds = parse_credentials(
        client.authorize('Digest realm="r", nonce="n", qop="auth", userhash=true', "M", "u", "alice", "pw")
    )
    assert creds.userhash and creds.username == digest.digest_hex("MD5", "alice:r")
    chosen = parse_credentials(
        client.authorize(
            ['Digest realm="r", nonce="1", algorithm=SHA-999', 'Digest realm="r", nonce="2", algorithm=SHA-256'],
            "M",
            "u",
            "x",
            "y",
        )
    )
    assert chosen.nonce == "2" and chosen.algorithm == "SHA-256"


def test_client_to_server_quoting_of_awkward_usernames() -> None:
    table = HA1Table()
    table.add('we"ird\\user', REALM, "pw")
    challenger = DigestChallenger(REALM, SECRET, table)
    header = challenger.challenge_headers(NOW)[0]
    value = DigestClient().authorize(header, "REGISTER", URI, 'we"ird\\user', "pw")
    assert challenger.verify(value, "REGISTER", URI, NOW).username == 'we"ird\\user'
