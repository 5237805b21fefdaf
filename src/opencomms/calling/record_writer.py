"""Call records for every conversation, not only SIP legs: a subscriber that writes the sessions of bot legs and
announces each finished record.

The SIP gateway writes an external leg's session (with its RTP/RTCP quality) when the leg ends. Bot legs have no RTP
of their own (their audio is mixed inside the node), so this subscriber keeps the bot legs that ended and, when the
conversation ends, writes them as sessions of its callRecord: in a peer-to-peer call between two bots, one session
for the leg that placed the call (the bot-to-bot pair); in a group call or meeting, one session per bot leg against
the conference service. A peer-to-peer call that had an external leg gets no bot session: the phone's session
already describes that pair. Then, once per conversation, `on_record(tenant_id, record_id)` tells the owner that the
record is complete (the change notifications of callRecords subscriptions are submitted there).

The records live in the node's store, not in the conversation store: the writer hears the conversation's events
once its unit of work has committed (`committed`, never for a change that did not land, once per commit) and writes
the record and the notifications it causes in one transaction of that store (`transaction`: the dispatcher's, so the
notifications are durable in the outbox with the record and leave only if it commits). The ended legs wait in memory
until their conversation ends (bounded by the live conversations); a restart in between, or a crash between the
conversation's commit and the record's, loses the bot sessions of those conversations, never a SIP leg's session.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

from opencomms.calling import records
from opencomms.calling.model import Call
from opencomms.calling.subscribers import Batch, Subscriber
from opencomms.domain import events as ev
from opencomms.domain.calls import CallDirection
from opencomms.domain.legs import LegKind
from opencomms.domain.results import ResultInfo
from opencomms.domain.rules import ConversationKind
from opencomms.store.base import Store

__all__ = ["CallRecordWriter"]

log = logging.getLogger("opencomms.records")


class CallRecordWriter(Subscriber):
    """Writes bot legs' sessions when their conversation ends, then reports the record as created."""

    def __init__(
        self,
        store: Store,
        clock: Callable[[], float],
        *,
        on_record: Callable[[str, str], None] | None = None,
        transaction: Callable[[], AbstractContextManager[None]] = nullcontext,
    ) -> None:
        self.store = store
        self.clock = clock
        self.on_record = on_record
        """Called with (tenant id, record id) once the conversation's record is complete."""
        self.transaction = transaction
        """Groups the record's write with the notifications it causes (the dispatcher's transaction)."""
        self._ended: dict[str, list[tuple[Call, ResultInfo, float]]] = {}
        self._external: set[str] = set()
        self.written = 0
        """Records completed (for tests and the console)."""

    def committed(self, batch: Batch, event: ev.Event) -> None:
        """After the conversation's unit of work committed: the record and its notifications are written in one
        transaction of the node's store when the conversation ends."""
        kind = getattr(event, "kind", None)
        if isinstance(kind, LegKind) and kind.external:
            self._external.add(batch.conversation_id)
        if isinstance(event, ev.LegEnded) and event.kind is LegKind.BOT:
            call = batch.view(event.leg)
            self._ended.setdefault(batch.conversation_id, []).append((call, event.result, self.clock()))
        elif isinstance(event, ev.ConversationEnded):
            try:
                self._finish(batch)
            except Exception:  # a record must never fail the call's end
                log.exception("call record not written", extra={"callChainId": batch.conversation_id})

    def _finish(self, batch: Batch) -> None:
        conv_id = batch.conversation_id
        ended = self._ended.pop(conv_id, [])
        external = conv_id in self._external
        self._external.discard(conv_id)
        peer_to_peer = batch.kind is ConversationKind.PEER_TO_PEER
        if peer_to_peer:
            if external:
                ended = []
            else:
                placed = [e for e in ended if e[0].direction is CallDirection.OUTGOING]
                ended = (placed or ended)[:1]
        with self.transaction():
            worth = [e for e in ended if e[0].connected or e[1].code >= 400]
            wrote = records.record_legs(self.store, worth, group=not peer_to_peer, fresh=not external) is not None
            # an external leg's session is written by its gateway when it hears the leg end (a subscriber before
            # this one): the record is read, not assumed fresh
            if not (wrote or external) and self.store.get(records.KIND, conv_id) is None:
                return  # nothing happened worth a record (a call that only rang and was withdrawn)
            self.written += 1
            if self.on_record is not None:
                self.on_record(batch.tenant_id, conv_id)
