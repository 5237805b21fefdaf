"""RecordingStore: files with expiring bearer tokens, deleted a set time after their call ends."""

from __future__ import annotations

from pathlib import Path

import pytest

from opencomms.calling.recording_access import FailureLimiter, FailureLimits
from opencomms.calling.recordings import DENIED, RecordingPolicy, RecordingStore
from opencomms.domain.errors import NotFound, Throttled
from opencomms.store.memory import MemoryStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def recs(tmp_path: Path, clock: Clock) -> RecordingStore:
    policy = RecordingPolicy(token_seconds=60, retention_seconds=30, max_age_seconds=600)
    return RecordingStore(tmp_path / "rec", MemoryStore(), policy=policy, clock=clock)


def test_saved_recording_opens_with_its_token_only(recs: RecordingStore) -> None:
    saved = recs.save(call_id="c1", app_id="a", tenant_id="t", wav=b"RIFF....")
    assert recs.open(saved.id, saved.token) == b"RIFF...."
    assert recs.open(saved.id.upper(), saved.token) == b"RIFF...."
    with pytest.raises(NotFound):
        recs.open(saved.id, saved.token + "x")
    with pytest.raises(NotFound):
        recs.open(saved.id, "")
    with pytest.raises(NotFound):
        recs.open("not-a-guid", saved.token)
    other = recs.save(call_id="c1", app_id="a", tenant_id="t", wav=b"other")
    with pytest.raises(NotFound):
        recs.open(other.id, saved.token)  # a token opens its own recording only
    doc = recs.store.get("recording", saved.id)
    assert doc is not None and saved.token not in str(doc)  # only a hash is stored
    assert (recs.dir / f"{saved.id}.wav").stat().st_mode & 0o077 == 0


def test_token_expires(recs: RecordingStore, clock: Clock) -> None:
    saved = recs.save(call_id="c1", app_id="a", tenant_id="t", wav=b"x")
    clock.now += 61
    with pytest.raises(NotFound) as caught:
        recs.open(saved.id, saved.token)
    assert caught.value.message == DENIED  # expired says no more than unknown


def test_deleted_after_the_call_ends(recs: RecordingStore, clock: Clock) -> None:
    saved = recs.save(call_id="c1", app_id="a", tenant_id="t", wav=b"x")
    keep = recs.save(call_id="c2", app_id="a", tenant_id="t", wav=b"y")
    assert recs.purge_due() == 0
    recs.call_ended("c1")
    clock.now += 29
    assert recs.purge_due() == 0
    clock.now += 2
    assert recs.purge_due() == 1
    assert not (recs.dir / f"{saved.id}.wav").exists()
    with pytest.raises(NotFound):
        recs.open(saved.id, saved.token)
    assert recs.open(keep.id, keep.token) == b"y"


def test_max_age_and_orphans(recs: RecordingStore, clock: Clock) -> None:
    old = recs.save(call_id="live", app_id="a", tenant_id="t", wav=b"x")
    orphan = recs.save(call_id="gone", app_id="a", tenant_id="t", wav=b"y")
    assert recs.purge_due(live_calls={"live"}) == 0  # the orphan is scheduled, not deleted at once
    clock.now += 31
    assert recs.purge_due(live_calls={"live"}) == 1
    with pytest.raises(NotFound):
        recs.open(orphan.id, orphan.token)
    clock.now += 600
    assert recs.purge_due(live_calls={"live"}) == 1
    assert recs.count() == 0
    with pytest.raises(NotFound):
        recs.open(old.id, old.token)


def test_call_end_touches_only_its_own_recordings(recs: RecordingStore, clock: Clock) -> None:
    """A call's end reads its own recordings, not every recording kept (the index follows saves and purges)."""
    mine = recs.save(call_id="c1", app_id="a", tenant_id="t", wav=b"x")
    for i in range(20):
        recs.save(call_id=f"other{i}", app_id="a", tenant_id="t", wav=b"y")
    reads: list[str] = []
    get = recs.store.get
    recs.store.get = lambda kind, key: reads.append(key) or get(kind, key)  # type: ignore[method-assign]
    recs.call_ended("c1")
    assert reads == [mine.id]
    clock.now += 31
    assert recs.purge_due() == 1
    assert recs.count() == 20
    fresh = RecordingStore(recs.dir, recs.store, policy=recs.policy, clock=clock)  # after a restart
    fresh.call_ended("other3")
    clock.now += 31
    assert fresh.purge_due() == 1 and fresh.count() == 19


def _failure(recs: RecordingStore, rec_id: str, token: str, source: str = "1.2.3.4") -> str:
    with pytest.raises(NotFound) as caught:
        recs.open(rec_id, token, source)
    return caught.value.message


def test_every_failure_looks_the_same(recs: RecordingStore, clock: Clock) -> None:
    """Unknown id, malformed id, wrong token, expired token, deleted recording, missing file: one error."""
    recs.limiter = FailureLimiter(FailureLimits(burst=100))
    saved = recs.save(call_id="c1", app_id="a", tenant_id="t", wav=b"x")
    gone = recs.save(call_id="c2", app_id="a", tenant_id="t", wav=b"y")
    (recs.dir / f"{gone.id}.wav").unlink()
    messages = {
        _failure(recs, "3f2504e0-4f89-41d3-9a0c-0305e82c3301", saved.token),
        _failure(recs, "not-a-guid", saved.token),
        _failure(recs, saved.id, "wrong"),
        _failure(recs, gone.id, gone.token),
    }
    clock.now += 61
    messages.add(_failure(recs, saved.id, saved.token))
    recs.call_ended("c1")
    clock.now += 600
    recs.purge_due()
    messages.add(_failure(recs, saved.id, saved.token))
    assert messages == {DENIED}


def test_failures_are_throttled_per_source_and_per_recording(recs: RecordingStore, clock: Clock) -> None:
    recs.limiter = FailureLimiter(FailureLimits(burst=3, per_minute=6))
    saved = recs.save(call_id="c1", app_id="a", tenant_id="t", wav=b"x")
    for _ in range(3):
        _failure(recs, saved.id, "guess", source="10.0.0.1")
    with pytest.raises(Throttled) as caught:  # even the right token waits: checked before the lookup
        recs.open(saved.id, saved.token, "10.0.0.2")
    assert caught.value.retry_after == 10
    with pytest.raises(Throttled):  # the source is out of attempts for every id
        recs.open("3f2504e0-4f89-41d3-9a0c-0305e82c3301", "x", "10.0.0.1")
    _failure(recs, "3f2504e0-4f89-41d3-9a0c-0305e82c3301", "x", source="10.0.0.3")  # others may still try
    reads: list[str] = []
    get = recs.store.get
    recs.store.get = lambda kind, key: reads.append(key) or get(kind, key)  # type: ignore[method-assign]
    with pytest.raises(Throttled):
        recs.open(saved.id, "guess", "10.0.0.9")
    assert reads == []  # refused before any work
    clock.now += 10
    assert recs.open(saved.id, saved.token, "10.0.0.2") == b"x"  # refilled; success costs nothing
    assert recs.open(saved.id, saved.token, "10.0.0.2") == b"x"


def test_limiter_memory_is_bounded() -> None:
    limiter = FailureLimiter(FailureLimits(burst=2, per_minute=60, max_keys=100))
    for i in range(1000):
        limiter.failed((f"src:{i}",), float(i))
    assert len(limiter) <= 100
    limiter.failed(("src:x",), 2000.0)
    limiter.failed(("src:x",), 2000.0)
    assert limiter.wait(("src:x",), 2000.0) == 1
    assert limiter.wait(("src:x",), 2001.0) is None
