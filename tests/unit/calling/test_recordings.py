"""RecordingStore: files with expiring bearer tokens, deleted a set time after their call ends."""

from __future__ import annotations

from pathlib import Path

import pytest

from opencomms.calling.recordings import RecordingPolicy, RecordingStore
from opencomms.domain.errors import NotFound, Unauthenticated
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
    with pytest.raises(Unauthenticated):
        recs.open(saved.id, saved.token + "x")
    with pytest.raises(Unauthenticated):
        recs.open(saved.id, "")
    with pytest.raises(NotFound):
        recs.open("not-a-guid", saved.token)
    other = recs.save(call_id="c1", app_id="a", tenant_id="t", wav=b"other")
    with pytest.raises(Unauthenticated):
        recs.open(other.id, saved.token)  # a token opens its own recording only
    doc = recs.store.get("recording", saved.id)
    assert doc is not None and saved.token not in str(doc)  # only a hash is stored
    assert (recs.dir / f"{saved.id}.wav").stat().st_mode & 0o077 == 0


def test_token_expires(recs: RecordingStore, clock: Clock) -> None:
    saved = recs.save(call_id="c1", app_id="a", tenant_id="t", wav=b"x")
    clock.now += 61
    with pytest.raises(Unauthenticated, match="expired"):
        recs.open(saved.id, saved.token)


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
