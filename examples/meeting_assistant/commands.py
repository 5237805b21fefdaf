"""Keypad requests to the meeting assistant, pure: keys in, commands out.

    *6 <seat> #   mute the participant the greeting numbered <seat> (`*62#` mutes participant 2)
    *0            the assistant says goodbye and leaves the meeting

Graph's toneInfo says which key was pressed, not who pressed it, so a request names its participant by the seat
number the assistant gave in its greeting. Any other key sequence is ignored; a `*` always starts over.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_SEAT_DIGITS = 3


@dataclass(frozen=True, slots=True)
class Mute:
    seat: int


@dataclass(frozen=True, slots=True)
class Leave:
    pass


Command = Mute | Leave


class KeyCommands:
    """Feed keys one at a time (`press`); a finished request comes back as a Command."""

    def __init__(self) -> None:
        self._keys = ""

    @property
    def pending(self) -> str:
        return self._keys

    def press(self, key: str) -> Command | None:
        if key == "*":
            self._keys = "*"
            return None
        if not self._keys:
            return None  # keys outside a request (someone dialing an extension, ...)
        self._keys += key
        keys = self._keys
        if keys == "*0":
            self._keys = ""
            return Leave()
        if keys == "*6" or (keys.startswith("*6") and keys[2:].isdigit() and len(keys) - 2 <= MAX_SEAT_DIGITS):
            return None
        if keys.startswith("*6") and keys.endswith("#") and keys[2:-1].isdigit():
            self._keys = ""
            return Mute(int(keys[2:-1]))
        self._keys = ""  # not a request
        return None
