"""SIP registrar (RFC 3261 section 10.3): expiry policy, 423, Contact *, Call-ID/CSeq ordering, q ordering, expiry,
all-or-nothing updates, limits, comparison of contact URIs, snapshot/restore."""

from __future__ import annotations

import json
from typing import Any

import pytest

from opencomms.sip.registrar import (
    Binding,
    BindingView,
    RegisterResult,
    Registrar,
    RegistrarConfig,
    format_q,
    uri_key,
)

NOW = 1_800_000_000.0
AOR = "sip:alice@example.com"
PHONE = "sip:alice@192.0.2.10:5060"
LAPTOP = "sip:alice@192.0.2.20:5062;transport=tcp"
CONFIG = RegistrarConfig(min_expires=60, default_expires=3600, max_expires=7200, max_bindings_per_aor=3)


def registrar() -> Registrar:
    return Registrar(CONFIG)


def contacts(result: RegisterResult) -> list[tuple[str, int, float | None]]:
    return [(b.contact, b.expires, b.q) for b in result.bindings]


def test_first_registration_and_refresh() -> None:
    r = registrar()
    result = r.register(AOR, [(PHONE, None, None)], "call-1", 1, 1800, NOW)
    assert (result.status, result.reason, result.ok) == (200, "OK", True)
    assert contacts(result) == [(PHONE, 1800, None)]
    assert result.headers == ()
    # refresh with the same Call-ID and a higher CSeq, 100 s later
    result = r.register(AOR, [(PHONE, None, None)], "call-1", 2, 1800, NOW + 100)
    assert contacts(result) == [(PHONE, 1800, None)]
    (binding,) = r.lookup(AOR, NOW + 100)
    assert (binding.registered_at, binding.updated_at, binding.cseq) == (NOW, NOW + 100, 2)


def test_expiry_comes_from_the_contact_param_then_the_header_then_the_default() -> None:
    r = registrar()
    result = r.register(AOR, [(PHONE, 120, None), (LAPTOP, None, None)], "c", 1, 300, NOW)
    assert sorted(contacts(result)) == sorted([(PHONE, 120, None), (LAPTOP, 300, None)])
    result = r.register("sip:bob@example.com", [(PHONE, None, None)], "c", 1, None, NOW)
    assert contacts(result) == [(PHONE, 3600, None)]


def test_expiry_above_max_is_shortened() -> None:
    r = registrar()
    assert contacts(r.register(AOR, [(PHONE, 999_999, None)], "c", 1, None, NOW)) == [(PHONE, 7200, None)]
    assert contacts(r.register(AOR, [(PHONE, None, None)], "c", 2, 2**40, NOW)) == [(PHONE, 7200, None)]


def test_interval_too_brief_is_423_with_min_expires_and_changes_nothing() -> None:
    r = registrar()
    r.register(AOR, [(PHONE, None, None)], "c", 1, 600, NOW)
    result = r.register(AOR, [(LAPTOP, None, None), (PHONE, 30, None)], "c", 2, 600, NOW)
    assert (result.status, result.reason) == (423, "Interval Too Brief")
    assert result.headers == (("Min-Expires", "60"),)
    assert result.bindings == ()
    assert [b.contact for b in r.lookup(AOR, NOW)] == [PHONE]  # LAPTOP was not added
    # exactly the minimum is fine, and 0 is a removal, never "too brief"
    assert r.register(AOR, [(LAPTOP, 60, None)], "c", 3, None, NOW).status == 200
    assert r.register(AOR, [(LAPTOP, 0, None)], "c", 4, None, NOW).status == 200


def test_removal_with_expires_zero_param_or_header() -> None:
    r = registrar()
    r.register(AOR, [(PHONE, None, None), (LAPTOP, None, None)], "c", 1, 600, NOW)
    result = r.register(AOR, [(PHONE, 0, None)], "c", 2, 600, NOW)
    assert contacts(result) == [(LAPTOP, 600, None)]
    result = r.register(AOR, [(LAPTOP, None, None)], "c", 3, 0, NOW)
    assert result.status == 200 and result.bindings == ()
    assert r.lookup(AOR, NOW) == [] and len(r) == 0 and r.aors() == []
    # removing what is not bound is not an error
    assert r.register(AOR, [(PHONE, 0, None)], "c", 4, None, NOW).status == 200


