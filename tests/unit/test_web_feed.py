"""The meeting page's feed without sockets: how a roster entry looks to a page (no phone number), and what a page in
the lobby is told (only about itself until admitted; then the whole roster)."""

from __future__ import annotations

from typing import Any

from opencomms.calling.transcription import HeardCaption
from opencomms.domain import events as ev
from opencomms.domain.participants import Participant
from opencomms.web.feed import MeetingFeed, _Listener, page_entry


def person(pid: str, kind: str, name: str, **extra: Any) -> Participant:
    identity = {kind: {"id": f"id-{pid}", "displayName": name}}
    return Participant(pid, f"leg-{pid}", identity, f"{len(pid)}00", **extra)


def test_a_phone_shows_only_the_last_two_digits_of_its_number() -> None:
    assert page_entry(person("p", "phone", "+1 555 0123"))["name"] == "Phone ··23"
    assert page_entry(person("p", "phone", "Front desk"))["name"] == "Front desk"
    entry = page_entry(person("g", "guest", "Gail", muted=True, in_lobby=True), me="g")
    assert entry == {
        "id": "g",
        "name": "Gail",
        "kind": "guest",
        "sourceId": "100",
        "isMuted": True,
        "serverMuted": False,
        "isInLobby": True,
        "me": True,
    }
    assert page_entry(person("b", "application", ""))["name"] == "Bot"


def test_a_page_in_the_lobby_hears_only_about_itself_until_admitted() -> None:
    feed = MeetingFeed(calls=None, gateway=None, edge=None)  # type: ignore[arg-type]
    me = _Listener("conv", "leg-g", "g", in_lobby=True)
    other = person("x", "guest", "Xavier")
    feed._deliver(me, ev.ParticipantJoined(other, 1))
    feed._deliver(me, ev.RecordingStatusChanged("recording", {}))
    feed._deliver(me, ev.ParticipantLeft(other, 2))
    assert me.queue.empty()
    feed._deliver(me, ev.ParticipantUpdated(person("g", "guest", "Gail", muted=True, in_lobby=True), 3))
    assert me.queue.get_nowait()["participant"]["isMuted"] is True
    feed._deliver(me, ev.ParticipantUpdated(person("g", "guest", "Gail"), 4))  # admitted
    assert me.queue.get_nowait() == {"type": "admitted"} and not me.in_lobby
    feed._deliver(me, ev.ParticipantJoined(other, 5))
    assert me.queue.get_nowait()["participant"]["name"] == "Xavier"
    feed._deliver(me, ev.ParticipantLeft(person("g", "guest", "Gail"), 6))
    assert me.queue.get_nowait() == {"type": "ended"}


def test_captions_reach_pages_in_the_meeting_once_and_never_the_lobby() -> None:
    class Calls:
        def leg(self, leg_id: str) -> Any:
            return None  # the speaker left meanwhile: its name still comes from the caption's identity

    feed = MeetingFeed(calls=Calls(), gateway=None, edge=None)  # type: ignore[arg-type]
    inside = _Listener("conv", "leg-g", "g", in_lobby=False)
    lobby = _Listener("conv", "leg-l", "l", in_lobby=True)
    feed._listeners["conv"] = {inside, lobby}
    phone = {"phone": {"id": "+15550123"}}
    feed.caption(HeardCaption("scribe-1", "conv", "leg-p", phone, 100.0, 102.0, "Hello  there."))
    feed.caption(HeardCaption("scribe-2", "conv", "leg-p", phone, 100.1, 102.0, "Hello there."))  # a second bot
    feed.caption(HeardCaption("scribe-1", "other", "leg-q", phone, 100.0, 101.0, "Not this meeting."))
    message = inside.queue.get_nowait()
    assert message["type"] == "caption" and message["speaker"] == "Phone ··23" and message["text"] == "Hello there."
    assert inside.queue.empty() and lobby.queue.empty()
    feed.caption(HeardCaption("scribe-1", "conv", "leg-p", phone, 110.0, 111.0, "Hello there."))  # said again
    assert inside.queue.get_nowait()["start"] == 110.0
