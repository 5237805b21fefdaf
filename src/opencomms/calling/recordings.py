"""Recordings made by recordResponse: WAV files on disk, an index in the store, expiring access tokens.

Owns where a recording lives, who may download it (the holder of its recordingAccessToken, until the token
expires) and when it is deleted (a configurable time after its call ends, and never later than a hard maximum
age). It stores only a SHA-256 of each token. It knows nothing of HTTP or of the media engine.

A download that fails for any reason (unknown or malformed id, wrong token, expired token, recording deleted or
its file gone) fails with one and the same error, so that nobody learns whether a recording id exists; tokens are
compared in constant time, against a dummy digest when the id is unknown. Failures are throttled per source
address and per recording id (`recording_access.FailureLimiter`), checked before the store is read.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from opencomms.calling.recording_access import FailureLimiter, FailureLimits
from opencomms.domain.errors import NotFound, Throttled
from opencomms.domain.ids import is_guid, new_id, normalize_id
from opencomms.store import files
from opencomms.store.base import Store

log = logging.getLogger("opencomms.recordings")

KIND = "recording"
DENIED = "No such recording, or the access token is not valid for it."
"""The one message of every failed download: unknown, expired, deleted and wrong token look alike."""
_DUMMY_DIGEST = "0" * 64

PARTIAL_GRACE = 60.0
"""Seconds a `.part` file may live before the periodic purge takes it for the leftover of a crash."""


@dataclass(frozen=True, slots=True)
class RecordingPolicy:
    token_seconds: float = 3600.0
    """How long a recordingAccessToken is valid after the recording is made."""
    retention_seconds: float = 3600.0
    """How long a recording is kept after its call ends."""
    max_age_seconds: float = 86400.0
    """Hard limit: a recording is deleted this long after it was made, even if its call is still going on."""


@dataclass(frozen=True, slots=True)
class SavedRecording:
    id: str
    token: str
    """The bearer token (shown once; only its hash is kept)."""
    token_expires_at: float
    size: int


class RecordingStore:
    def __init__(
        self,
        directory: str | Path,
        store: Store,
        *,
        policy: RecordingPolicy = RecordingPolicy(),
        clock: Callable[[], float] = time.time,
        limits: FailureLimits | None = None,
    ) -> None:
        self.dir = Path(directory)
        self.limiter = FailureLimiter(limits or FailureLimits())
        self.store = store
        self.policy = policy
        self.clock = clock
        self._by_call: dict[str, set[str]] | None = None
        """Recording ids by call, of calls not yet ended here (built from the store on first use), so that a call's
        end costs the lookups of its own recordings, not a scan of them all."""

    def _index(self) -> dict[str, set[str]]:
        if self._by_call is None:
            self._by_call = {}
            for key, doc in self.store.scan(KIND):
                self._by_call.setdefault(doc["call_id"], set()).add(key)
        return self._by_call

    def _path(self, rec_id: str) -> Path:
        return self.dir / f"{rec_id}.wav"

    def save(self, *, call_id: str, app_id: str, tenant_id: str, wav: bytes) -> SavedRecording:
        """Write the file (atomically) and index it; returns the id and the one-time token."""
        files.private_dir(self.dir)
        rec_id = new_id()
        token = secrets.token_urlsafe(32)
        now = self.clock()
        path = self._path(rec_id)
        tmp = path.with_suffix(".part")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, files.FILE_MODE)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(wav)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)  # a failed write (disk full) leaves nothing behind
        expires = now + self.policy.token_seconds
        doc = {
            "id": rec_id,
            "call_id": call_id,
            "app_id": app_id,
            "tenant_id": tenant_id,
            "token_sha256": _digest(token),
            "token_expires_at": expires,
            "created_at": now,
            "delete_at": now + self.policy.max_age_seconds,
            "size": len(wav),
        }
        try:
            self.store.put(KIND, rec_id, doc)
        except BaseException:  # not indexed (store full or locked): no purge would ever find the file
            path.unlink(missing_ok=True)
            raise
        if self._by_call is not None:
            self._by_call.setdefault(call_id, set()).add(rec_id)
        return SavedRecording(rec_id, token, expires, len(wav))

    def open(self, rec_id: str, token: str, source: str = "") -> bytes:
        """The WAV bytes, for the holder of a valid token. Otherwise NotFound (always the same message), or
        Throttled once `source` or `rec_id` has failed too often."""
        keys = (f"src:{source}", f"rec:{rec_id.lower()[:64]}")
        now = self.clock()
        wait = self.limiter.wait(keys, now)
        if wait is not None:
            raise Throttled("Too many failed recording downloads; retry later.", wait)
        data = self._open(rec_id, token, now)
        if data is None:
            self.limiter.failed(keys, now)
            raise NotFound(DENIED)
        return data

    def _open(self, rec_id: str, token: str, now: float) -> bytes | None:
        doc = self.store.get(KIND, normalize_id(rec_id)) if is_guid(rec_id) else None
        expected = _DUMMY_DIGEST if doc is None else str(doc["token_sha256"])
        matches = hmac.compare_digest(expected, _digest(token))  # always one digest and one comparison
        if doc is None or not token or not matches:
            return None
        if doc["delete_at"] <= now or doc["token_expires_at"] <= now:
            return None
        try:
            return self._path(doc["id"]).read_bytes()
        except FileNotFoundError:
            return None

    def call_ended(self, call_id: str) -> None:
        """Schedule deletion of the call's recordings `retention_seconds` from now."""
        due = self.clock() + self.policy.retention_seconds
        for key in sorted(self._index().pop(call_id, ())):
            doc = self.store.get(KIND, key)
            if doc is not None and doc["delete_at"] > due:
                self.store.put(KIND, key, {**doc, "delete_at": due})

    def purge_due(self, live_calls: set[str] | None = None) -> int:
        """Delete every recording whose time has come; with `live_calls`, recordings of calls that no longer
        exist (a node that was down when they ended) are scheduled first. Returns how many were deleted."""
        now = self.clock()
        deleted = 0
        for key, doc in list(self.store.scan(KIND)):
            due = doc["delete_at"]
            if live_calls is not None and doc["call_id"] not in live_calls:
                due = min(due, doc.get("ended_at") or now + self.policy.retention_seconds)
                if "ended_at" not in doc:
                    self.store.put(KIND, key, {**doc, "ended_at": due, "delete_at": due})
            if due <= now:
                self._path(key).unlink(missing_ok=True)
                self.store.delete(KIND, key)
                deleted += 1
                if self._by_call is not None:
                    keys = self._by_call.get(doc["call_id"])
                    if keys is not None:
                        keys.discard(key)
                        if not keys:
                            del self._by_call[doc["call_id"]]
        if deleted:
            log.info("recordings deleted", extra={"count": deleted})
        self.remove_partial(PARTIAL_GRACE)
        return deleted

    def remove_partial(self, older_than: float | None = None) -> int:
        """Delete `.part` files (recordings a crash or a full disk cut short): all of them at start, those older
        than `older_than` seconds later on; make the directory private (0700). Returns how many were deleted."""
        if not self.dir.is_dir():
            return 0
        files.tighten(self.dir, files.DIR_MODE)
        removed = 0
        now = time.time()  # file times are wall-clock, whatever clock the store uses
        for part in self.dir.glob("*.part"):
            try:
                if older_than is None or part.stat().st_mtime <= now - older_than:
                    part.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        if removed:
            log.warning("partial recordings removed", extra={"count": removed})
        return removed

    def count(self) -> int:
        return sum(1 for _ in self.store.scan(KIND))

    def call_ids(self) -> set[str]:
        """The calls that have recordings in the index (of this node or, on a shared store, of any node)."""
        return {str(doc["call_id"]) for _, doc in self.store.scan(KIND)}


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
