"""The conversation aggregate behind the async ledger (`store.ledger`): its index and its commands as units.

`calling.core` runs every command of the node through the ledger; this module is what the ledger needs of the
aggregate: `conversation_index` (the legs the store indexes and the earliest timer), `conversation_ledger` and
`as_unit`, a re-runnable ledger command (a `StaleVersion` reruns it on the reloaded conversation) that applies one
domain command, puts or deletes the conversation and emits its events (the core's own unit adds the projected
notifications). Pure apart from what the ledger does with the unit.
"""

from __future__ import annotations

from collections.abc import Callable

from opencomms.domain import commands as c
from opencomms.domain import events as ev
from opencomms.domain.conversation import Conversation
from opencomms.domain.errors import NotFound
from opencomms.domain.rules import ConversationKind, ConversationTimeouts
from opencomms.store.conversations import ConversationStore
from opencomms.store.ledger import Index, Ledger, Unit

__all__ = ["as_unit", "conversation_index", "conversation_ledger"]


def conversation_index(conv: Conversation) -> Index:
    """What the store indexes of a conversation: its legs (leg id -> conversation) and its earliest deadline."""
    return Index(frozenset(conv.legs), conv.next_deadline())


def conversation_ledger(store: ConversationStore, **options: object) -> Ledger[Conversation]:
    """A ledger of conversations on `store` (options: release, publish, retries, cache_size)."""
    return Ledger(store, Conversation, index=conversation_index, **options)  # type: ignore[arg-type]


def as_unit(
    command: c.Command,
    now: float,
    *,
    timeouts: ConversationTimeouts | None = None,
    new: tuple[str, str, ConversationKind] | None = None,
) -> Callable[[Unit[Conversation]], list[ev.Event]]:
    """A ledger command applying `command` at `now`; `new` = (id, tenant id, kind) creates the conversation (the
    unit then expects none stored: a second creator is refused as stale)."""

    def run(unit: Unit[Conversation]) -> list[ev.Event]:
        conv = unit.state
        if conv is None:
            if new is None:
                raise NotFound(f"No conversation {unit.conv_id!r}.")
            conv = Conversation(new[0], new[1], new[2])
        if timeouts is not None:
            conv.timeouts = timeouts
        events = conv.apply(command, now)
        if not conv.legs:
            unit.delete()
        elif events or isinstance(command, c.KeepAlive | c.MoveCallback):
            unit.put(conv)
        unit.emit(*events)
        return events

    return run
