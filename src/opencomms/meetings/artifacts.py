"""Meeting transcripts and recordings as stored artifacts: Graph's `callTranscript` and `callRecording` of an
onlineMeeting, their files, and when they are deleted.

Owns the artifact index (store kind "meetingArtifact"), the files (`{id}.vtt`, `{id}.wav`, 0600, in the node's
recordings directory, written atomically) and the purge: an artifact is deleted `retention_seconds` after it was
made (the node's `[media] recording_max_age`). The live side that makes them is calling/meeting_artifacts.py; the
routes are api/routes/meeting_artifacts.py. Knows nothing of HTTP or of the media engine.

A transcript is WebVTT with one cue per utterance and Graph's speaker voice tags (`<v Speaker Name>text</v>`); a
recording is the meeting's mix while the recording status was `recording`, 16 kHz mono WAV (Graph gives mp4).
A transcript and the recording of the same recording period share `contentCorrelationId`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opencomms.domain.ids import is_guid, new_id, normalize_id
from opencomms.store import files
from opencomms.store.base import Store

__all__ = ["KIND", "Artifact", "ArtifactStore", "Cue", "to_vtt"]

log = logging.getLogger("opencomms.meetings")

KIND = "meetingArtifact"
TRANSCRIPT = "transcript"
RECORDING = "recording"
_SUFFIX = {TRANSCRIPT: ".vtt", RECORDING: ".wav"}


@dataclass(frozen=True, slots=True)
class Cue:
    """One utterance of a transcript: seconds since the recording period began, the speaker's name, the text."""

    start: float
    end: float
    speaker: str
    text: str


def _stamp(seconds: float) -> str:
    ms = max(0, round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def _clean(text: str) -> str:
    """Cue text cannot hold '-->' nor blank lines, and '<', '>' and '&' are markup."""
    one_line = " ".join(text.split())
    return one_line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(cues: Sequence[Cue]) -> str:
    """WebVTT with voice tags, as Graph's transcript content (`text/vtt`)."""
    out = ["WEBVTT", ""]
    for cue in sorted(cues, key=lambda c: (c.start, c.end)):
        speaker = _clean(cue.speaker).replace(">", "") or "Unknown"
        timing = f"{_stamp(cue.start)} --> {_stamp(max(cue.end, cue.start))}"
        out += [timing, f"<v {speaker}>{_clean(cue.text)}</v>", ""]
    return "\n".join(out)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Artifact:
    id: str
    kind: str
    """"transcript" or "recording"."""
    meeting_id: str
    tenant_id: str
    organizer_id: str
    call_id: str
    correlation_id: str
    started_at: float
    ended_at: float
    created_at: float
    delete_at: float
    size: int

    def to_doc(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Artifact:
        return cls(**{name: doc[name] for name in cls.__slots__})

    def graph(self, base_url: str) -> dict[str, Any]:
        """Graph's callTranscript / callRecording JSON; `base_url` is `{public}/v1.0/users/{userId}` (or `/me`)."""
        collection = "transcripts" if self.kind == TRANSCRIPT else "recordings"
        url = f"{base_url}/onlineMeetings/{self.meeting_id}/{collection}/{self.id}/content"
        return {
            "id": self.id,
            "meetingId": self.meeting_id,
            "callId": self.call_id,
            "contentCorrelationId": self.correlation_id,
            "createdDateTime": _iso(self.started_at),
            "endDateTime": _iso(self.ended_at),
            ("transcriptContentUrl" if self.kind == TRANSCRIPT else "recordingContentUrl"): url,
            "meetingOrganizer": {
                "application": None,
                "device": None,
                "user": {"id": self.organizer_id, "displayName": None, "tenantId": self.tenant_id},
            },
        }


class ArtifactStore:
    def __init__(
        self,
        directory: str | Path,
        store: Store,
        *,
        retention_seconds: float = 86400.0,
        clock: Callable[[], float] = time.time,
        on_saved: Callable[[Artifact], None] | None = None,
    ) -> None:
        self.dir = Path(directory)
        self.store = store
        self.retention_seconds = retention_seconds
        self.clock = clock
        self.on_saved = on_saved
        """Told of every artifact saved (change notifications); its failure is logged, never raised."""

    def _path(self, artifact_id: str, kind: str) -> Path:
        return self.dir / f"{artifact_id}{_SUFFIX[kind]}"

    def save(
        self,
        kind: str,
        *,
        meeting_id: str,
        tenant_id: str,
        organizer_id: str,
        call_id: str,
        correlation_id: str,
        started_at: float,
        ended_at: float,
        data: bytes,
    ) -> Artifact:
        files.private_dir(self.dir)
        now = self.clock()
        artifact = Artifact(
            new_id(),
            kind,
            meeting_id,
            tenant_id,
            organizer_id,
            call_id,
            correlation_id,
            started_at,
            ended_at,
            now,
            now + self.retention_seconds,
            len(data),
        )
        path = self._path(artifact.id, kind)
        tmp = path.with_suffix(".part")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, files.FILE_MODE)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        try:
            self.store.put(KIND, artifact.id, artifact.to_doc())
        except BaseException:  # not indexed: no purge would ever find the file
            path.unlink(missing_ok=True)
            raise
        log.info("meeting %s saved", kind, extra={"meeting_id": meeting_id, "artifact_id": artifact.id})
        if self.on_saved is not None:
            try:
                self.on_saved(artifact)
            except Exception:
                log.exception("meeting artifact notification failed")
        return artifact

    def list(self, meeting_id: str, kind: str) -> list[Artifact]:
        """The meeting's artifacts of `kind` that are not due for deletion, oldest first."""
        now = self.clock()
        found = [Artifact.from_doc(doc) for _, doc in self.store.scan(KIND)]
        kept = [a for a in found if a.meeting_id == meeting_id and a.kind == kind and a.delete_at > now]
        return sorted(kept, key=lambda a: (a.started_at, a.id))

    def get(self, meeting_id: str, kind: str, artifact_id: str) -> Artifact | None:
        doc = self.store.get(KIND, normalize_id(artifact_id)) if is_guid(artifact_id) else None
        if doc is None:
            return None
        artifact = Artifact.from_doc(doc)
        if artifact.meeting_id != meeting_id or artifact.kind != kind or artifact.delete_at <= self.clock():
            return None
        return artifact

    def content(self, artifact: Artifact) -> bytes | None:
        try:
            return self._path(artifact.id, artifact.kind).read_bytes()
        except FileNotFoundError:
            return None

    def purge_due(self) -> int:
        """Delete every artifact whose time has come; returns how many."""
        now = self.clock()
        deleted = 0
        for key, doc in list(self.store.scan(KIND)):
            if doc["delete_at"] <= now:
                self._path(key, doc["kind"]).unlink(missing_ok=True)
                self.store.delete(KIND, key)
                deleted += 1
        if deleted:
            log.info("meeting artifacts deleted", extra={"count": deleted})
        return deleted
