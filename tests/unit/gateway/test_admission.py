"""Admission of inbound SIP calls: a full node and a flooding source get 503 with a Retry-After that makes sense."""

from __future__ import annotations

import pytest

from opencomms.gateway.admission import Admission, AdmissionConfig, RefusalReason


def test_calls_are_admitted_until_the_node_is_full() -> None:
    admission = Admission(AdmissionConfig(max_calls=3, rate_per_source=0))
    assert [admission.admit("192.0.2.1", active, 0.0) for active in range(3)] == [None, None, None]
    refusal = admission.admit("192.0.2.1", 3, 0.0)
    assert refusal is not None and refusal.reason is RefusalReason.FULL
    assert refusal.status == 503 and refusal.headers == [("Retry-After", "5")]
    assert admission.stats == {"admitted": 3, "refused_full": 1, "refused_rate": 0}


def test_a_flooding_source_is_limited_and_others_are_not() -> None:
    admission = Admission(AdmissionConfig(rate_per_source=10, burst_per_source=20))
    verdicts = [admission.admit("192.0.2.66", 0, 0.0) for _ in range(2000)]
    assert verdicts[:20] == [None] * 20
    refused = [v for v in verdicts if v is not None]
    assert len(refused) == 1980
    assert all(r.reason is RefusalReason.RATE and r.retry_after == 1 for r in refused)
    assert admission.admit("192.0.2.7", 0, 0.0) is None  # another peer still gets in
    # the bucket refills at the sustained rate: 10 per second
    assert [admission.admit("192.0.2.66", 0, 1.0) for _ in range(11)].count(None) == 10


def test_refused_attempts_do_not_postpone_the_refill() -> None:
    admission = Admission(AdmissionConfig(rate_per_source=2, burst_per_source=1))
    assert admission.admit("a", 0, 0.0) is None
    for t in (0.1, 0.2, 0.3, 0.4):
        assert admission.admit("a", 0, t) is not None
    assert admission.admit("a", 0, 0.5) is None


def test_retry_after_grows_with_the_wait_and_is_capped() -> None:
    slow = Admission(AdmissionConfig(rate_per_source=0.1, burst_per_source=1, max_retry_after=60))
    assert slow.admit("a", 0, 0.0) is None
    refusal = slow.admit("a", 0, 0.0)
    assert refusal is not None and refusal.retry_after == 10
    slower = Admission(AdmissionConfig(rate_per_source=0.001, burst_per_source=1, max_retry_after=60))
    slower.admit("a", 0, 0.0)
    refusal = slower.admit("a", 0, 0.0)
    assert refusal is not None and refusal.retry_after == 60


def test_memory_is_bounded_by_max_sources() -> None:
    admission = Admission(AdmissionConfig(rate_per_source=1, burst_per_source=1, max_sources=100))
    for n in range(10_000):
        admission.admit(f"10.0.{n // 256}.{n % 256}", 0, 0.0)
    assert admission.sources == 100


def test_no_rate_limit_when_rate_is_zero() -> None:
    admission = Admission(AdmissionConfig(rate_per_source=0, burst_per_source=0))
    assert all(admission.admit("a", 0, 0.0) is None for _ in range(5000))
    assert admission.sources == 0


@pytest.mark.parametrize(
    "changes",
    [
        {"max_calls": -1},
        {"rate_per_source": -1.0},
        {"rate_per_source": 5.0, "burst_per_source": 0.5},
        {"full_retry_after": 0},
        {"full_retry_after": 90, "max_retry_after": 60},
        {"max_sources": 0},
    ],
)
def test_nonsense_configuration_is_refused(changes: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AdmissionConfig(**changes)  # type: ignore[arg-type]
