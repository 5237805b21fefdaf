"""Admission of inbound SIP calls: a full node and a flooding source get 503 with a Retry-After that makes sense;
one source's share of the node is bounded (all its calls, its ringing ones), quiet sources find reserved room, and
what an admitted call became (started, answered, ended, abandoned, never reported) is counted right."""

from __future__ import annotations

import pytest

from opencomms.gateway.admission import Admission, AdmissionConfig, RefusalReason


def test_calls_are_admitted_until_the_node_is_full() -> None:
    admission = Admission(AdmissionConfig(max_calls=3, rate_per_source=0, source_share=1, ringing_share=1))
    verdicts = []
    for active in range(3):
        verdicts.append(admission.admit("192.0.2.1", active, 0.0))
        admission.started("192.0.2.1")
    assert verdicts == [None, None, None]
    refusal = admission.admit("192.0.2.1", 3, 0.0)
    assert refusal is not None and refusal.reason is RefusalReason.FULL
    assert refusal.status == 503 and refusal.headers == [("Retry-After", "5")]
    assert admission.stats == {
        "admitted": 3,
        "refused_full": 1,
        "refused_share": 0,
        "refused_reserved": 0,
        "refused_rate": 0,
    }


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
    admission = Admission(
        AdmissionConfig(max_calls=10_000, rate_per_source=0, burst_per_source=0, source_share=1, ringing_share=1)
    )
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
        {"source_share": 0.0},
        {"source_share": 1.5},
        {"ringing_share": 0.0},
        {"reserved_share": 1.0},
        {"quiet_source_calls": -1},
        {"pending_ttl": 0.0},
    ],
)
def test_nonsense_configuration_is_refused(changes: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AdmissionConfig(**changes)  # type: ignore[arg-type]


# --- per-source fairness -------------------------------------------------------------------------------------------

FAIR = AdmissionConfig(
    max_calls=100, rate_per_source=0, source_share=0.5, ringing_share=0.2, reserved_share=0.1, quiet_source_calls=3
)


class Node:
    """The gateway's side of the bargain: started calls are counted, and reported to the policy."""

    def __init__(self, config: AdmissionConfig = FAIR) -> None:
        self.admission = Admission(config)
        self.active = 0

    def call(self, source: str, now: float = 0.0, *, answer: bool = False) -> RefusalReason | None:
        refusal = self.admission.admit(source, self.active, now)
        if refusal is not None:
            assert refusal.status == 503
            return refusal.reason
        self.admission.started(source)
        self.active += 1
        if answer:
            self.admission.answered(source)
        return None

    def flood(self, source: str, n: int, *, answer: bool = False) -> int:
        return [self.call(source, answer=answer) for _ in range(n)].count(None)


def test_a_silent_bot_fills_only_the_flooders_ringing_share() -> None:
    node = Node()
    assert node.flood("flood", 1000) == 20  # ringing_share 0.2 of 100
    assert node.call("flood") is RefusalReason.SHARE
    assert node.admission.held("flood") == (20, 0)
    assert node.flood("quiet", 10) == 10  # another source is not touched


def test_answered_calls_are_bounded_by_the_source_share() -> None:
    node = Node()
    assert node.flood("flood", 1000, answer=True) == 50  # source_share 0.5 of 100
    assert node.admission.held("flood") == (0, 50)
    assert node.call("quiet", answer=True) is None


def test_several_flooders_leave_the_reserve_to_quiet_sources() -> None:
    node = Node()
    assert node.flood("flood0", 1000, answer=True) == 50
    assert node.flood("flood1", 1000, answer=True) == 40  # 100 - 10 reserved
    assert node.call("flood0") in (RefusalReason.SHARE, RefusalReason.RESERVED)
    # each quiet source may take quiet_source_calls (3) of the reserve, until the node is full
    assert node.flood("quiet1", 10, answer=True) == 3
    assert node.flood("quiet2", 10, answer=True) == 3
    assert node.flood("quiet3", 10, answer=True) == 3
    assert node.flood("quiet4", 10, answer=True) == 1
    assert node.call("quiet5") is RefusalReason.FULL


@pytest.mark.parametrize(
    ("steps", "held"),
    [
        (["admit"], (1, 0)),
        (["admit", "started"], (1, 0)),
        (["admit", "started", "answered"], (0, 1)),
        (["admit", "started", "answered", "ended+"], (0, 0)),
        (["admit", "started", "ended-"], (0, 0)),
        (["admit", "abandoned"], (0, 0)),
        (["admit", "admit", "abandoned"], (1, 0)),
        (["admit", "expire"], (0, 0)),
        (["admit", "started", "expire"], (1, 0)),  # a started call never expires: only its end releases it
        (["ended-", "answered", "abandoned"], (0, 0)),  # reports for unknown calls change nothing
    ],
)
def test_what_an_admitted_call_became_is_counted(steps: list[str], held: tuple[int, int]) -> None:
    admission = Admission(FAIR)
    for step in steps:
        if step == "admit":
            assert admission.admit("a", 0, 0.0) is None
        elif step == "started":
            admission.started("a")
        elif step == "answered":
            admission.answered("a")
        elif step == "ended+":
            admission.ended("a", answered=True)
        elif step == "ended-":
            admission.ended("a", answered=False)
        elif step == "abandoned":
            admission.abandoned("a")
        elif step == "expire":
            assert admission.admit("b", 0, FAIR.pending_ttl + 1) is None  # any later admission sweeps
            admission.abandoned("b")
    assert admission.held("a") == held
    if held == (0, 0):
        assert "a" not in admission._held


def test_admissions_never_reported_stop_counting_after_the_ttl() -> None:
    admission = Admission(FAIR)
    assert [admission.admit("lost", 0, 0.0) for _ in range(25)].count(None) == 20
    assert admission.admit("lost", 0, 1.0) is not None
    assert admission.admit("lost", 0, FAIR.pending_ttl + 0.1) is None
    assert admission.held("lost") == (1, 0)


def test_ended_calls_free_the_share() -> None:
    node = Node()
    assert node.flood("a", 100) == 20
    for _ in range(20):
        node.admission.ended("a", answered=False)
        node.active -= 1
    assert node.flood("a", 100) == 20


@pytest.mark.parametrize(
    ("source", "ringing", "answered", "active", "expected"),
    [
        ("a", 0, 0, 0, None),
        ("a", 19, 0, 19, None),
        ("a", 20, 0, 20, RefusalReason.SHARE),
        ("a", 0, 49, 49, None),
        ("a", 0, 50, 50, RefusalReason.SHARE),
        ("a", 2, 0, 95, None),  # quiet (2 < 3) may use the reserve
        ("a", 3, 0, 95, RefusalReason.RESERVED),
        ("a", 0, 0, 100, RefusalReason.FULL),
    ],
)
def test_decision_table(source: str, ringing: int, answered: int, active: int, expected: RefusalReason | None) -> None:
    admission = Admission(FAIR)
    for _ in range(ringing):
        admission.started(source)
    for _ in range(answered):
        admission.started(source)
        admission.answered(source)
    early = admission.would_refuse(source, active, 0.0)
    assert (early.reason if early is not None else None) is expected
    refusal = admission.admit(source, active, 0.0)
    assert (refusal.reason if refusal is not None else None) is expected


def test_would_refuse_sees_an_empty_bucket_without_taking_a_token() -> None:
    admission = Admission(AdmissionConfig(rate_per_source=1, burst_per_source=2))
    assert admission.would_refuse("a", 0, 0.0) is None
    assert admission.admit("a", 0, 0.0) is None and admission.admit("a", 0, 0.0) is None
    early = admission.would_refuse("a", 0, 0.0)
    assert early is not None and early.reason is RefusalReason.RATE and early.retry_after == 1
    assert admission.would_refuse("a", 0, 1.0) is None
    assert admission.would_refuse("b", 0, 0.0) is None
    assert admission.stats["refused_rate"] == 0
