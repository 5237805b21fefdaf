"""The per-application token bucket, driven by explicit `now` values: no clock, no sleeping."""

from __future__ import annotations

import math

import pytest

from opencomms.api.throttle import Throttle, ThrottleConfig


def bucket(rate: float = 1.0, burst: float = 3.0, enabled: bool = True) -> Throttle:
    return Throttle(ThrottleConfig(rate=rate, burst=burst, enabled=enabled))


def test_burst_then_refused_with_retry_after() -> None:
    t = bucket(rate=1, burst=3)
    assert [t.check("app", 100.0) for _ in range(3)] == [None, None, None]
    assert t.check("app", 100.0) == 1
    assert t.check("app", 100.0) == 1  # a refused request takes nothing, and keeps answering


def test_retry_after_is_an_integer_of_at_least_one_second() -> None:
    t = bucket(rate=1000, burst=1)
    assert t.check("app", 0.0) is None
    wait = t.check("app", 0.0)
    assert isinstance(wait, int) and wait == 1  # 1 ms of wait rounds up to a whole second


@pytest.mark.parametrize(("rate", "expected"), [(0.5, 2), (0.25, 4), (0.1, 10), (1 / 3, 3), (2.0, 1)])
def test_retry_after_is_the_time_to_the_next_token(rate: float, expected: int) -> None:
    t = bucket(rate=rate, burst=1)
    assert t.check("app", 10.0) is None
    wait = t.check("app", 10.0)
    assert wait == expected
    # honouring Retry-After is enough
    assert t.check("app", 10.0 + expected) is None


def test_partial_refill_shortens_retry_after() -> None:
    t = bucket(rate=0.1, burst=1)  # one token per 10 s
    assert t.check("app", 0.0) is None
    assert t.check("app", 0.0) == 10
    assert t.check("app", 7.5) == 3  # 0.75 of a token there: 2.5 s left, rounded up
    assert t.check("app", 9.9) == 1
    assert t.check("app", 10.0) is None


def test_refill_at_rate() -> None:
    t = bucket(rate=2, burst=2)
    assert t.check("app", 0.0) is None
    assert t.check("app", 0.0) is None
    assert t.check("app", 0.0) is not None
    assert t.check("app", 0.5) is None  # 0.5 s * 2/s = one token
    assert t.check("app", 0.5) is not None
    assert t.check("app", 1.5) is None
    assert t.check("app", 1.5) is None
    assert t.check("app", 1.5) is not None


def test_idle_time_never_grows_the_bucket_past_burst() -> None:
    t = bucket(rate=100, burst=3)
    assert t.check("app", 0.0) is None
    allowed = [t.check("app", 1_000_000.0) for _ in range(5)]
    assert allowed == [None, None, None, 1, 1]


def test_buckets_are_per_application() -> None:
    t = bucket(rate=1, burst=1)
    assert t.check("alice", 0.0) is None
    assert t.check("alice", 0.0) == 1
    assert t.check("bob", 0.0) is None  # bob is not punished for alice's traffic
    assert t.check("carol", 0.0) is None
    assert t.check("bob", 0.0) == 1


def test_disabled_throttle_allows_everything() -> None:
    t = bucket(rate=1, burst=1, enabled=False)
    assert all(t.check("app", 0.0) is None for _ in range(10_000))


def test_steady_rate_just_under_the_limit_is_never_refused() -> None:
    t = bucket(rate=10, burst=1)
    now = 0.0
    for _ in range(1000):
        assert t.check("app", now) is None
        now += 0.101  # 9.9 requests per second


def test_sustained_overload_admits_exactly_the_rate() -> None:
    t = bucket(rate=5, burst=5)
    admitted = 0
    for step in range(1000):  # 100 requests per second for 10 s
        if t.check("app", step * 0.01) is None:
            admitted += 1
    assert admitted == 5 + math.floor(9.99 * 5)


def test_wall_clock_stepping_back_does_not_drain_the_bucket() -> None:
    t = bucket(rate=1, burst=3)
    assert t.check("app", 1000.0) is None
    # NTP steps the wall clock back an hour: the app must not be throttled for that hour
    assert t.check("app", -2600.0) is None
    assert t.check("app", -2600.0) is None
    wait = t.check("app", -2600.0)
    assert wait == 1
    assert t.check("app", -2599.0) is None


def test_defaults_follow_graph_limits() -> None:
    config = ThrottleConfig()
    assert config.enabled
    assert config.rate * 15 == pytest.approx(50_000, rel=0.01)  # 50 000 requests per 15 s per app


@pytest.mark.parametrize(
    "kwargs", [{"rate": 0}, {"rate": -1}, {"rate": float("nan")}, {"burst": 0}, {"burst": 0.5}, {"burst": -3}]
)
def test_nonsensical_configuration_is_refused_up_front(kwargs: dict[str, float]) -> None:
    # rate 0 used to divide by zero on the first throttled request (a 500); burst < 1 refused every request
    with pytest.raises(ValueError, match=f"^{next(iter(kwargs))}: expected"):
        ThrottleConfig(**kwargs)
