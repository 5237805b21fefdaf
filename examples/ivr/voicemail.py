"""Where voicemail goes: one WAV per call under `<dir>/<mailbox>/`, written atomically (temp file + rename)."""

from __future__ import annotations

import os
import re
from pathlib import Path

_SAFE = re.compile(r"[^A-Za-z0-9_-]")


def save_voicemail(directory: Path, mailbox: str, call_id: str, audio: bytes) -> Path:
    """Store a recording; saving the same call's message again replaces it (actions may run twice)."""
    box = directory / _SAFE.sub("_", mailbox)
    box.mkdir(parents=True, exist_ok=True)
    path = box / f"{_SAFE.sub('_', call_id)}.wav"
    tmp = path.with_suffix(".part")
    tmp.write_bytes(audio)
    os.replace(tmp, path)
    return path
