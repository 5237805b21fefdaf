"""Persistence of the signing keyring, and the rotation schedule. No HTTP, no timers.

The keyring lives in the store, or, when `key_file` is given, in a JSON file of its own (0600, created if missing,
written by atomic rename, read-check-rotate-write under an exclusive lock so that nodes sharing it rotate once).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from opencomms.auth.keys import KeyRing, SigningKey
from opencomms.store import files
from opencomms.store.base import Store

KIND = "signing_key"

log = logging.getLogger("opencomms.auth")


def load_keyring(store: Store, now: float, key_file: str = "") -> KeyRing:
    """The persisted keyring, its keys parsed (`KeyRing.warm`); a first key is made (and saved) on a fresh store or
    key file."""
    ring = _load(store, now, key_file)
    ring.warm()
    return ring


def _load(store: Store, now: float, key_file: str) -> KeyRing:
    if key_file:
        with _locked(key_file):
            return _load_file(store, key_file, now)
    keys = [SigningKey.from_doc(doc) for _, doc in store.scan(KIND)]
    if keys:
        return KeyRing(sorted(keys, key=lambda k: k.created_at))
    ring = KeyRing.empty_with_new_key(now)
    # only add (never replace): nodes of a cluster starting together on a fresh store may each make a first key
    store.put(KIND, ring.active.kid, ring.active.to_doc())
    keys = [SigningKey.from_doc(doc) for _, doc in store.scan(KIND)]
    return KeyRing(sorted(keys, key=lambda k: k.created_at))


def save_keyring(store: Store, ring: KeyRing, key_file: str = "") -> None:
    if key_file:
        with _locked(key_file):
            _write_file(key_file, ring)
        return
    with store.transaction():
        wanted = {k.kid for k in ring.keys}
        for kid, _ in list(store.scan(KIND)):
            if kid not in wanted:
                store.delete(KIND, kid)
        for key in ring.keys:
            store.put(KIND, key.kid, key.to_doc())


def rotate_if_due(
    store: Store, ring: KeyRing, now: float, interval: float, max_token_lifetime: float, key_file: str = ""
) -> bool:
    """Rotate when the active key is older than `interval`; drop keys whose tokens have all expired. With a key
    file, the check runs on the file's current keys under its lock (another node may have rotated already)."""
    lock = _locked(key_file) if key_file else contextlib.nullcontext()
    with lock:
        if key_file:
            ring.replace_keys(_load_file(store, key_file, now).keys)
        changed = False
        if now - ring.active.created_at >= interval:
            ring.rotate(now)
            changed = True
        if ring.prune(now, max_token_lifetime):
            changed = True
        if changed:
            if key_file:
                _write_file(key_file, ring)
            else:
                save_keyring(store, ring)
    return changed


# -- key file ---------------------------------------------------------------------------------------------
def _load_file(store: Store, key_file: str, now: float) -> KeyRing:
    path = Path(key_file)
    if path.exists():
        files.tighten(path)
        data = json.loads(path.read_text())
        return KeyRing(sorted((SigningKey.from_doc(d) for d in data["keys"]), key=lambda k: k.created_at))
    stored = [SigningKey.from_doc(doc) for _, doc in store.scan(KIND)]
    ring = KeyRing(sorted(stored, key=lambda k: k.created_at)) if stored else KeyRing.empty_with_new_key(now)
    _write_file(key_file, ring)
    if stored:  # moved out of the store: tokens it signed stay valid, the store no longer holds a private key
        log.info("signing keys moved from the store to %s", key_file)
        with store.transaction():
            store.delete_many(KIND, [k.kid for k in stored])
    return ring


def _write_file(key_file: str, ring: KeyRing) -> None:
    files.write_private(key_file, json.dumps({"keys": [k.to_doc() for k in ring.keys]}, indent=1).encode())


@contextlib.contextmanager
def _locked(key_file: str) -> Iterator[None]:
    """An exclusive lock (flock on `<key_file>.lock`) for a read-modify-write of the key file."""
    path = Path(key_file)
    if path.parent != Path(""):
        path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(f"{key_file}.lock", os.O_RDWR | os.O_CREAT, files.FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
