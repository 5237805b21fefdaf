"""The IVR's menu: YAML in, frozen dataclasses out, with an error naming the exact place of every mistake.

A menu file (see `menu.yaml` next to this module) has prompts (text spoken by the node's text-to-speech, or WAV
URLs the node fetches), menus of DTMF options (go to a submenu, go back, repeat, say something, transfer,
voicemail, hang up), retry and timeout rules, transfer targets and the voicemail settings. `load_menu` checks all
of it before a single call is answered: unknown fields, unknown menus, undefined targets, bad keys, bad URLs,
out-of-range numbers and undefined `${VARIABLES}` are `MenuError`s that say where (`menus.sales.options.'7'`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

KEYS = frozenset("0123456789*#ABCD")
"""DTMF keys a caller can press."""
MAX_MENU_PROMPTS = 12
MAX_SHORT_PROMPTS = 4
"""So that any prompt sequence the IVR plays at once stays within Graph's 20 prompts per playPrompt."""
MAX_TEXT = 2000
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_VOICE = re.compile(r"^[A-Za-z0-9_+-]{1,40}$")


class MenuError(ValueError):
    """A menu file that cannot run; `where` is a dotted path into the document (empty for the whole file)."""

    def __init__(self, where: str, message: str) -> None:
        self.where = where
        self.message = message
        super().__init__(f"{where}: {message}" if where else message)


# -- prompts -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextPrompt:
    """Text the node speaks with its text-to-speech (`#opencomms.textPrompt`)."""

    text: str
    voice: str | None = None
    language: str | None = None

    def to_graph(self) -> dict[str, Any]:
        body: dict[str, Any] = {"@odata.type": "#opencomms.textPrompt", "text": self.text}
        if self.voice:
            body["voice"] = self.voice
        if self.language:
            body["language"] = self.language
        return body


@dataclass(frozen=True, slots=True)
class WavPrompt:
    """A WAV file the node fetches (and caches by `resource_id` when given)."""

    url: str
    resource_id: str | None = None

    def to_graph(self) -> dict[str, Any]:
        info: dict[str, Any] = {"@odata.type": "#microsoft.graph.mediaInfo", "uri": self.url}
        if self.resource_id:
            info["resourceId"] = self.resource_id
        return {"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": info}


Prompt = TextPrompt | WavPrompt
Prompts = tuple[Prompt, ...]


# -- options: what a key does --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GoTo:
    """Enter another menu (a submenu); `back` returns from it."""

    menu: str


@dataclass(frozen=True, slots=True)
class Back:
    """Return to the menu this one was entered from (the start menu repeats itself)."""


@dataclass(frozen=True, slots=True)
class Repeat:
    """Play the current menu again."""


@dataclass(frozen=True, slots=True)
class Say:
    """Speak some information, then offer `then` (default: the current menu)."""

    prompts: Prompts
    then: str | None = None


@dataclass(frozen=True, slots=True)
class Transfer:
    """Transfer the caller to a named target of the `targets` section."""

    target: str


@dataclass(frozen=True, slots=True)
class Voicemail:
    """Record a message into `mailbox`."""

    mailbox: str = "general"


@dataclass(frozen=True, slots=True)
class HangUp:
    """Say goodbye (the `goodbye` prompt unless given) and hang up."""

    prompts: Prompts | None = None


Option = GoTo | Back | Repeat | Say | Transfer | Voicemail | HangUp


# -- the document --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """Where a transfer goes: a bot (`application` / `application_instance` id) or a `phone` number (E.164)."""

    kind: str
    """"application", "applicationInstance" or "phone"."""
    id: str
    display_name: str | None = None

    def to_graph(self) -> dict[str, Any]:
        """The invitationParticipantInfo Graph's transfer takes as `transferTarget`."""
        ident: dict[str, Any] = {"@odata.type": "#microsoft.graph.identity", "id": self.id}
        if self.display_name:
            ident["displayName"] = self.display_name
        return {
            "@odata.type": "#microsoft.graph.invitationParticipantInfo",
            "identity": {"@odata.type": "#microsoft.graph.identitySet", self.kind: ident},
        }


