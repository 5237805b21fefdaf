"""The token endpoint's secret guard: failures throttled per client and per source before hashing, refunds on
success, a remembered secret that survives someone else's flood, and a bounded number of verifications at once."""

from __future__ import annotations

import asyncio
import threading

import pytest

from opencomms.auth.secretguard import SecretGuard, SecretGuardConfig

NOW = 1_700_000_000.0
HASHES = ("scrypt$...$a",)


def guard(**changes: float) -> SecretGuard:
    return SecretGuard(SecretGuardConfig(**changes))  # type: ignore[arg-type]


def test_failures_are_throttled_per_client_then_refill() -> None:
    g = guard(failed_burst=3, failed_rate=0.5)
    assert [g.reserve("app", "10.0.0.1", NOW) for _ in range(3)] == [None, None, None]
    assert g.reserve("app", "10.0.0.2", NOW) == 2  # another address does not help: the client id is spent
    assert g.reserve("other-app", "10.0.0.2", NOW) is None
    assert g.reserve("app", "10.0.0.1", NOW + 2) is None  # one attempt back after 1 / rate seconds


def test_failures_are_throttled_per_source_across_client_ids() -> None:
    g = guard(failed_burst_per_source=2, failed_rate_per_source=1)
    assert g.reserve("a", "10.0.0.1", NOW) is None
    assert g.reserve("b", "10.0.0.1", NOW) is None
    assert g.reserve("c", "10.0.0.1", NOW) == 1
    assert g.reserve("c", "10.0.0.2", NOW) is None  # c's bucket was given back when the source refused


def test_success_refunds_and_is_remembered_until_hashes_change_or_time_passes() -> None:
    g = guard(failed_burst=1, cache_seconds=60)
    assert g.reserve("app", "s", NOW) is None
    g.succeeded("app", "s", HASHES, "right", NOW)
    assert g.reserve("app", "s", NOW) is None  # the success gave its token back
    assert g.remembered("app", HASHES, "right", NOW + 59)
    assert not g.remembered("app", HASHES, "wrong", NOW + 1)
    assert not g.remembered("app", (*HASHES, "new"), "right", NOW + 1)  # a secret added or removed: verify again
    g.succeeded("app", "s", HASHES, "right", NOW)
    assert not g.remembered("app", HASHES, "right", NOW + 60)


async def test_verify_hashes_only_within_budget_and_remembers_the_right_secret() -> None:
    g = guard(failed_burst=2)
    calls: list[str] = []

    def check(secret: str) -> bool:
        calls.append(secret)
        return secret == "right"

    assert (await g.verify("app", "s", HASHES, "right", NOW, check)).outcome == "ok"
    outcomes = [(await g.verify("app", "s", HASHES, f"w{i}", NOW, check)).outcome for i in range(5)]
    assert outcomes == ["wrong", "wrong", "throttled", "throttled", "throttled"]
    assert (await g.verify("app", "s", HASHES, "right", NOW, check)).outcome == "ok"  # not locked out
    assert calls == ["right", "w0", "w1"] and g.hashed == 3


async def test_verifications_run_in_threads_a_bounded_few_at_a_time() -> None:
    g = guard(max_checks=2, max_queued=3, failed_burst=100)
    release = threading.Event()
    running: list[int] = []
    lock = threading.Lock()
    peak = [0]

    def check(secret: str) -> bool:
        with lock:
            running.append(1)
            peak[0] = max(peak[0], len(running))
        release.wait(5)
        with lock:
            running.pop()
        return False

    tasks = [asyncio.create_task(g.verify("app", "s", HASHES, str(i), NOW, check)) for i in range(8)]
    await asyncio.sleep(0.2)  # returns although two checks block: they run in threads, not on the loop
    assert len(running) == 2
    release.set()
    verdicts = await asyncio.gather(*tasks)
    assert peak[0] == 2
    assert sorted(v.outcome for v in verdicts) == ["throttled"] * 3 + ["wrong"] * 5  # 2 running + 3 queued


def test_config_is_checked() -> None:
    with pytest.raises(ValueError):
        SecretGuardConfig(failed_rate=0)
    with pytest.raises(ValueError):
        SecretGuardConfig(max_checks=0)