def test_wildcard_removes_every_binding_only_alone_and_with_expires_zero() -> None:
    r = registrar()
    r.register(AOR, [(PHONE, None, None)], "phone-call", 7, 600, NOW)
    r.register(AOR, [(LAPTOP, None, None)], "laptop-call", 1, 600, NOW)
    cases: list[tuple[list[tuple[str, int | None, float | None]], int | None]] = [
        ([("*", None, None)], 600),
        ([("*", None, None)], None),
        ([("*", None, None), (PHONE, None, None)], 0),
        ([("*", 0, None)], 0),
        ([("*", None, 0.5)], 0),
    ]
    for specs, expires in cases:
        result = r.register(AOR, specs, "other", 1, expires, NOW)
        assert result.status == 400, (specs, expires)
    assert len(r.lookup(AOR, NOW)) == 2
    result = r.register(AOR, [(" * ", None, None)], "other", 1, 0, NOW)
    assert (result.status, result.bindings) == (200, ())
    assert r.lookup(AOR, NOW) == []


def test_wildcard_respects_call_id_and_cseq_ordering() -> None:
    r = registrar()
    r.register(AOR, [(PHONE, None, None)], "phone-call", 7, 600, NOW)
    r.register(AOR, [(LAPTOP, None, None)], "laptop-call", 1, 600, NOW)
    result = r.register(AOR, [("*", None, None)], "phone-call", 7, 0, NOW)  # same Call-ID, CSeq not higher
    assert result.status == 500
    assert len(r.lookup(AOR, NOW)) == 2  # nothing removed
    assert r.register(AOR, [("*", None, None)], "phone-call", 8, 0, NOW).status == 200
    assert r.lookup(AOR, NOW) == []


def test_same_call_id_with_lower_or_equal_cseq_is_refused_500() -> None:
    r = registrar()
    r.register(AOR, [(PHONE, None, None)], "c", 5, 600, NOW)
    for cseq in (5, 4, 0):
        result = r.register(AOR, [(PHONE, None, None)], "c", cseq, 1200, NOW + 1)
        assert result.status == 500 and result.reason.startswith("Server Internal Error")
        result = r.register(AOR, [(PHONE, 0, None)], "c", cseq, None, NOW + 1)  # nor may a late removal win
        assert result.status == 500
    (binding,) = r.lookup(AOR, NOW + 1)
    assert (binding.cseq, binding.remaining(NOW + 1)) == (5, 599)


def test_a_different_call_id_updates_or_removes_whatever_its_cseq() -> None:
    r = registrar()
    r.register(AOR, [(PHONE, None, None)], "old-boot", 50, 600, NOW)
    result = r.register(AOR, [(PHONE, None, None)], "new-boot", 1, 1200, NOW + 1)  # the phone rebooted
    assert contacts(result) == [(PHONE, 1200, None)]
    assert r.lookup(AOR, NOW + 1)[0].call_id == "new-boot"
    assert r.register(AOR, [(PHONE, 0, None)], "third", 1, None, NOW + 2).bindings == ()


def test_refused_request_is_all_or_nothing() -> None:
    r = registrar()
    r.register(AOR, [(PHONE, None, None)], "c", 5, 600, NOW)
    # LAPTOP is new and would be added, but PHONE's CSeq check fails: nothing may change
    result = r.register(AOR, [(LAPTOP, None, None), (PHONE, None, None)], "c", 5, 600, NOW)
    assert result.status == 500
    assert [b.contact for b in r.lookup(AOR, NOW)] == [PHONE]


def test_query_without_contacts_lists_bindings() -> None:
    r = registrar()
    assert r.register(AOR, [], "q", 1, None, NOW).bindings == ()
    r.register(AOR, [(PHONE, None, None)], "c", 1, 600, NOW)
    result = r.register(AOR, [], "q", 1, None, NOW + 10)
    assert contacts(result) == [(PHONE, 590, None)]
    assert result.contact_headers() == [f"<{PHONE}>;expires=590"]


def test_lookup_sorts_by_q_then_most_recent_and_drops_expired() -> None:
    r = registrar()
    desk = "sip:alice@192.0.2.30"
    r.register(AOR, [(PHONE, None, 0.5)], "a", 1, 600, NOW)
    r.register(AOR, [(LAPTOP, None, None)], "b", 1, 100, NOW + 1)  # no q: counts as 1.0
    r.register(AOR, [(desk, None, 0.5)], "c", 1, 900, NOW + 2)
    assert [b.contact for b in r.lookup(AOR, NOW + 2)] == [LAPTOP, desk, PHONE]
    assert [b.contact for b in r.lookup(AOR, NOW + 101)] == [desk, PHONE]  # LAPTOP expired at NOW + 101
    assert [b.contact for b in r.lookup(AOR, NOW + 700)] == [desk]
    assert r.lookup(AOR, NOW + 902) == []
    assert r.lookup("sip:nobody@example.com", NOW) == []