@dataclass(frozen=True, slots=True)
class Menu:
    id: str
    prompts: Prompts
    options: Mapping[str, Option]
    key_timeout: float | None = None
    """Seconds to wait for a key once the prompt has played (None: the document's default)."""


@dataclass(frozen=True, slots=True)
class VoicemailConfig:
    prompt: Prompt
    """Played before the beep (recordResponse takes exactly one prompt)."""
    max_seconds: int = 60
    stop_tones: tuple[str, ...] = ("#",)
    beep: bool = True
    initial_silence: int = 5
    max_silence: int = 5
    saved: Prompts = (TextPrompt("Thank you, your message has been saved."),)
    nothing: Prompts = (TextPrompt("Sorry, I did not get a message."),)


@dataclass(frozen=True, slots=True)
class Messages:
    """The IVR's own phrases; each can be replaced in the document's `messages` section."""

    invalid: Prompts = (TextPrompt("Sorry, that is not a valid choice."),)
    timeout: Prompts = (TextPrompt("Sorry, I did not hear a choice."),)
    too_many: Prompts = (TextPrompt("Sorry, I could not understand your choice."),)
    goodbye: Prompts = (TextPrompt("Thank you for calling. Goodbye."),)
    transferring: Prompts = (TextPrompt("Please hold while I transfer your call."),)
    transfer_failed: Prompts = (TextPrompt("Sorry, nobody is available to take your call."),)


@dataclass(frozen=True, slots=True)
class MenuConfig:
    """A whole, validated IVR."""

    start: str
    menus: Mapping[str, Menu]
    greeting: Prompts = ()
    key_timeout: float = 5.0
    max_retries: int = 2
    give_up: Option = field(default_factory=HangUp)
    targets: Mapping[str, Target] = field(default_factory=dict)
    voicemail: VoicemailConfig | None = None
    messages: Messages = field(default_factory=Messages)
    voice: str | None = None

    def timeout_for(self, menu: str) -> float:
        own = self.menus[menu].key_timeout
        return self.key_timeout if own is None else own

    def wav_prompts(self) -> list[WavPrompt]:
        """The WAV files of the greeting and the menus, once each (to prefetch when answering)."""
        prompts = [*self.greeting, *(p for m in self.menus.values() for p in m.prompts)]
        return list(dict.fromkeys(p for p in prompts if isinstance(p, WavPrompt)))


# -- parsing -------------------------------------------------------------------------------------------------


def load_menu_file(path: str | Path, variables: Mapping[str, str] | None = None) -> MenuConfig:
    """Read and validate a menu file; `${NAME}` in strings comes from `variables` (default: the environment)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise MenuError("", f"cannot read {path}: {exc.strerror or exc}") from None
    return load_menu(text, variables)


def load_menu(text: str, variables: Mapping[str, str] | None = None) -> MenuConfig:
    """Parse and validate a menu document (YAML text)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise MenuError(where, f"not valid YAML: {problem}") from None
    return parse_menu(doc, os.environ if variables is None else variables)


_TOP = {
    "start",
    "menus",
    "greeting",
    "key_timeout",
    "max_retries",
    "give_up",
    "targets",
    "voicemail",
    "messages",
    "voice",
}


