"""The live meeting's own rules, without sockets or a clock: the lobby and admitting, removal, hold music, the
recording status every entry shows, the end time, the participant limit, the lobby policy table."""

from __future__ import annotations

import pytest

from opencomms.domain import commands as c
from opencomms.domain import events as ev
from opencomms.domain import results
from opencomms.domain.calls import CallState
from opencomms.domain.conversation import Conversation
from opencomms.domain.errors import AccessDenied, BadRequest, InvalidState, NotFound, QuotaExceeded
from opencomms.domain.legs import LegKind
from opencomms.domain.meeting_rules import JoinerKind, bypasses_lobby, removed_reason
from opencomms.domain.meetings import LobbyScope, MeetingInfo, MeetingRole
from opencomms.domain.rules import ConversationKind, ConversationState
from tests.unit.domain.conversation_kit import Run, code, ring, spec

M = ConversationKind.MEETING


def meeting_with(*names: str, role: str = "member") -> Run:
    run = Run(M)
    for name in names:
        kind = LegKind.BOT if name.startswith("bot") else LegKind.SIP
        run.do(c.Join(spec(name, kind), role=role if kind is LegKind.BOT else ""))
    return run


def test_a_lobby_joiner_is_in_the_roster_but_not_in_the_media_until_admitted() -> None:
    run = meeting_with("bot")
    out = run.do(c.Join(spec("guest"), in_lobby=True, role="guest"))
    assert [type(e) for e in out] == [ev.MediaConfigured, ev.LegEstablishing, ev.ParticipantJoined]
    entry = run.conv.roster.get("p-guest")
    assert entry is not None and entry.in_lobby and entry.to_wire()["isInLobby"] is True
    assert run.conv.leg("guest").state is CallState.ESTABLISHING
    run.do(c.Join(spec("ann", LegKind.SIP)))  # another join does not pull it out of the lobby
    assert run.conv.leg("guest").state is CallState.ESTABLISHING

    out = run.do(c.Admit("bot", ("p-guest",)))
    assert [type(e) for e in out] == [ev.ParticipantUpdated, ev.LegEstablished]
    assert run.conv.leg("guest").state is CallState.ESTABLISHED and not run.conv.leg("guest").in_lobby
    assert run.do(c.Admit("bot")) == []  # admitAll with nobody waiting changes nothing


def test_only_a_member_may_admit_and_only_known_participants() -> None:
    run = meeting_with("bot")
    run.do(c.Join(spec("bot2"), role="guest"))
    run.do(c.Join(spec("wait", LegKind.SIP), in_lobby=True))
    with pytest.raises(AccessDenied):
        run.conv.apply(c.Admit("bot2"), run.now)
    with pytest.raises(NotFound):
        run.conv.apply(c.Admit("bot", ("p-nobody",)), run.now)
    run.do(c.Admit("bot"))
    assert run.conv.leg("wait").state is CallState.ESTABLISHED


def test_remove_ends_the_leg_removed_by_another_participant() -> None:
    run = meeting_with("bot", "ann")
    run.do(c.RemoveParticipant("bot", "p-ann"))
    assert code(run.ended("ann")) == (200, 5000)
    left = next(e for e in run.events if isinstance(e, ev.ParticipantLeft))
    assert removed_reason(left.reason) == "removedByParticipant"
    assert run.conv.leg("bot").state is CallState.ESTABLISHED  # the remover stays, alone
    with pytest.raises(NotFound):
        run.conv.apply(c.RemoveParticipant("bot", "p-ann"), run.now)


def test_server_mute_shows_server_muted_and_self_unmute_clears_it() -> None:
    run = meeting_with("bot", "bot2")
    run.do(c.Mute("bot", True, "p-bot2"))
    entry = run.conv.roster.get("p-bot2")
    assert entry is not None and entry.muted and entry.to_wire()["mediaStreams"][0]["serverMuted"] is True
    run.do(c.Mute("bot2", False))
    entry = run.conv.roster.get("p-bot2")
    assert entry is not None and not entry.muted and not entry.server_muted


