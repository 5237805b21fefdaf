"""The signing keyring in a key file of its own: 0600, created if missing, moved out of the store, rotated."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from opencomms.auth.keystore import KIND, load_keyring, rotate_if_due, save_keyring
from opencomms.store import MemoryStore

DAY = 86400.0


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_key_file_is_created_private_and_reloaded(tmp_path: Path) -> None:
    store, key_file = MemoryStore(), tmp_path / "keys" / "signing.json"
    ring = load_keyring(store, 1000.0, str(key_file))
    assert _mode(key_file) == 0o600
    assert list(store.scan(KIND)) == []  # no private key in the store
    again = load_keyring(MemoryStore(), 2000.0, str(key_file))  # another node on the same file
    assert again.active.kid == ring.active.kid


def test_store_keys_move_to_the_key_file(tmp_path: Path) -> None:
    store, key_file = MemoryStore(), tmp_path / "signing.json"
    before = load_keyring(store, 1000.0)
    assert list(store.scan(KIND))
    moved = load_keyring(store, 2000.0, str(key_file))
    assert moved.active.kid == before.active.kid  # tokens signed before stay valid
    assert list(store.scan(KIND)) == []


def test_rotation_through_the_key_file(tmp_path: Path) -> None:
    store, key_file = MemoryStore(), str(tmp_path / "signing.json")
    node_a = load_keyring(store, 0.0, key_file)
    node_b = load_keyring(store, 0.0, key_file)
    assert rotate_if_due(store, node_a, 31 * DAY, 30 * DAY, 3600.0, key_file)
    assert not rotate_if_due(store, node_b, 31 * DAY, 30 * DAY, 3600.0, key_file)  # it sees A's rotation
    assert node_b.active.kid == node_a.active.kid
    assert load_keyring(store, 31 * DAY, key_file).active.kid == node_a.active.kid


def test_a_too_open_key_file_is_tightened(tmp_path: Path) -> None:
    store, key_file = MemoryStore(), tmp_path / "signing.json"
    save_keyring(store, load_keyring(store, 0.0, str(key_file)), str(key_file))
    os.chmod(key_file, 0o644)
    load_keyring(store, 0.0, str(key_file))
    assert _mode(key_file) == 0o600