def parse_menu(doc: Any, variables: Mapping[str, str]) -> MenuConfig:
    """Validate an already-parsed document (a dict) into a `MenuConfig`."""
    doc = _expand(doc, "", variables)
    top = _mapping(doc, "", _TOP, required=("menus",))
    voice = _voice(top.get("voice"), "voice")
    p = _Parser(voice)
    raw_menus = _mapping(top["menus"], "menus")
    if not raw_menus:
        raise MenuError("menus", "at least one menu is required")
    for name in raw_menus:
        _name(name, "menus")
    start = top.get("start", next(iter(raw_menus)))
    if not isinstance(start, str) or start not in raw_menus:
        raise MenuError("start", f"unknown menu {start!r} (menus: {', '.join(map(str, raw_menus))})")
    targets = {
        _name(name, "targets"): _target(value, f"targets.{name}")
        for name, value in _mapping(top.get("targets", {}), "targets").items()
    }
    voicemail = p.voicemail(top["voicemail"], "voicemail") if top.get("voicemail") is not None else None
    menus = {name: p.menu(name, value, f"menus.{name}") for name, value in raw_menus.items()}
    give_up = p.option(top.get("give_up", "hangup"), "give_up")
    config = MenuConfig(
        start=start,
        menus=menus,
        greeting=p.prompts(top.get("greeting", []), "greeting", MAX_SHORT_PROMPTS, allow_empty=True),
        key_timeout=_number(top.get("key_timeout", 5), "key_timeout", 1, 60),
        max_retries=int(_number(top.get("max_retries", 2), "max_retries", 0, 10, integer=True)),
        give_up=give_up,
        targets=targets,
        voicemail=voicemail,
        messages=p.messages(top.get("messages", {}), "messages"),
        voice=voice,
    )
    _check_references(config)
    return config


def _expand(value: Any, where: str, variables: Mapping[str, str]) -> Any:
    """Replace `${NAME}` in every string; an undefined name is an error naming where it is used."""
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in variables:
                raise MenuError(where, f"variable ${{{name}}} is not defined")
            return variables[name]

        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand(v, _join(where, str(k)), variables) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{where}[{i}]", variables) for i, v in enumerate(value)]
    return value


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _mapping(
    value: Any, where: str, allowed: set[str] | None = None, required: tuple[str, ...] = (), *, any_keys: bool = False
) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise MenuError(where, f"expected a mapping, got {_kind(value)}")
    for key in value:
        if not isinstance(key, str) and not any_keys:
            raise MenuError(where, f"keys must be strings, got {key!r}")
        if allowed is not None and key not in allowed:
            raise MenuError(_join(where, key), f"unknown field (expected one of: {', '.join(sorted(allowed))})")
    for key in required:
        if key not in value:
            raise MenuError(where, f"missing required field {key!r}")
    return value


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", type(None): "nothing"}.get(
        type(value), type(value).__name__
    )


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value):
        raise MenuError(where, f"{value!r} is not a valid name (letters, digits, '_' and '-')")
    return value


def _number(value: Any, where: str, lo: float, hi: float, *, integer: bool = False) -> float:
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type:
        raise MenuError(where, f"expected {'an integer' if integer else 'a number'}, got {_kind(value)}")
    if not lo <= value <= hi:
        raise MenuError(where, f"must be between {lo:g} and {hi:g}, got {value}")
    return float(value)


