"""Graph's DTMF tone names (`tone0`-`tone9`, `star`, `pound`, `a`-`d`, `flash`) and the keypad characters the rest
of the code uses ('0'-'9', '*', '#', 'A'-'D', '!' for hook flash). The only place the names are spelled.

Pure and dependency-free (the SDK uses it too). Must not: know frequencies, event codes or anything else about keys.
"""

from __future__ import annotations

__all__ = ["FLASH_KEY", "KEY_BY_TONE", "TONES", "TONE_BY_KEY", "key_for_tone", "tone_name"]

FLASH_KEY = "!"
"""The keypad character for hook flash (Graph tone `flash`, RFC 4733 event 16)."""

TONE_BY_KEY: dict[str, str] = {
    **{d: f"tone{d}" for d in "0123456789"},
    "*": "star",
    "#": "pound",
    **{k: k.lower() for k in "ABCD"},
    FLASH_KEY: "flash",
}
"""Keypad character -> Graph `tone` name."""
KEY_BY_TONE: dict[str, str] = {name: key for key, name in TONE_BY_KEY.items()}
"""Graph `tone` name -> keypad character."""
TONES: tuple[str, ...] = tuple(TONE_BY_KEY.values())
"""Every Graph `tone` name, in keypad-event order (tone0..tone9, star, pound, a..d, flash)."""


def tone_name(key: str) -> str:
    """Graph `tone` name of a keypad character (letters case-insensitive); ValueError if it is not a key."""
    try:
        return TONE_BY_KEY[key.upper()]
    except KeyError:
        raise ValueError(f"not a DTMF key: {key!r}") from None


def key_for_tone(tone: str) -> str:
    """Keypad character of a Graph `tone` name (the inverse of tone_name); ValueError if it is not one."""
    try:
        return KEY_BY_TONE[tone]
    except KeyError:
        raise ValueError(f"not a Graph tone: {tone!r}") from None
