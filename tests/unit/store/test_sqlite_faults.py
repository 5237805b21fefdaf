"""SQLite faults become StoreUnavailable with the transaction rolled back; files are private (0600)."""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from pathlib import Path

import pytest

from opencomms.store import SqliteStore, StoreUnavailable


def _mode(path: Path | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_disk_full_rolls_back_and_recovers(tmp_path: Path) -> None:
    st = SqliteStore(str(tmp_path / "s.db"), checkpoint_thread=False)
    st.put("k", "small", {"v": 1})
    pages = st._db.execute("PRAGMA page_count").fetchone()[0]
    st._db.execute(f"PRAGMA max_page_count={pages + 2}")  # a real SQLITE_FULL, as on a full disk
    big = {"v": "x" * 200_000}
    with pytest.raises(StoreUnavailable) as err, st.transaction():
        st.put("k", "a", {"v": 2})
        st.put("k", "big", big)
    assert err.value.reason == "full" and err.value.status == 503 and err.value.retry_after
    assert st.get("k", "a") is None and st.get("k", "small") == {"v": 1}
    with pytest.raises(StoreUnavailable):
        st.put("k", "big", big)  # outside a transaction too
    st._db.execute("PRAGMA max_page_count=1073741823")  # space returns
    st.put("k", "big", big)
    assert st.get("k", "big") == big
    st.close()


def test_write_lock_held_elsewhere_fails_fast(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    st = SqliteStore(path, busy_timeout=0.05, checkpoint_thread=False)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        start = time.monotonic()
        with pytest.raises(StoreUnavailable) as err, st.transaction():
            st.put("k", "a", {})
        assert err.value.reason == "locked"
        assert time.monotonic() - start < 0.5
        assert st.get("k", "a") is None  # reads go on (WAL)
    finally:
        other.execute("ROLLBACK")
        other.close()
    with st.transaction():
        st.put("k", "a", {})
    assert st.get("k", "a") == {}
    st.close()


def test_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    st = SqliteStore(str(path), checkpoint_thread=False)
    st.put("k", "a", {})
    for suffix in ("", "-wal", "-shm"):
        assert _mode(f"{path}{suffix}") == 0o600, suffix
    st.close()
    os.chmod(path, 0o644)
    SqliteStore(str(path), checkpoint_thread=False).close()
    assert _mode(path) == 0o600  # an existing, too open store is tightened (with a warning)


def test_unopenable_store_is_one_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreUnavailable) as err:
        SqliteStore(str(blocker / "s.db"))
    assert str(blocker) in err.value.message
