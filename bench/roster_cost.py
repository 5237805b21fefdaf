"""Roster cost: CPU and notification bytes per join of a meeting with delta rosters, at 10, 100 and 1000
participants (issue 17, benchmark (c); target: the 1000th join costs < 2x the 10th).

    .venv/bin/python bench/roster_cost.py [--sizes 10,100,1000] [--bots 3] [--samples 30] [--roster delta]
                                          [--store memory|sqlite]

A meeting gets `--bots` bots (joined over LiveMeetingService.join with callOptions.isDeltaRosterEnabled, the legs that
receive rosters) and then phones (external legs, `LiveMeetingService.join_external`) until it holds N participants;
the next `--samples` joins are measured one by one with `time.thread_time()`. Two paths are timed per join:

* `core`: the command and its projection, as the node runs them: `Conversation.apply(Join)` and the notification
  projector's meeting rosters (`calling/rosters.py`: the change built and serialized once, one body per listening
  bot), the conversation's roster copy the unit of work takes (`roster_before`) included;
* `node`: the whole `CallService.execute` unit of work on the async ledger over the conversation store (`--store
  memory`, or `sqlite`: a SQLite file written on the loop, so that the write's CPU is counted) (the above, plus
  the leg views kept in step and the conversation's changed parts and its notifications written).

Notification bytes per join are the roster bodies submitted (every other notification of the join is the
joiner's own). Prints one line per size and a last line with the 1000th/10th ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from contextlib import AbstractContextManager
from pathlib import Path

from opencomms.calling.invitations import new_source_id
from opencomms.calling.meetings import JOIN, InMemoryMeetings, LiveMeetingService
from opencomms.calling.model import Call
from opencomms.calling.rosters import MeetingRosters
from opencomms.calling.service import Caller, CallService
from opencomms.calling.subscribers import Batch
from opencomms.calling.views import view_of
from opencomms.config import MeetingsConfig
from opencomms.directory import Directory
from opencomms.domain import commands as c
from opencomms.domain import results
from opencomms.domain.conversation import Conversation
from opencomms.domain.ids import new_id
from opencomms.domain.legs import LegKind, LegSpec
from opencomms.domain.meetings import LobbyScope, MeetingInfo
from opencomms.domain.rules import ConversationKind
from opencomms.store import MemoryStore
from opencomms.store.base import OutboxEntry
from opencomms.store.conversations import ConversationStore
from opencomms.store.conversations_sqlite import SqliteConversationStore
from opencomms.wire import calls as wire


class CountingSink:
    """The dispatcher's place: counts roster bodies (bytes) and keeps the store transaction."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.roster_bytes = 0
        self.bodies = 0

    def submit(self, *, order_key: str, app_id: str, tenant_id: str, url: str, body: bytes) -> object:
        self.bodies += 1
        if b"/participants" in body[:300]:
            self.roster_bytes += len(body)
        return None

    def release(self, entries: list[OutboxEntry]) -> None:
        """A unit's notifications, committed with the conversation (the ledger releases them)."""
        for entry in entries:
            self.submit(order_key="", app_id="", tenant_id="", url="", body=entry.body)

    def transaction(self) -> AbstractContextManager[None]:
        return self.store.transaction()


def phone(n: int) -> LegSpec:
    identity = {"@odata.type": "#microsoft.graph.identitySet", "phone": {"id": f"+1555{n:07d}"}}
    pid = new_id()
    return LegSpec(
        id=new_id(),
        kind=LegKind.SIP,
        participant_id=pid,
        source_id=new_source_id(),
        identity=identity,
        source={"@odata.type": "#microsoft.graph.participantInfo", "identity": identity, "participantId": pid},
        attrs={"requested_modalities": ["audio"]},
        external=f"sip-{n}",
    )


def join_body(meeting: MeetingInfo, delta: bool) -> wire.CreateCall:
    return wire.create_call(
        {
            "callbackUri": "http://127.0.0.1:9/bot",
            "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
            "meetingInfo": {"joinMeetingId": meeting.join_meeting_id, "passcode": meeting.passcode},
            "callOptions": {"isDeltaRosterEnabled": delta},
        }
    )


