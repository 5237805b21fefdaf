"""The conversation aggregate behind the async ledger (`store.ledger`): its index and its commands as units.

`calling.core` runs every command of the node through the ledger; this module is what the ledger needs of the
aggregate: `conversation_index` (the legs the store indexes and the earliest timer) and `conversation_ledger`.
The re-runnable unit that applies one command is `calling.core.Core.unit`.
"""

from __future__ import annotations

from opencomms.domain.conversation import Conversation
from opencomms.store.conversations import ConversationStore
from opencomms.store.ledger import Index, Ledger

__all__ = ["conversation_index", "conversation_ledger"]


def conversation_index(conv: Conversation) -> Index:
    """What the store indexes of a conversation: its legs (leg id -> conversation) and its earliest deadline."""
    return Index(frozenset(conv.legs), conv.next_deadline())


def conversation_ledger(store: ConversationStore, **options: object) -> Ledger[Conversation]:
    """A ledger of conversations on `store` (options: release, publish, retries, cache_size)."""
    return Ledger(store, Conversation, index=conversation_index, **options)  # type: ignore[arg-type]