def _voice(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _VOICE.match(value):
        raise MenuError(where, f"{value!r} is not a voice name (like 'en-us')")
    return value


def _key(value: Any, where: str) -> str:
    key = str(value).upper() if isinstance(value, int | str) and not isinstance(value, bool) else ""
    if len(key) != 1 or key not in KEYS:
        raise MenuError(where, f"{value!r} is not a key (one of 0-9, '*', '#', A-D; quote '*' and '#' in YAML)")
    return key


def _target(value: Any, where: str) -> Target:
    obj = _mapping(value, where, {"application", "application_instance", "phone", "display_name"})
    kinds = [k for k in ("application", "application_instance", "phone") if k in obj]
    if len(kinds) != 1:
        raise MenuError(where, "give exactly one of 'application', 'application_instance' or 'phone'")
    kind = kinds[0]
    ident = obj[kind]
    if not isinstance(ident, str | int) or isinstance(ident, bool) or not str(ident).strip():
        raise MenuError(_join(where, kind), f"expected an id, got {_kind(ident)}")
    ident = str(ident).strip()
    if kind == "phone" and not re.fullmatch(r"\+[1-9]\d{5,14}", ident):
        raise MenuError(_join(where, kind), "a phone number must be E.164, like '+14255550123'")
    name = obj.get("display_name")
    if name is not None and not isinstance(name, str):
        raise MenuError(_join(where, "display_name"), f"expected a string, got {_kind(name)}")
    return Target({"application_instance": "applicationInstance"}.get(kind, kind), ident, name)


class _Parser:
    """Parses the parts that depend on the document's default voice."""

    def __init__(self, voice: str | None) -> None:
        self.voice = voice

    def prompt(self, value: Any, where: str) -> Prompt:
        if isinstance(value, str):
            return TextPrompt(self._text(value, where), self.voice)
        obj = _mapping(value, where, {"text", "voice", "language", "url", "resource_id"})
        if ("text" in obj) == ("url" in obj):
            raise MenuError(where, "a prompt is a string, or a mapping with either 'text' or 'url'")
        if "text" in obj:
            extra = set(obj) - {"text", "voice", "language"}
            if extra:
                raise MenuError(_join(where, sorted(extra)[0]), "only goes with 'url'")
            voice = _voice(obj.get("voice"), _join(where, "voice")) or self.voice
            language = _voice(obj.get("language"), _join(where, "language"))
            return TextPrompt(self._text(obj["text"], _join(where, "text")), voice, language)
        extra = set(obj) - {"url", "resource_id"}
        if extra:
            raise MenuError(_join(where, sorted(extra)[0]), "only goes with 'text'")
        url = obj["url"]
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise MenuError(_join(where, "url"), f"{url!r} is not an http(s) URL of a WAV file")
        resource_id = obj.get("resource_id")
        if resource_id is not None and not isinstance(resource_id, str):
            raise MenuError(_join(where, "resource_id"), f"expected a string, got {_kind(resource_id)}")
        return WavPrompt(url, resource_id)

    def _text(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise MenuError(where, "text must be a non-empty string")
        if len(value) > MAX_TEXT:
            raise MenuError(where, f"text is longer than {MAX_TEXT} characters")
        return value.strip()

    def prompts(self, value: Any, where: str, limit: int, *, allow_empty: bool = False) -> Prompts:
        items = value if isinstance(value, list) else [value]
        if not items and not allow_empty:
            raise MenuError(where, "at least one prompt is required")
        if len(items) > limit:
            raise MenuError(where, f"at most {limit} prompts, got {len(items)}")
        return tuple(
            self.prompt(item, f"{where}[{i}]" if isinstance(value, list) else where) for i, item in enumerate(items)
        )

    def menu(self, name: str, value: Any, where: str) -> Menu:
        obj = _mapping(value, where, {"prompt", "options", "key_timeout"}, required=("prompt", "options"))
        raw = _mapping(obj["options"], _join(where, "options"), any_keys=True)  # `1:` is an int in YAML
        if not raw:
            raise MenuError(_join(where, "options"), "a menu needs at least one option")
        options: dict[str, Option] = {}
        for k, v in raw.items():
            key = _key(k, _join(where, "options"))
            at = f"{where}.options.'{key}'"
            if key in options:
                raise MenuError(at, "the same key is given twice")
            options[key] = self.option(v, at)
        timeout = obj.get("key_timeout")
        return Menu(
            id=name,
            prompts=self.prompts(obj["prompt"], _join(where, "prompt"), MAX_MENU_PROMPTS),
            options=options,
            key_timeout=None if timeout is None else _number(timeout, _join(where, "key_timeout"), 1, 60),
        )

    def option(self, value: Any, where: str) -> Option:
        shorthand: dict[str, Option] = {
            "back": Back(),
            "repeat": Repeat(),
            "hangup": HangUp(),
            "voicemail": Voicemail(),
        }
        if isinstance(value, str):
            if value in shorthand:
                return shorthand[value]
            raise MenuError(
                where, f"unknown action {value!r} (use back, repeat, hangup, voicemail or a mapping like 'menu: sales')"
            )
        obj = _mapping(value, where, {"menu", "say", "then", "transfer", "voicemail", "hangup"})
        actions = [k for k in ("menu", "say", "transfer", "voicemail", "hangup") if k in obj]
        if len(actions) != 1:
            raise MenuError(where, "give exactly one of 'menu', 'say', 'transfer', 'voicemail' or 'hangup'")
        action = actions[0]
        if "then" in obj and action != "say":
            raise MenuError(_join(where, "then"), "only goes with 'say'")
        arg = obj[action]
        at = _join(where, action)
        if action == "menu":
            return GoTo(_name(arg, at))
        if action == "say":
            then = obj.get("then")
            return Say(
                self.prompts(arg, at, MAX_SHORT_PROMPTS), None if then is None else _name(then, _join(where, "then"))
            )
        if action == "transfer":
            return Transfer(_name(arg, at))
        if action == "voicemail":
            return Voicemail("general" if arg is True or arg is None else _name(arg, at))
        return HangUp(None if arg is True or arg is None else self.prompts(arg, at, MAX_SHORT_PROMPTS))

    def voicemail(self, value: Any, where: str) -> VoicemailConfig:
        fields = {"prompt", "max_seconds", "stop_tones", "beep", "initial_silence", "max_silence", "saved", "nothing"}
        obj = _mapping(value, where, fields, required=("prompt",))
        prompts = self.prompts(obj["prompt"], _join(where, "prompt"), 1)
        stops = obj.get("stop_tones", ["#"])
        if not isinstance(stops, list):
            raise MenuError(_join(where, "stop_tones"), f"expected a list of keys, got {_kind(stops)}")
        beep = obj.get("beep", True)
        if not isinstance(beep, bool):
            raise MenuError(_join(where, "beep"), f"expected true or false, got {_kind(beep)}")
        defaults = VoicemailConfig(prompt=prompts[0])
        return VoicemailConfig(
            prompt=prompts[0],
            max_seconds=int(_number(obj.get("max_seconds", 60), _join(where, "max_seconds"), 1, 120, integer=True)),
            stop_tones=tuple(dict.fromkeys(_key(k, f"{where}.stop_tones[{i}]") for i, k in enumerate(stops))),
            beep=beep,
            initial_silence=int(
                _number(obj.get("initial_silence", 5), _join(where, "initial_silence"), 1, 120, integer=True)
            ),
            max_silence=int(_number(obj.get("max_silence", 5), _join(where, "max_silence"), 1, 120, integer=True)),
            saved=self._maybe(obj, "saved", where, defaults.saved),
            nothing=self._maybe(obj, "nothing", where, defaults.nothing),
        )

    def messages(self, value: Any, where: str) -> Messages:
        defaults = Messages()
        names = set(Messages.__dataclass_fields__)
        obj = _mapping(value, where, names)
        return Messages(**{n: self._maybe(obj, n, where, getattr(defaults, n)) for n in sorted(names)})

    def _maybe(self, obj: dict[str, Any], key: str, where: str, default: Prompts) -> Prompts:
        if key not in obj:
            return tuple(TextPrompt(p.text, self.voice) if isinstance(p, TextPrompt) else p for p in default)
        return self.prompts(obj[key], _join(where, key), MAX_SHORT_PROMPTS, allow_empty=True)


def _check_references(config: MenuConfig) -> None:
    """Every menu, target and the voicemail an option names must exist."""

    def check(option: Option, where: str) -> None:
        known = ", ".join(config.menus)
        if isinstance(option, GoTo) and option.menu not in config.menus:
            raise MenuError(where, f"unknown menu {option.menu!r} (menus: {known})")
        if isinstance(option, Say) and option.then is not None and option.then not in config.menus:
            raise MenuError(_join(where, "then"), f"unknown menu {option.then!r} (menus: {known})")
        if isinstance(option, Transfer) and option.target not in config.targets:
            defined = ", ".join(config.targets) or "none defined"
            raise MenuError(where, f"unknown transfer target {option.target!r} (targets: {defined})")
        if isinstance(option, Voicemail) and config.voicemail is None:
            raise MenuError(where, "voicemail is used but there is no 'voicemail' section")

    for menu in config.menus.values():
        for key, option in menu.options.items():
            check(option, f"menus.{menu.id}.options.'{key}'")
    check(config.give_up, "give_up")
    if isinstance(config.give_up, GoTo | Back | Repeat | Say):
        raise MenuError("give_up", "must end the menu: transfer, voicemail or hangup")