def test_hold_music_one_participant_at_a_time_and_its_operation_finishes() -> None:
    run = meeting_with("bot", "ann", "bob")
    out = run.do(c.HoldMusic("bot", "p-ann", True, {"id": "op1"}))
    assert [(type(e).__name__, getattr(e, "leg_id", "")) for e in out] == [
        ("LegHeld", "ann"),
        ("OperationFinished", "bot"),
    ]
    with pytest.raises(InvalidState):
        run.conv.apply(c.HoldMusic("bot", "p-bob", True), run.now)
    out = run.do(c.HoldMusic("bot", "p-ann", False, {"id": "op2"}))
    assert isinstance(out[0], ev.LegHeld) and not out[0].held
    run.do(c.HoldMusic("bot", "p-bob", True))
    assert run.conv.meeting is not None and run.conv.meeting.held == "p-bob"


def test_recording_status_changes_every_entry_once_and_new_joiners_see_it() -> None:
    run = meeting_with("bot", "ann")
    out = run.do(c.UpdateRecordingStatus("bot", "recording"))
    assert isinstance(out[0], ev.RecordingStatusChanged) and out[0].status == "recording"
    assert [(type(e).__name__, e.participant.id, e.sequence) for e in out if isinstance(e, ev.ParticipantUpdated)] == [
        ("ParticipantUpdated", "p-bot", 3),
        ("ParticipantUpdated", "p-ann", 4),
    ]
    assert run.do(c.UpdateRecordingStatus("bot", "recording")) == []
    run.do(c.Join(spec("bob", LegKind.SIP)))
    info = run.conv.roster.get("p-bob")
    assert info is not None
    wire = info.to_wire()["recordingInfo"]
    assert wire["recordingStatus"] == "recording" and wire["initiator"]["application"]["id"] == "app-bot"
    with pytest.raises(BadRequest):
        run.conv.apply(c.UpdateRecordingStatus("bot", "paused"), run.now)


def test_the_meeting_ends_at_its_end_time_and_a_change_moves_it() -> None:
    run = Run(M)
    run.do(c.Join(spec("bot"), ends_at=run.now + 100))
    run.do(c.Join(spec("ann", LegKind.SIP), ends_at=run.now + 5))  # the first join's end is kept
    assert run.conv.next_deadline() == run.now + 100
    run.do(c.ConfigureMeeting(run.now + 200))
    assert run.do(c.FireTimers(), at=run.now + 150) == []
    run.do(c.FireTimers(), at=run.now + 60)
    assert code(run.ended("bot")) == code(run.ended("ann")) == (200, 5003)
    assert run.conv.state is ConversationState.ENDED


def test_a_join_past_the_maximum_is_refused_and_changes_nothing() -> None:
    run = Run(M)
    run.do(c.Join(spec("bot"), max_participants=2))
    run.do(c.Join(spec("ann", LegKind.SIP), max_participants=2))
    with pytest.raises(QuotaExceeded):
        run.conv.apply(c.Join(spec("bob", LegKind.SIP), max_participants=2), run.now)
    assert len(run.conv.legs) == 2 and run.conv.roster.sequence == 2


def test_meeting_state_survives_the_stored_form() -> None:
    run = meeting_with("bot")
    run.do(c.Join(spec("guest"), in_lobby=True, role="guest", ends_at=5000.0))
    run.do(c.UpdateRecordingStatus("bot", "recording"))
    run.do(c.HoldMusic("bot", "p-guest", True))
    again = Conversation.from_doc(run.conv.to_doc())
    assert again.to_doc() == run.conv.to_doc()
    assert again.meeting is not None and again.meeting.recording == "recording" and again.meeting.held == "p-guest"
    assert again.leg("guest").in_lobby and again.leg("bot").role == "member"


