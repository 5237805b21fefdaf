"""Persistence of the signing keyring in the store, and the rotation schedule. No HTTP, no timers."""

from __future__ import annotations

from opencomms.auth.keys import KeyRing, SigningKey
from opencomms.store.base import Store

KIND = "signing_key"


def load_keyring(store: Store, now: float) -> KeyRing:
    """The persisted keyring; a first key is made (and saved) on a fresh store."""
    keys = [SigningKey.from_doc(doc) for _, doc in store.scan(KIND)]
    if keys:
        return KeyRing(sorted(keys, key=lambda k: k.created_at))
    ring = KeyRing.empty_with_new_key(now)
    save_keyring(store, ring)
    return ring


def save_keyring(store: Store, ring: KeyRing) -> None:
    with store.transaction():
        wanted = {k.kid for k in ring.keys}
        for kid, _ in list(store.scan(KIND)):
            if kid not in wanted:
                store.delete(KIND, kid)
        for key in ring.keys:
            store.put(KIND, key.kid, key.to_doc())


def rotate_if_due(store: Store, ring: KeyRing, now: float, interval: float, max_token_lifetime: float) -> bool:
    """Rotate when the active key is older than `interval`; drop keys whose tokens have all expired."""
    changed = False
    if now - ring.active.created_at >= interval:
        ring.rotate(now)
        changed = True
    if ring.prune(now, max_token_lifetime):
        changed = True
    if changed:
        save_keyring(store, ring)
    return changed
