"""The one keyed token bucket, by tables and sequences (pure: time is an argument)."""

from __future__ import annotations

import pytest

from opencomms.ratelimit import KeyedTokenBucket, retry_after


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # (now, cost) -> None (taken) or seconds to wait; rate 2/s, burst 3
        ([(0.0, 1), (0.0, 1), (0.0, 1), (0.0, 1)], [None, None, None, 0.5]),
        ([(0.0, 3), (0.25, 1), (0.5, 1)], [None, 0.25, None]),
        ([(0.0, 3), (10.0, 3)], [None, None]),  # refills up to burst, not beyond
        ([(0.0, 4)], [0.5]),  # more than burst: the wait says when it would be there
        ([(5.0, 3), (4.0, 1)], [None, 0.5]),  # the clock stepping back refills nothing
    ],
)
def test_take_sequences(steps: list[tuple[float, float]], expected: list[float | None]) -> None:
    bucket = KeyedTokenBucket(rate=2.0, burst=3.0)
    got = [bucket.take("k", now, cost) for now, cost in steps]
    assert got == pytest.approx(expected)


def test_keys_are_independent_and_wait_takes_nothing() -> None:
    bucket = KeyedTokenBucket(rate=1.0, burst=1.0)
    assert bucket.take("a", 0.0) is None
    assert bucket.wait("a", 0.0) == pytest.approx(1.0)
    assert bucket.wait("a", 0.0) == pytest.approx(1.0)
    assert bucket.take("b", 0.0) is None
    assert bucket.allow("a", 1.0) and not bucket.allow("a", 1.5)


def test_charge_never_goes_below_zero_and_give_back_refunds_up_to_burst() -> None:
    bucket = KeyedTokenBucket(rate=1.0, burst=2.0)
    for _ in range(5):
        bucket.charge("k", 0.0)
    assert bucket.level("k", 0.0) == 0.0
    assert bucket.level("k", 1.0) == pytest.approx(1.0)
    bucket.give_back("k", 5.0)
    assert bucket.level("k", 0.0) == 2.0
    bucket.give_back("unknown")  # no bucket: nothing to refund, nothing created
    assert "unknown" not in bucket


def test_memory_is_bounded_least_recently_used_forgotten_first() -> None:
    bucket = KeyedTokenBucket(rate=1.0, burst=1.0, max_keys=2)
    bucket.take("a", 0.0)
    bucket.take("b", 0.0)
    bucket.take("a", 0.0)  # refused, but touched: b is now the oldest
    bucket.take("c", 0.0)
    assert len(bucket) == 2 and "b" not in bucket and "a" in bucket
    assert bucket.take("b", 0.0) is None  # forgotten: full again


@pytest.mark.parametrize(("wait", "header"), [(0.0001, 1), (1.0, 1), (1.2, 2), (59.9, 60)])
def test_retry_after_is_whole_seconds_at_least_one(wait: float, header: int) -> None:
    assert retry_after(wait) == header


@pytest.mark.parametrize(("rate", "burst", "keys"), [(0.0, 1.0, 1), (1.0, 0.0, 1), (1.0, 1.0, 0)])
def test_bad_parameters_are_refused(rate: float, burst: float, keys: int) -> None:
    with pytest.raises(ValueError):
        KeyedTokenBucket(rate, burst, keys)
