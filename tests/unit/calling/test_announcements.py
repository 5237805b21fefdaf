"""Announcements to a meeting's phones: what is spoken on which event, and nothing when no phone is there."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import numpy as np

from opencomms.calling.announcements import RECORDING_STARTED, RECORDING_STOPPED, Announcer, display_name
from opencomms.calling.meetings import InMemoryMeetings
from opencomms.calling.subscribers import Batch
from opencomms.domain import events as ev
from opencomms.domain.legs import LegKind
from opencomms.domain.meetings import MeetingInfo
from opencomms.domain.participants import Participant
from opencomms.domain.rules import ConversationKind

PHONE = {"phone": {"id": "+15550100", "displayName": "Alice"}}


class Calls:
    def __init__(self, kinds: list[LegKind]) -> None:
        legs = {f"l{i}": SimpleNamespace(kind=k, live=True) for i, k in enumerate(kinds)}
        self.conv = SimpleNamespace(legs=legs)

    async def conversation(self, conv_id: str) -> Any:
        return self.conv


class Loader:
    def __init__(self) -> None:
        self.texts: list[str] = []

    async def load(self, spec: Any) -> Any:
        self.texts.append(spec.text)
        return np.zeros(320, dtype=np.int16)


class Engine:
    def __init__(self) -> None:
        self.played: list[str] = []

    def call(self, fn: Any) -> None:
        fn.apply(SimpleNamespace(play_to_mix=lambda mix, tag, clips: self.played.append(mix)))


def batch(*events: ev.Event, kind: ConversationKind = ConversationKind.MEETING) -> Batch:
    return Batch("m1", "t1", kind, tuple(events))


async def run(announcer: Announcer, b: Batch) -> None:
    for event in b.events:
        announcer.committed(b, event)
    for _ in range(10):  # the speech is loaded in tasks of the announcer's own
        await asyncio.sleep(0)
    await announcer.close()


def make(kinds: list[LegKind], *, announced: bool = True) -> tuple[Announcer, Loader, Engine]:
    meetings = InMemoryMeetings([MeetingInfo("m1", "t1", "o", "Org", "19:x", entry_exit_announced=announced)])
    loader, engine = Loader(), Engine()
    return Announcer(Calls(kinds), meetings, loader, engine), loader, engine  # type: ignore[arg-type]


async def test_recording_changes_are_spoken_to_a_meeting_with_a_phone() -> None:
    announcer, loader, engine = make([LegKind.BOT, LegKind.SIP])
    changes = (ev.RecordingStatusChanged("recording", {}), ev.RecordingStatusChanged("notRecording", {}))
    await run(announcer, batch(*changes))
    assert loader.texts == [RECORDING_STARTED, RECORDING_STOPPED] and engine.played == ["m1", "m1"]


async def test_nothing_is_spoken_without_a_phone_or_outside_meetings() -> None:
    announcer, loader, engine = make([LegKind.BOT])
    await run(announcer, batch(ev.RecordingStatusChanged("recording", {})))
    announcer2, loader2, _ = make([LegKind.SIP])
    await run(announcer2, batch(ev.RecordingStatusChanged("recording", {}), kind=ConversationKind.GROUP))
    assert loader.texts == loader2.texts == [] and engine.played == []


async def test_joins_and_leaves_only_when_the_meeting_announces_them_and_not_into_the_lobby() -> None:
    joined = Participant("p1", "l1", PHONE, "1")
    lobby = Participant("p2", "l2", {"user": {"displayName": "Bob"}}, "2", in_lobby=True)
    announcer, loader, _ = make([LegKind.SIP])
    changes = (ev.ParticipantJoined(joined, 1), ev.ParticipantJoined(lobby, 2), ev.ParticipantLeft(joined, 3))
    await run(announcer, batch(*changes))
    assert loader.texts == ["Alice has joined.", "Alice has left."]
    quiet, loader2, _ = make([LegKind.SIP], announced=False)
    await run(quiet, batch(ev.ParticipantJoined(joined, 1)))
    assert loader2.texts == []


async def test_an_admission_from_the_lobby_is_a_join_and_a_lobby_exit_or_other_update_is_not() -> None:
    waiting = Participant("p2", "l2", {"user": {"displayName": "Bob"}}, "2", in_lobby=True)
    present = Participant("p1", "l1", PHONE, "1")
    admitted = Participant("p2", "l2", {"user": {"displayName": "Bob"}}, "2", sequence=5)
    muted = Participant("p1", "l1", PHONE, "1", sequence=6)
    announcer, loader, _ = make([LegKind.SIP])
    admit = Batch("m1", "t1", ConversationKind.MEETING, (ev.ParticipantUpdated(admitted, 5),), (present, waiting))
    await run(announcer, admit)
    assert loader.texts == ["Bob has joined."]
    announcer2, loader2, _ = make([LegKind.SIP])
    other = Batch("m1", "t1", ConversationKind.MEETING, (ev.ParticipantUpdated(muted, 6),), (present,))
    await run(announcer2, other)
    await run(announcer2, batch(ev.ParticipantLeft(waiting, 7)))  # hung up in the lobby: never in the meeting
    assert loader2.texts == []


def test_display_names_are_bounded_and_printable() -> None:
    assert display_name({"application": {"displayName": "Bot\x07" + "x" * 100}}) == "Bot" + "x" * 57
    assert display_name({"phone": {"id": "+1555"}}) == "A caller"
    assert display_name({}) == "A participant"
