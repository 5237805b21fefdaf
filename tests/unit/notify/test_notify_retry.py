from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from opencomms.notify.retry import Outcome, RetryPolicy, classify, parse_retry_after


@pytest.mark.parametrize(
    ("status", "has_location", "expected"),
    [
        (None, False, Outcome.RETRY),
        (None, True, Outcome.RETRY),
        (200, False, Outcome.DELIVERED),
        (202, False, Outcome.DELIVERED),
        (204, False, Outcome.DELIVERED),
        (299, True, Outcome.DELIVERED),
        (301, True, Outcome.REDIRECT),
        (302, True, Outcome.REDIRECT),
        (307, True, Outcome.REDIRECT),
        (308, True, Outcome.REDIRECT),
        (302, False, Outcome.DROP),
        (307, False, Outcome.DROP),
        (300, True, Outcome.DROP),
        (303, True, Outcome.DROP),
        (304, True, Outcome.DROP),
        (400, False, Outcome.DROP),
        (401, False, Outcome.DROP),
        (403, False, Outcome.DROP),
        (404, False, Outcome.DROP),
        (405, False, Outcome.DROP),
        (410, False, Outcome.DROP),
        (413, False, Outcome.DROP),
        (408, False, Outcome.RETRY),
        (429, False, Outcome.RETRY),
        (500, False, Outcome.RETRY),
        (502, False, Outcome.RETRY),
        (503, True, Outcome.RETRY),
        (504, False, Outcome.RETRY),
        (599, False, Outcome.RETRY),
        (100, False, Outcome.DROP),
        (0, False, Outcome.DROP),
        (600, False, Outcome.DROP),
    ],
)
def test_classify(status: int | None, has_location: bool, expected: Outcome) -> None:
    assert classify(status, has_location) is expected


NOJITTER = RetryPolicy(initial_delay=0.5, multiplier=2.0, max_delay=60.0, jitter=0.0)


@pytest.mark.parametrize(
    ("attempts", "expected"),
    [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (7, 32.0), (8, 60.0), (12, 60.0), (10_000, 60.0)],
)
def test_next_delay_backoff(attempts: int, expected: float) -> None:
    assert NOJITTER.next_delay(attempts, retry_after=None, rand=0.7) == pytest.approx(expected)


@pytest.mark.parametrize(("rand", "expected"), [(0.0, 4.0), (0.5, 3.6), (0.999999, 3.2)])
def test_next_delay_jitter_takes_off_a_fraction(rand: float, expected: float) -> None:
    policy = RetryPolicy(jitter=0.2)
    assert policy.next_delay(4, retry_after=None, rand=rand) == pytest.approx(expected, abs=1e-5)


def test_next_delay_never_exceeds_max_delay_with_jitter() -> None:
    policy = RetryPolicy(jitter=0.5)
    for attempts in range(1, 40):
        for rand in (0.0, 0.3, 0.99):
            assert 0.0 <= policy.next_delay(attempts, retry_after=None, rand=rand) <= policy.max_delay


@pytest.mark.parametrize(
    ("attempts", "retry_after", "expected"),
    [
        (1, 10.0, 10.0),  # floor above the backoff wins
        (8, 10.0, 60.0),  # backoff above the floor wins
        (1, 0.0, 0.5),
        (1, 120.0, 120.0),  # may exceed max_delay
        (1, 1e9, 3600.0),  # capped at max_age
    ],
)
def test_next_delay_retry_after_is_a_floor(attempts: int, retry_after: float, expected: float) -> None:
    assert NOJITTER.next_delay(attempts, retry_after=retry_after, rand=0.0) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("attempts", "created_at", "now", "expected"),
    [
        (1, 0.0, 1.0, False),
        (11, 0.0, 100.0, False),
        (12, 0.0, 100.0, True),
        (13, 0.0, 100.0, True),
        (1, 0.0, 3599.9, False),
        (1, 0.0, 3600.0, True),
        (1, 1000.0, 4000.0, False),
    ],
)
def test_should_give_up(attempts: int, created_at: float, now: float, expected: bool) -> None:
    assert RetryPolicy().should_give_up(attempts, created_at, now) is expected


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after(" 0 ", now) == 0.0
    assert parse_retry_after("-3", now) is None
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("", now) is None
    date = format_datetime(datetime.fromtimestamp(now + 30, UTC), usegmt=True)
    assert parse_retry_after(date, now) == pytest.approx(30.0)
    past = format_datetime(datetime.fromtimestamp(now - 30, UTC), usegmt=True)
    assert parse_retry_after(past, now) == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_delay": -1.0},
        {"multiplier": 0.5},
        {"max_attempts": 0},
        {"jitter": 1.5},
        {"max_age": -1.0},
    ],
)
def test_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
