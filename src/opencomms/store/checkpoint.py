"""WAL checkpoints in a thread of their own, so that the event loop that owns a SqliteStore never pays for them.

SQLite's automatic checkpoint runs inside the commit that crosses the threshold: it copies the WAL back into the
database file and fsyncs both, a stall of the owner's event loop that grows with the write rate (at 200 calls/s a
node saw SIP answers late enough to fail calls). Here a second connection runs PASSIVE checkpoints every
`interval` seconds: they never block the writer, and sqlite releases the GIL while it does the I/O.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger("opencomms.store")


class Checkpointer:
    """Runs `PRAGMA wal_checkpoint(PASSIVE)` on `path` every `interval` seconds until closed."""

    def __init__(self, path: str, *, interval: float = 0.5) -> None:
        self._path = path
        self._interval = interval
        self._stop = threading.Event()
        self.runs = 0
        """Checkpoints run."""
        self._thread = threading.Thread(target=self._run, name="opencomms-sqlite-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error:
            log.warning("no WAL checkpoint thread: cannot open the database", exc_info=True)
            return
        try:
            while not self._stop.wait(self._interval):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.runs += 1
                except sqlite3.Error as exc:  # e.g. busy: the next round tries again
                    log.debug("WAL checkpoint skipped: %s", exc)
        finally:
            db.close()

    def close(self) -> None:
        """Stop the thread (waits for a checkpoint in progress). Idempotent."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(10)