def test_expiry_is_exclusive_of_the_instant() -> None:
    r = registrar()
    r.register(AOR, [(PHONE, None, None)], "c", 1, 600, NOW)
    assert len(r.lookup(AOR, NOW + 599.9)) == 1
    assert r.lookup(AOR, NOW + 600) == []


def test_expired_binding_is_replaced_as_new() -> None:
    r = registrar()
    r.register(AOR, [(PHONE, None, None)], "c", 9, 600, NOW)
    result = r.register(AOR, [(PHONE, None, None)], "c", 1, 600, NOW + 601)  # lower CSeq but old one expired
    assert result.status == 200
    assert r.lookup(AOR, NOW + 601)[0].registered_at == NOW + 601


def test_purge_and_next_expiry() -> None:
    r = registrar()
    assert r.next_expiry() is None and r.purge(NOW) == 0
    r.register(AOR, [(PHONE, None, None)], "c", 1, 100, NOW)
    r.register("sip:bob@example.com", [(LAPTOP, None, None)], "d", 1, 200, NOW)
    assert r.next_expiry() == NOW + 100
    assert r.purge(NOW + 150) == 1
    assert r.next_expiry() == NOW + 200 and len(r) == 1
    assert r.aors() == ["sip:bob@example.com"]


def test_q_values_are_validated_and_formatted() -> None:
    r = registrar()
    for q in (-0.1, 1.5, float("nan")):
        assert r.register(AOR, [(PHONE, None, q)], "c", 1, None, NOW).status == 400
    result = r.register(AOR, [(PHONE, None, 0.125), (LAPTOP, None, 1.0)], "c", 1, None, NOW)
    assert result.contact_headers() == [f"<{LAPTOP}>;expires=3600;q=1", f"<{PHONE}>;expires=3600;q=0.125"]
    assert [format_q(q) for q in (0.0, 0.5, 0.25, 1.0, 0.1234)] == ["0", "0.5", "0.25", "1", "0.123"]


def test_bad_requests_are_400() -> None:
    r = registrar()
    cases: list[tuple[str, list[Any], str, Any, int | None]] = [
        ("", [(PHONE, None, None)], "c", 1, None),
        (AOR, [(PHONE, None, None)], "", 1, None),
        (AOR, [(PHONE, None, None)], "c", -1, None),
        (AOR, [(PHONE, None, None)], "c", 2**31, None),
        (AOR, [(PHONE, None, None)], "c", True, None),
        (AOR, [(PHONE, None, None)], "c", 1, -5),
        (AOR, [(PHONE, -5, None)], "c", 1, None),
        (AOR, [("  ", None, None)], "c", 1, None),
    ]
    for aor, specs, call_id, cseq, expires in cases:
        assert r.register(aor, specs, call_id, cseq, expires, NOW).status == 400, (aor, specs, call_id, cseq)
    assert len(r) == 0


def test_too_many_contacts_is_503_but_refreshes_still_work() -> None:
    r = registrar()
    phones = [f"sip:alice@192.0.2.{i}" for i in range(1, 5)]
    assert r.register(AOR, [(p, None, None) for p in phones[:3]], "c", 1, 600, NOW).status == 200
    result = r.register(AOR, [(phones[3], None, None)], "c", 2, 600, NOW)
    assert result.status == 503
    assert len(r.lookup(AOR, NOW)) == 3
    assert r.register(AOR, [(phones[0], None, None)], "c", 3, 600, NOW).status == 200  # refresh: fine
    # swapping one binding for another in a single request is fine too
    assert r.register(AOR, [(phones[0], 0, None), (phones[3], None, None)], "c", 4, 600, NOW).status == 200


def test_contacts_and_aors_compare_as_uris() -> None:
    r = registrar()
    r.register(
        "sip:alice@EXAMPLE.com", [("<SIP:alice@Host.Example:5060;transport=UDP;ob>", None, None)], "c", 1, 600, NOW
    )
    result = r.register(AOR, [("sip:alice@host.example:5060;Transport=udp", None, 0.7)], "c", 2, 600, NOW)
    assert len(result.bindings) == 1 and result.bindings[0].q == 0.7
    assert result.bindings[0].contact == "sip:alice@host.example:5060;Transport=udp"  # latest spelling reported
    # port and user part are significant
    other_port, other_user = "sip:alice@host.example", "sip:Alice@host.example:5060"
    result = r.register(AOR, [(other_port, None, None), (other_user, None, None)], "c", 3, 600, NOW)
    assert len(result.bindings) == 3