def test_meeting_commands_are_refused_outside_meetings() -> None:
    run = Run(ConversationKind.GROUP)
    run.do(c.Create(spec("bot"), (ring("ann"), ring("bob"))))
    for command in (c.Admit("bot"), c.UpdateRecordingStatus("bot", "recording"), c.HoldMusic("bot", "p-x", True)):
        with pytest.raises(InvalidState):
            run.conv.apply(command, run.now)


INFO = MeetingInfo("m1", "t1", "org", "Org", "19:t@thread.v2", roles=(("invitee", MeetingRole.ATTENDEE),))


@pytest.mark.parametrize(
    ("scope", "dial_in", "expected"),
    [
        # member, guest, phone, organizer, invitee, other user of the tenant
        (LobbyScope.EVERYONE, False, (True, True, True, True, True, True)),
        (LobbyScope.ORGANIZATION, False, (True, False, False, True, True, True)),
        (LobbyScope.ORGANIZATION, True, (True, False, True, True, True, True)),
        (LobbyScope.INVITED, False, (True, False, False, True, True, False)),
        (LobbyScope.ORGANIZER, False, (True, False, False, True, False, False)),
    ],
)
def test_lobby_policy_table(scope: LobbyScope, dial_in: bool, expected: tuple[bool, ...]) -> None:
    info = MeetingInfo(**{**_fields(INFO), "lobby_scope": scope, "dial_in_bypass": dial_in})
    got = (
        bypasses_lobby(info, JoinerKind.MEMBER),
        bypasses_lobby(info, JoinerKind.GUEST),
        bypasses_lobby(info, JoinerKind.PHONE),
        bypasses_lobby(info, JoinerKind.USER, "org"),
        bypasses_lobby(info, JoinerKind.USER, "invitee"),
        bypasses_lobby(info, JoinerKind.USER, "someone"),
    )
    assert got == expected


def _fields(info: MeetingInfo) -> dict[str, object]:
    return {f: getattr(info, f) for f in info.__dataclass_fields__}


def test_removed_reasons() -> None:
    assert removed_reason(None) == "left"
    assert removed_reason(results.REMOTE_HUNG_UP) == "left"
    assert removed_reason(results.MEETING_TIME_OVER) == "meetingEnded"
    assert removed_reason(results.KEEPALIVE_LAPSED) == "failed"


def test_a_lobby_joiner_nobody_admits_is_removed_after_the_lobby_timeout() -> None:
    run = meeting_with("bot")
    run.do(c.Join(spec("guest"), in_lobby=True, role="guest", lobby_timeout=60))
    run.do(c.Join(spec("late"), in_lobby=True, role="guest", lobby_timeout=60), at=run.now + 30)
    run.do(c.Admit("bot", ("p-late",)))
    run.do(c.FireTimers(), at=run.now + 31)
    assert code(run.ended("guest")) == (200, 5855)
    assert run.conv.leg("late").state is CallState.ESTABLISHED and run.conv.leg("late").answer_deadline is None
    left = next(e for e in run.events if isinstance(e, ev.ParticipantLeft))
    assert removed_reason(left.reason) == "lobbyTimeout"


def test_a_changed_meeting_lets_in_the_lobby_participants_the_router_names_and_no_one_else() -> None:
    run = meeting_with("bot")
    run.do(c.Join(spec("phone", LegKind.SIP), in_lobby=True, role="phone"))
    run.do(c.Join(spec("guest"), in_lobby=True, role="guest"))
    out = run.do(c.ConfigureMeeting(None, ("p-phone", "p-bot", "p-nobody")))  # a member or a stranger: no-ops
    assert [type(e) for e in out] == [ev.ParticipantUpdated, ev.LegEstablished]
    assert run.conv.leg("phone").state is CallState.ESTABLISHED and not run.conv.leg("phone").in_lobby
    assert run.conv.leg("guest").in_lobby and run.conv.leg("guest").state is CallState.ESTABLISHING