async def node_path(
    sizes: list[int], bots: int, samples: int, delta: bool, db: str | None = None
) -> dict[int, tuple[float, float]]:
    """Per size: (median CPU µs, mean roster bytes) of one join through CallService.execute (`db`: a SQLite file
    for the conversations, written on the loop; None: in memory)."""
    store = MemoryStore()
    directory = Directory(store)
    tenant = directory.create_tenant("bench")
    app, _ = directory.create_app(tenant.id, "bot", permissions=[JOIN], callback_url="http://127.0.0.1:9/bot")
    sink = CountingSink(store)
    conversations: ConversationStore | None = None
    if db is not None:
        conversations = SqliteConversationStore(db, writer_thread=False, synchronous="OFF")
    calls = CallService(store, directory, sink, conversations=conversations)
    meeting = MeetingInfo(
        new_id(),
        tenant.id,
        "org",
        "Org",
        "19:bench@thread.v2",
        join_meeting_id="123",
        passcode="p",
        lobby_scope=LobbyScope.EVERYONE,
    )
    cap = max(sizes) + samples + bots + 1
    meetings = LiveMeetingService(calls, InMemoryMeetings([meeting]), MeetingsConfig(max_participants=cap))
    caller = Caller(tenant.id, app.id, frozenset({JOIN}))
    for _ in range(bots):
        await meetings.join(caller, join_body(meeting, delta))
    out: dict[int, tuple[float, float]] = {}
    n = bots
    for size in sizes:
        while n < size - 1:
            await meetings.join_external(meeting.id, phone(n))
            n += 1
        if isinstance(conversations, SqliteConversationStore):  # as the node's checkpointer does, off the loop
            await conversations.run(lambda db: db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())
        cpu: list[float] = []
        sent = 0
        for _ in range(samples):
            spec = phone(n)
            before, t0 = sink.roster_bytes, time.thread_time()
            await meetings.join_external(meeting.id, spec)
            cpu.append(time.thread_time() - t0)
            sent += sink.roster_bytes - before
            await calls.execute(meeting.id, c.EndLeg(spec.id, results.PSTN_HUNG_UP))  # back to N-1 for the next sample
        n_participants = len(calls.legs())
        assert n_participants == size - 1, n_participants
        out[size] = (statistics.median(cpu) * 1e6, sent / samples)
    if conversations is not None:
        await conversations.aclose()
    return out


class _Views:
    def __init__(self) -> None:
        self.views: dict[str, Call] = {}

    def leg(self, leg_id: str) -> Call | None:
        return self.views.get(leg_id)


def core_path(sizes: list[int], bots: int, samples: int, delta: bool) -> dict[int, tuple[float, float]]:
    """Per size: (median CPU µs, mean roster bytes) of Conversation.apply(Join) + the meeting roster projection."""
    conv = Conversation(new_id(), "tenant", ConversationKind.MEETING)
    views = _Views()
    sent = [0]

    def send(call: Call, body: bytes) -> None:
        sent[0] += len(body)

    rosters = MeetingRosters()

    def run(command: c.Command) -> None:
        roster_before = tuple(conv.roster.entries())
        events = conv.apply(command, 1000.0)
        if isinstance(command, c.Join) and command.leg.kind is LegKind.BOT:  # the read model's view of a bot leg
            views.views[command.leg.id] = view_of(conv.id, conv.tenant_id, conv.legs[command.leg.id])
        batch = Batch(conv.id, conv.tenant_id, conv.kind, tuple(events), roster_before)
        rosters.project(batch, conv, views, send)

    for i in range(bots):
        options = {"isDeltaRosterEnabled": delta}
        bot = LegSpec(
            new_id(),
            LegKind.BOT,
            new_id(),
            new_source_id(),
            {"application": {"id": f"bot{i}"}},
            app_id=f"bot{i}",
            attrs={"callback_uri": "http://127.0.0.1:9/bot", "call_options": options},
        )
        run(c.Join(bot, role="member"))
    out: dict[int, tuple[float, float]] = {}
    n = bots
    for size in sizes:
        while n < size - 1:
            run(c.Join(phone(n)))
            n += 1
        cpu: list[float] = []
        total = 0
        for _ in range(samples):
            spec = phone(n)
            before, t0 = sent[0], time.thread_time()
            run(c.Join(spec))
            cpu.append(time.thread_time() - t0)
            total += sent[0] - before
            run(c.EndLeg(spec.id, results.PSTN_HUNG_UP))
        out[size] = (statistics.median(cpu) * 1e6, total / samples)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="10,100,1000", help="participants in the meeting at the measured join")
    parser.add_argument("--bots", type=int, default=3, help="bots listening with delta rosters")
    parser.add_argument("--samples", type=int, default=30, help="joins measured per size")
    parser.add_argument("--roster", choices=("delta", "classic"), default="delta")
    parser.add_argument("--store", choices=("memory", "sqlite"), default="memory", help="the conversation store")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    delta = args.roster == "delta"
    core = core_path(sizes, args.bots, args.samples, delta)
    with tempfile.TemporaryDirectory(prefix="roster-cost-") as tmp:
        db = str(Path(tmp) / "conversations.db") if args.store == "sqlite" else None
        node = asyncio.run(node_path(sizes, args.bots, args.samples, delta, db))
    for size in sizes:
        print(
            f"roster_cost {args.roster} N={size:5d} bots={args.bots}: core {core[size][0]:7.1f} us/join, "
            f"node ({args.store}) {node[size][0]:7.1f} us/join, roster bytes {node[size][1]:8.0f}/join"
        )
    lo, hi = sizes[0], sizes[-1]
    print(
        f"roster_cost ratio N={hi}/N={lo}: core {core[hi][0] / core[lo][0]:.2f}x, "
        f"node ({args.store}) {node[hi][0] / node[lo][0]:.2f}x, bytes {node[hi][1] / max(node[lo][1], 1):.2f}x "
        "(target < 2x)"
    )


if __name__ == "__main__":
    main()
