"""Menu files: the shipped one is valid, and every kind of mistake is refused with a message saying where."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from examples.ivr.menu import GoTo, MenuError, TextPrompt, Transfer, Voicemail, WavPrompt, load_menu, load_menu_file

SHIPPED = Path(__file__).resolve().parents[2] / "examples" / "ivr" / "menu.yaml"

BASE = """
menus:
  main:
    prompt: "Main."
    options:
      "1": {menu: other}
  other:
    prompt: "Other."
    options:
      "9": back
"""


def test_shipped_menu_is_valid() -> None:
    config = load_menu_file(SHIPPED, {"IVR_OPERATOR_APP_ID": "3f1c9a52-0000-4000-8000-000000000001"})
    assert config.start == "main"
    assert config.menus["main"].options["1"] == GoTo("sales")
    assert config.menus["main"].options["3"] == Voicemail("general")
    assert config.give_up == Transfer("operator")
    assert config.targets["operator"].id == "3f1c9a52-0000-4000-8000-000000000001"
    assert config.voicemail is not None and config.voicemail.stop_tones == ("#",)


def test_defaults_and_prompt_forms() -> None:
    config = load_menu(
        BASE.replace('"Main."', '["Main.", {text: "Hola.", voice: es}, {url: "https://x.example/a.wav"}]'), {}
    )
    assert config.start == "main" and config.key_timeout == 5 and config.max_retries == 2
    assert config.menus["main"].prompts == (
        TextPrompt("Main."),
        TextPrompt("Hola.", "es"),
        WavPrompt("https://x.example/a.wav"),
    )
    assert config.menus["main"].prompts[2].to_graph() == {
        "@odata.type": "#microsoft.graph.mediaPrompt",
        "mediaInfo": {"@odata.type": "#microsoft.graph.mediaInfo", "uri": "https://x.example/a.wav"},
    }
    assert TextPrompt("Hi.", "en-us").to_graph() == {
        "@odata.type": "#opencomms.textPrompt",
        "text": "Hi.",
        "voice": "en-us",
    }


@pytest.mark.parametrize(
    ("text", "where", "fragment"),
    [
        ("menus: [1, 2", "line 1, column 13", "not valid YAML"),
        ("- just a list", "", "expected a mapping, got a list"),
        ("start: main", "", "missing required field 'menus'"),
        (BASE + "promts: {}\n", "promts", "unknown field"),
        (BASE + "start: nowhere\n", "start", "unknown menu 'nowhere' (menus: main, other)"),
        (BASE.replace("{menu: other}", "{menu: othr}"), "menus.main.options.'1'", "unknown menu 'othr'"),
        (BASE.replace('"1": {menu: other}', '"7x": back'), "menus.main.options", "'7x' is not a key"),
        (BASE.replace('"1": {menu: other}', "1: back\n      '1': repeat"), "menus.main.options.'1'", "given twice"),
        (BASE.replace("{menu: other}", "jump"), "menus.main.options.'1'", "unknown action 'jump'"),
        (BASE.replace("{menu: other}", "{menu: other, say: hi}"), "menus.main.options.'1'", "exactly one of"),
        (BASE.replace("{menu: other}", "{transfer: boss}"), "menus.main.options.'1'", "unknown transfer target 'boss'"),
        (BASE.replace("{menu: other}", "voicemail"), "menus.main.options.'1'", "no 'voicemail' section"),
        (BASE.replace('"Main."', "{url: 'ftp://x/a.wav'}"), "menus.main.prompt.url", "not an http(s) URL"),
        (BASE.replace('"Main."', "{text: hi, url: 'https://x/a.wav'}"), "menus.main.prompt", "either 'text' or 'url'"),
        (BASE.replace('"Main."', '""'), "menus.main.prompt", "non-empty"),
        (BASE.replace('"Main."', "[]"), "menus.main.prompt", "at least one prompt"),
        (
            BASE.replace('prompt: "Other."', 'prompt: "Other."\n    key_timeout: 0'),
            "menus.other.key_timeout",
            "between 1",
        ),
        (BASE + "max_retries: many\n", "max_retries", "expected an integer"),
        (BASE + "targets: {op: {phone: '555-0100'}}\n", "targets.op.phone", "E.164"),
        (BASE + "targets: {op: {phone: '+14255550100', application: x}}\n", "targets.op", "exactly one of"),
        (
            BASE + "targets: {op: {application: '${OPERATOR}'}}\n",
            "targets.op.application",
            "${OPERATOR} is not defined",
        ),
        (BASE + "voicemail: {prompt: [a, b]}\n", "voicemail.prompt", "at most 1 prompts"),
        (BASE + "voicemail: {prompt: a, max_seconds: 600}\n", "voicemail.max_seconds", "between 1 and 120"),
        (BASE + "voicemail: {prompt: a, stop_tones: ['%']}\n", "voicemail.stop_tones[0]", "is not a key"),
        (BASE + "give_up: {menu: other}\n", "give_up", "must end the menu"),
        (BASE + "voice: 'en us; rm'\n", "voice", "is not a voice name"),
        (BASE.replace('    options:\n      "9": back\n', "    options: {}\n"), "menus.other.options", "at least one"),
    ],
)
def test_bad_menus_are_refused_with_the_place_and_the_reason(text: str, where: str, fragment: str) -> None:
    with pytest.raises(MenuError) as caught:
        load_menu(text, {})
    assert caught.value.where == where, str(caught.value)
    assert fragment in caught.value.message, str(caught.value)


def test_missing_file() -> None:
    with pytest.raises(MenuError, match="cannot read"):
        load_menu_file("/nonexistent/menu.yaml")


def test_command_line_check(tmp_path: Path) -> None:
    """`python -m examples.ivr --check` validates a menu file: exit 0, or 2 with the place of the mistake."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "IVR_OPERATOR_APP_ID": "op"}
    ok = subprocess.run(
        [sys.executable, "-m", "examples.ivr", "--check"], cwd=root, env=env, capture_output=True, text=True
    )
    assert ok.returncode == 0 and "OK (3 menus)" in ok.stdout, ok.stderr
    bad = tmp_path / "menu.yaml"
    bad.write_text(BASE.replace("{menu: other}", "{menu: othr}"))
    failed = subprocess.run(
        [sys.executable, "-m", "examples.ivr", "--check", "--config", str(bad)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    assert failed.returncode == 2
    assert "error: menus.main.options.'1': unknown menu 'othr'" in failed.stderr
