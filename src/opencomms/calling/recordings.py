"""Recordings made by recordResponse: WAV files on disk, an index in the store, expiring access tokens.

Owns where a recording lives, who may download it (the holder of its recordingAccessToken, until the token
expires) and when it is deleted (a configurable time after its call ends, and never later than a hard maximum
age). It stores only a SHA-256 of each token. It knows nothing of HTTP or of the media engine.
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

from opencomms.domain.errors import NotFound, Unauthenticated
from opencomms.domain.ids import is_guid, new_id, normalize_id
from opencomms.store import files
from opencomms.store.base import Store

log = logging.getLogger("opencomms.recordings")

KIND = "recording"

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
    ) -> None:
        self.dir = Path(directory)
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

    def open(self, rec_id: str, token: str) -> bytes:
        """The WAV bytes, for the holder of a valid token. NotFound / Unauthenticated otherwise."""
        if not is_guid(rec_id):
            raise NotFound("No such recording.")
        doc = self.store.get(KIND, normalize_id(rec_id))
        if doc is None or doc["delete_at"] <= self.clock():
            raise NotFound("No such recording: it never existed or has been deleted.")
        if not token or not hmac.compare_digest(doc["token_sha256"], _digest(token)):
            raise Unauthenticated("The recording access token is not valid for this recording.")
        if doc["token_expires_at"] <= self.clock():
            raise Unauthenticated("The recording access token has expired.")
        try:
            return self._path(doc["id"]).read_bytes()
        except FileNotFoundError:
            raise NotFound("No such recording: its file is gone.") from None

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


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