def test_uri_key() -> None:
    assert uri_key("<sip:alice@Example.COM>") == uri_key("SIP:alice@example.com")
    assert uri_key("sip:%61lice@example.com") == uri_key("sip:alice@example.com")
    assert uri_key("sip:alice@example.com;ob;foo=bar") == uri_key("sip:alice@example.com")
    assert uri_key("sip:alice@example.com;transport=TCP") == uri_key("sip:alice@example.com;TRANSPORT=tcp")
    assert uri_key("sip:alice@example.com;transport=tcp") != uri_key("sip:alice@example.com")
    assert uri_key("sip:alice@example.com;maddr=x;user=phone") == uri_key("sip:alice@example.com;user=phone;maddr=X")
    assert uri_key("sip:alice@example.com?subject=x") == uri_key("sip:alice@example.com")
    assert uri_key("sip:Alice@example.com") != uri_key("sip:alice@example.com")
    assert uri_key("sip:alice@example.com:5060") != uri_key("sip:alice@example.com")
    assert uri_key("sips:alice@example.com") != uri_key("sip:alice@example.com")
    assert uri_key("opaque-thing") == "opaque-thing"


def test_custom_uri_comparison_can_be_injected() -> None:
    r = Registrar(CONFIG, uri_key=lambda uri: uri.strip().lower())
    r.register(AOR, [("sip:ALICE@h", None, None)], "c", 1, 600, NOW)
    assert len(r.register(AOR, [("sip:alice@h", None, None)], "c", 2, 600, NOW).bindings) == 1


def test_duplicate_contact_in_one_request_last_wins() -> None:
    r = registrar()
    result = r.register(AOR, [(PHONE, 600, 0.1), (PHONE, 900, 0.9)], "c", 1, None, NOW)
    assert contacts(result) == [(PHONE, 900, 0.9)]


def test_snapshot_restore_round_trip_through_json() -> None:
    r = registrar()
    r.register(AOR, [(PHONE, None, 0.5), (LAPTOP, None, None)], "c", 4, 600, NOW)
    r.register("sip:bob@example.com", [("sip:bob@192.0.2.99", None, None)], "d", 1, 100, NOW)
    data = json.loads(json.dumps(r.snapshot()))
    assert data["version"] == 1 and len(data["bindings"]) == 3
    copy = Registrar(CONFIG)
    copy.restore(data)
    assert copy.lookup(AOR, NOW + 1) == r.lookup(AOR, NOW + 1)
    assert copy.snapshot() == r.snapshot()
    # ordering still enforced after a restart
    assert copy.register(AOR, [(PHONE, None, None)], "c", 4, 600, NOW + 2).status == 500
    # expiry still absolute
    assert [b.contact for b in copy.lookup("sip:bob@example.com", NOW + 100)] == []


def test_restore_refuses_bad_data_and_keeps_state() -> None:
    r = registrar()
    r.register(AOR, [(PHONE, None, None)], "c", 1, 600, NOW)
    good = r.snapshot()["bindings"][0]
    bad_snapshots: list[Any] = [
        None,
        {},
        {"version": 2, "bindings": []},
        {"version": 1, "bindings": {}},
        {"version": 1, "bindings": ["x"]},
        {"version": 1, "bindings": [{k: v for k, v in good.items() if k != "contact"}]},
        {"version": 1, "bindings": [{**good, "cseq": "1"}]},
        {"version": 1, "bindings": [{**good, "cseq": 2**31}]},
        {"version": 1, "bindings": [{**good, "expires_at": "soon"}]},
        {"version": 1, "bindings": [{**good, "expires_at": float("inf")}]},
        {"version": 1, "bindings": [{**good, "q": 2}]},
        {"version": 1, "bindings": [{**good, "aor": ""}]},
        {"version": 1, "bindings": [{**good, "registered_at": True}]},
    ]
    for bad in bad_snapshots:
        with pytest.raises(ValueError):
            r.restore(bad)
    assert [b.contact for b in r.lookup(AOR, NOW)] == [PHONE]


def test_binding_doc_round_trip_and_view_header() -> None:
    binding = Binding(AOR, PHONE, NOW + 10, None, "c", 1, NOW, NOW)
    assert Binding.from_doc(binding.to_doc()) == binding
    assert binding.remaining(NOW + 0.5) == 9 and binding.remaining(NOW + 20) == 0
    assert BindingView("<sip:a@b>", 5, 0.5).header_value() == "<sip:a@b>;expires=5;q=0.5"


def test_config_validation() -> None:
    for kwargs in (
        {"min_expires": 100, "default_expires": 50},
        {"default_expires": 8000, "max_expires": 7200},
        {"min_expires": -1},
        {"max_bindings_per_aor": 0},
    ):
        with pytest.raises(ValueError):
            RegistrarConfig(**kwargs)
