"""The dial-in attendant as sequences of keys and clock ticks (no audio, no SIP)."""

from __future__ import annotations

import pytest

from opencomms.domain.attendant import ATTENDANT_FAILED, Attendant, Goodbye, Join, Say, Step
from opencomms.domain.meetings import MeetingInfo

OPEN = MeetingInfo("m-open", "t", "u", "Org", "19:open@thread.v2", conference_id="123456")
LOCKED = MeetingInfo(
    "m-locked", "t", "u", "Org", "19:locked@thread.v2", conference_id="777", passcode="4242", passcode_required=True
)
MEETINGS = {m.conference_id: m for m in (OPEN, LOCKED)}


def attendant(**kw: object) -> Attendant:
    a = Attendant(MEETINGS.get, **kw)  # type: ignore[arg-type]
    assert a.start(0.0) and a.next_deadline() == a.entry_timeout
    return a


def keys(a: Attendant, entry: str, now: float = 1.0) -> list[object]:
    out: list[object] = []
    for k in entry:
        out += a.key(k, now)
    return out


def test_known_conference_id_without_passcode_joins() -> None:
    a = attendant()
    actions = keys(a, "123456#")
    assert isinstance(actions[0], Say) and actions[1] == Join(OPEN)
    assert a.step is Step.JOINED and a.next_deadline() is None


def test_passcode_is_asked_and_checked() -> None:
    a = attendant()
    assert keys(a, "777#") == [Say(a.prompts.passcode)]
    assert a.step is Step.PASSCODE
    assert keys(a, "0000#") == [Say(a.prompts.wrong_passcode)]
    assert keys(a, "4242#")[-1] == Join(LOCKED)


def test_three_wrong_entries_say_goodbye() -> None:
    a = attendant()
    assert keys(a, "1#") == [Say(a.prompts.unknown)]
    assert keys(a, "2#") == [Say(a.prompts.unknown)]
    assert keys(a, "3#") == [Goodbye(a.prompts.goodbye, ATTENDANT_FAILED)]
    assert a.step is Step.ENDED and keys(a, "123456#") == []


def test_three_wrong_passcodes_say_goodbye() -> None:
    a = attendant()
    keys(a, "777#")
    keys(a, "1#")
    keys(a, "2#")
    assert isinstance(keys(a, "3#")[0], Goodbye)


def test_star_clears_the_entry() -> None:
    a = attendant()
    assert keys(a, "99*123456#")[-1] == Join(OPEN)


def test_silence_counts_as_a_try_and_rearms_the_timer() -> None:
    a = attendant(entry_timeout=10.0)
    assert a.fire(5.0) == []
    assert a.fire(10.0) == [Say(a.prompts.silence)]
    assert a.next_deadline() == 20.0
    a.fire(20.0)
    assert isinstance(a.fire(30.0)[0], Goodbye)


def test_a_key_pushes_the_deadline_and_partial_entries_are_dropped_on_timeout() -> None:
    a = attendant(entry_timeout=10.0)
    a.key("1", 8.0)
    assert a.fire(10.0) == [] and a.next_deadline() == 18.0
    a.fire(18.0)
    assert keys(a, "123456#", 19.0)[-1] == Join(OPEN)  # the "1" keyed before the silence is gone


@pytest.mark.parametrize("entry", ["", "#"])
def test_empty_entry_is_wrong(entry: str) -> None:
    a = attendant()
    assert keys(a, entry + "#")[0] == Say(a.prompts.unknown)


def test_overlong_entry_is_submitted() -> None:
    a = attendant()
    assert keys(a, "1" * 21) == [Say(a.prompts.unknown)]
