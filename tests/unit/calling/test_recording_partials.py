"""Partial recordings (`.part`) never stay behind: a failed write removes its own, start-up and the periodic purge
remove a crash's; the recordings directory is private (0700)."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from opencomms.calling.recordings import PARTIAL_GRACE, RecordingStore
from opencomms.store import StoreUnavailable
from opencomms.store.memory import MemoryStore


def test_a_failed_write_leaves_no_part_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recs = RecordingStore(tmp_path / "rec", MemoryStore())

    def full(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError):
        recs.save(call_id="c1", app_id="a", tenant_id="t", wav=b"RIFF")
    assert list((tmp_path / "rec").iterdir()) == []
    assert stat.S_IMODE((tmp_path / "rec").stat().st_mode) == 0o700


def test_start_removes_every_part_and_the_purge_only_old_ones(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    rec.mkdir()
    os.chmod(rec, 0o755)
    (rec / "a.part").write_bytes(b"x")
    (rec / "kept.wav").write_bytes(b"RIFF")
    recs = RecordingStore(rec, MemoryStore())
    assert recs.remove_partial() == 1  # start: every .part is a crash's
    assert sorted(p.name for p in rec.iterdir()) == ["kept.wav"]
    assert stat.S_IMODE(rec.stat().st_mode) == 0o700
    old, fresh = rec / "old.part", rec / "fresh.part"
    old.write_bytes(b"x")
    fresh.write_bytes(b"x")
    past = time.time() - PARTIAL_GRACE - 5
    os.utime(old, (past, past))
    recs.purge_due()  # periodic: one being written right now is left alone
    assert not old.exists() and fresh.exists()


def test_a_recording_the_store_cannot_index_is_not_left_on_disk(tmp_path: Path) -> None:
    class FullStore(MemoryStore):
        def put(self, kind: str, key: str, doc: dict[str, object]) -> None:
            raise StoreUnavailable("store test.db is full (no space left)", reason="full")

    recs = RecordingStore(tmp_path / "rec", FullStore())
    with pytest.raises(StoreUnavailable):
        recs.save(call_id="c1", app_id="a", tenant_id="t", wav=b"RIFF")
    assert list((tmp_path / "rec").iterdir()) == []
