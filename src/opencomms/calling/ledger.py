"""The conversation aggregate behind the async ledger (`store.ledger`): its index and its commands as units.

`calling.core` runs every command of the node through the ledger; this module is what the ledger needs of the
aggregate: `conversation_index` (the legs the store indexes and the earliest timer), `conversation_delta` (what a
commit writes: the header, and the parts of the legs and roster entries that changed) and `conversation_ledger`.
The re-runnable unit that applies one command is `calling.core.Core.unit`.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Collection

from opencomms.domain.conversation import Conversation
from opencomms.store.base import Doc
from opencomms.store.conversations import ConversationStore, Delta
from opencomms.store.ledger import Index, Ledger

__all__ = ["conversation_delta", "conversation_index", "conversation_ledger"]

LEGS = "legs/"
PARTICIPANTS = "roster.participants/"
"""Part key prefixes: a leg's part is appended to the document's `legs`, a roster entry's to `roster.participants`."""

VERIFY_DELTAS = os.environ.get("OPENCOMMS_VERIFY_DELTAS", "") not in ("", "0")
"""Check every delta against the whole document (tests: a change a command made but did not report fails loudly)."""
_mirrors: weakref.WeakKeyDictionary[Conversation, tuple[dict[str, Doc], set[str]]] = weakref.WeakKeyDictionary()


def conversation_index(conv: Conversation) -> Index:
    """What the store indexes of a conversation: its legs (leg id -> conversation) and its earliest deadline."""
    return Index(frozenset(conv.legs), conv.next_deadline())


def conversation_ledger(store: ConversationStore, **options: object) -> Ledger[Conversation]:
    """A ledger of conversations on `store`, written in parts (options: release, publish, retries, cache_size)."""
    return Ledger(store, Conversation, index=conversation_index, delta=conversation_delta, **options)  # type: ignore[arg-type]


def _all_parts(conv: Conversation) -> list[tuple[str, Doc]]:
    return [(LEGS + leg.id, leg.to_doc()) for leg in conv.legs.values()] + [
        (PARTICIPANTS + p.id, p.to_doc()) for p in conv.roster.entries()
    ]


def conversation_delta(conv: Conversation) -> Delta:
    """What to write of `conv`: its header and the parts of what changed since its last write (every part the first
    time). O(changed legs and roster entries)."""
    changes = conv.take_changes()

    def whole() -> tuple[Doc, Collection[str]]:
        return conv.to_doc(), tuple(conv.legs)

    if changes.whole:
        legs = tuple(conv.legs)
        delta = Delta(
            conv.header_doc(),
            whole,
            _all_parts(conv),
            complete=True,
            legs_added=legs,
            deadline=conv.next_deadline(),
        )
    else:
        leg_of, entry_of = conv.legs, conv.roster.get
        parts = [(LEGS + leg_id, leg_of[leg_id].to_doc()) for leg_id in changes.legs]
        for pid in changes.participants:
            entry = entry_of(pid)
            if entry is not None:
                parts.append((PARTICIPANTS + pid, entry.to_doc()))
        removed = [LEGS + leg_id for leg_id in changes.legs_gone]
        removed += [PARTICIPANTS + pid for pid in changes.participants_left]
        delta = Delta(
            conv.header_doc(),
            whole,
            parts,
            removed,
            legs_added=changes.legs_new,
            legs_removed=changes.legs_gone,
            deadline=conv.next_deadline(),
        )
    if VERIFY_DELTAS:
        _verify(conv, delta)
    return delta


def _verify(conv: Conversation, delta: Delta) -> None:
    """Apply `delta` to the parts last written for `conv` and compare with what it holds now (tests)."""
    mirror = _mirrors.get(conv)
    if delta.complete or mirror is None:
        if not delta.complete:
            return  # verification started after its first write
        mirror = ({}, set())
        _mirrors[conv] = mirror
    parts, legs = mirror
    if delta.complete:
        parts.clear()
        legs.clear()
    for key in delta.removed:
        parts.pop(key, None)
    for key, part in delta.parts:
        parts[key] = part
    legs.difference_update(delta.legs_removed)
    legs.update(delta.legs_added)
    expected = _all_parts(conv)
    in_order = [(k, v) for k, v in parts.items() if k.startswith(LEGS)]
    in_order += [(k, v) for k, v in parts.items() if k.startswith(PARTICIPANTS)]
    if in_order != expected or legs != set(conv.legs):  # the order within each list: what `assemble` makes
        missed = [key for key, part in expected if parts.get(key) != part]
        raise AssertionError(f"conversation {conv.id}: a delta missed {missed or 'the order of its parts'}")
    first = min((d for leg in conv.legs.values() for d in leg.deadlines()), default=None)
    if first != min(conv._deadline_of.values(), default=None):
        raise AssertionError(f"conversation {conv.id}: the leg deadlines kept ({conv._deadline_of}) are stale")
