"""Graph's tone names are spelled in wire/ only, and map both ways onto the keypad characters the rest uses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from opencomms.media.dtmf.tones import FLASH_KEY, KEYS
from opencomms.wire.tones import TONES, key_for_tone, tone_name

SRC = Path(__file__).resolve().parents[3] / "src" / "opencomms"


def test_tone_names_both_ways() -> None:
    names = [tone_name(k) for k in KEYS]
    assert names == [f"tone{d}" for d in range(10)] + ["star", "pound", "a", "b", "c", "d"]
    assert tone_name(FLASH_KEY) == "flash" and tone_name("b") == "b"
    assert all(key_for_tone(tone_name(k)) == k for k in [*KEYS, FLASH_KEY])
    assert (*names, "flash") == TONES


@pytest.mark.parametrize(("fn", "arg"), [(key_for_tone, "tone10"), (tone_name, "E"), (tone_name, "12")])
def test_not_a_tone_or_key(fn: object, arg: str) -> None:
    with pytest.raises(ValueError):
        fn(arg)  # type: ignore[operator]


def test_tone_names_are_spelled_only_in_wire() -> None:
    spelled = re.compile(r"[\"'](tone[0-9]|star|pound)[\"']|f[\"']tone\{")
    offenders = [
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if path.parent.name != "wire" and spelled.search(path.read_text())
    ]
    # Allowed: demo.py is a bot (it speaks Graph as a client would); api/schemas.py holds an OpenAPI example body;
    # the SDK's docstrings show users the names (its tables come from wire.tones).
    assert sorted(offenders) == ["api/schemas.py", "demo.py", "sdk/client.py", "sdk/models.py"]
