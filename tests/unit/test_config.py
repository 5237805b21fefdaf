"""Configuration: defaults, TOML file, environment overrides, CLI overrides, and clear errors."""

from __future__ import annotations

import ast
import dataclasses
import re
import typing
from pathlib import Path
from typing import Any

import pytest

import opencomms.config as config_module
import opencomms.config_sections as config_sections
from opencomms.config import ConfigError, NodeConfig, QuotaConfig, ThrottleConfig, ThrottleSettings, load_config


def test_defaults() -> None:
    cfg = load_config(env={})
    assert cfg.port == 8080 and cfg.calls.answer_timeout == 15.0 and cfg.calls.keepalive_timeout == 2700.0
    assert cfg.base_url() == "http://127.0.0.1:8080"


def test_file_then_env_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(
        'port = 9000\nstore_url = "sqlite:///x.db"\n[calls]\nanswer_timeout = 20\n[throttle]\nenabled = false\n'
    )
    cfg = load_config(path, env={"OPENCOMMS_CALLS__ANSWER_TIMEOUT": "7.5", "OPENCOMMS_TOKENS__AUDIENCES": "a,b"})
    assert cfg.port == 9000 and cfg.calls.answer_timeout == 7.5 and cfg.throttle.enabled is False
    assert cfg.tokens.audiences == ("a", "b")
    assert load_config(path, env={}, port=9100).port == 9100


def test_unknown_keys_and_bad_values_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text("prot = 1\n")
    with pytest.raises(ValueError, match="unknown configuration keys: prot"):
        load_config(path, env={})
    with pytest.raises(ValueError, match="OPENCOMMS_PORT"):
        load_config(env={"OPENCOMMS_PORT": "eighty"})


def test_tls_changes_the_base_url() -> None:
    cfg = load_config(env={}, tls_cert="c.pem", tls_key="k.pem", port=8443)
    assert cfg.base_url() == "https://localhost:8443"


def test_quotas_section_from_the_environment() -> None:
    config = load_config(
        env={"OPENCOMMS_QUOTAS__CONCURRENT_CALLS_PER_APP": "7", "OPENCOMMS_QUOTAS__PROMPT_MEMORY_MB": "0"}
    )
    assert config.quotas == QuotaConfig(concurrent_calls_per_app=7, prompt_memory_mb=0)
    assert QuotaConfig().calls_per_minute_per_app == 600 and QuotaConfig().queued_media_ops_per_call == 20


def _leaves(cls: type, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any, Any]]:
    """(path, type, default) of every field of a config dataclass, sections flattened."""
    hints = typing.get_type_hints(cls)
    out: list[tuple[tuple[str, ...], Any, Any]] = []
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            out += _leaves(kind, (*path, f.name))  # type: ignore[arg-type]
        else:
            out.append(((*path, f.name), kind, getattr(cls(), f.name)))
    return out


CHOICE_OTHERS: dict[tuple[str, ...], Any] = {
    ("log_level",): "debug",
    ("log_format",): "text",
    ("sip", "register_digest_algorithms"): ("MD5", "SHA-256"),
    ("sip", "codecs"): ("G722", "PCMA"),
    ("webrtc", "node_codecs"): ("PCMU", "G722"),
    ("meetings", "dial_in_number"): "+14255550100",
    ("webrtc", "rtpengine"): "127.0.0.1:2224",
    ("webrtc", "opus_max_bandwidth"): "fullband",
    ("webrtc", "opus_bitrate"): 24000,
    ("webrtc", "browser_opus_max_rate"): 8000,
    ("tts", "engine"): "espeak",
}
"""Fields that take one of a few values: the valid other value the loading test uses."""


def _other(kind: Any, default: Any, path: tuple[str, ...] = ()) -> Any:
    """A valid value different from `default`."""
    if path in CHOICE_OTHERS:
        return CHOICE_OTHERS[path]
    if kind is bool:
        return not default
    if kind is int:
        return default + 1
    if kind is float:
        return default + 0.25
    if kind is str:
        return f"{default}x"
    return ("a", "b")


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    return f'"{value}"' if isinstance(value, str) else repr(value)


LEAVES = _leaves(NodeConfig)


def test_every_knob_is_loadable_from_toml_and_from_the_environment(tmp_path: Path) -> None:
    top = [(p, k, d) for p, k, d in LEAVES if len(p) == 1]
    sections: dict[str, list[tuple[tuple[str, ...], Any, Any]]] = {}
    for p, k, d in LEAVES:
        if len(p) == 2:
            sections.setdefault(p[0], []).append((p, k, d))
    lines = [f"{p[0]} = {_toml(_other(k, d, p))}" for p, k, d in top]
    for name, leaves in sections.items():
        lines += [f"[{name}]"] + [f"{p[1]} = {_toml(_other(k, d, p))}" for p, k, d in leaves]
    path = tmp_path / "node.toml"
    path.write_text("\n".join(lines) + "\n")
    from_file = load_config(path, env={})
    env = {"OPENCOMMS_" + "__".join(p).upper(): str(_other(k, d, p)).strip("()").replace("'", "") for p, k, d in LEAVES}
    from_env = load_config(env=env)
    for p, kind, default in LEAVES:
        want = _other(kind, default, p)
        for cfg in (from_file, from_env):
            got: Any = cfg
            for part in p:
                got = getattr(got, part)
            assert got == want, (".".join(p), got, want)
    assert len(LEAVES) > 100 and max(len(p) for p, _, _ in LEAVES) == 2


@pytest.mark.parametrize(
    "knob",
    [
        "sip.timer_t1",
        "sip.timer_t2",
        "sip.timer_t4",
        "sip.jitter_min_delay_ms",
        "sip.jitter_max_delay_ms",
        "sip.jitter_capacity",
        "calls.dial_timeout",
        "calls.redirect_single_timeout",
        "calls.redirect_multiple_timeout",
        "media.engine_inbound_queue_frames",
        "media.engine_max_lag_ticks",
        "throttle.max_apps",
    ],
)
def test_the_documented_component_knobs_exist_and_are_documented(knob: str) -> None:
    assert tuple(knob.split(".")) in {p for p, _, _ in LEAVES}
    source = Path(config_module.__file__).read_text() + Path(config_sections.__file__).read_text()
    name = knob.split(".")[1]
    assert re.search(rf"\n    {name}: [^\n]+\n    \"\"\"", source), f"{knob} has no docstring"


def test_every_field_has_a_docstring() -> None:
    modules = (config_module, config_sections)
    trees = [ast.parse(Path(str(module.__file__)).read_text()) for module in modules]
    classes = [node for tree in trees for node in tree.body if isinstance(node, ast.ClassDef) and node.decorator_list]
    names = {c.name for c in classes}
    undocumented = []
    for cls in classes:
        for field, after in zip(cls.body, [*cls.body[1:], None], strict=True):
            if not isinstance(field, ast.AnnAssign) or not isinstance(field.target, ast.Name):
                continue
            if isinstance(field.annotation, ast.Name) and field.annotation.id in names:
                continue  # a section: its own fields are documented
            documented = isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
            if not documented:
                undocumented.append(f"{cls.name}.{field.target.id}")
    assert len(classes) >= 10 and undocumented == []


def test_the_throttle_has_one_configuration_class() -> None:
    from opencomms.api.throttle import ThrottleConfig as Used

    assert Used is ThrottleConfig is ThrottleSettings
    with pytest.raises(ValueError):
        load_config(env={"OPENCOMMS_THROTTLE__RATE": "0"})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OPENCOMMS_PORT": "eighty"}, "configuration OPENCOMMS_PORT='eighty': expected a whole number"),
        ({"OPENCOMMS_CALLS__ANSWER_TIMEOUT": "-1"}, "OPENCOMMS_CALLS__ANSWER_TIMEOUT='-1': expected a number >= 0"),
        ({"OPENCOMMS_THROTTLE__ENABLED": "maybe"}, "OPENCOMMS_THROTTLE__ENABLED='maybe': expected true or false"),
        ({"OPENCOMMS_QUOTAS__PROMPT_MEMORY_MB": "-2"}, "PROMPT_MEMORY_MB='-2': expected a number >= 0"),
        ({"OPENCOMMS_LEDGER__MAX_BATCH": "0"}, "OPENCOMMS_LEDGER__MAX_BATCH='0': expected a whole number >= 1"),
        ({"OPENCOMMS_SIP__PORT": "99999"}, "OPENCOMMS_SIP__PORT='99999': expected a port number"),
        ({"OPENCOMMS_EGRESS__ALLOW": "10.0.0.0/8,bad host"}, "OPENCOMMS_EGRESS__ALLOW='bad host': expected host"),
        ({"OPENCOMMS_MEDIA__FETCH_ALLOW_PRIVAT": "x"}, "did you mean OPENCOMMS_MEDIA__FETCH_ALLOW_PRIVATE?"),
        ({"OPENCOMMS_LOG_LEVEL": "loud"}, "OPENCOMMS_LOG_LEVEL='loud': expected one of debug, info"),
        ({"OPENCOMMS_SIP__REGISTER_DIGEST_ALGORITHMS": "MD5,FOO"}, "ALGORITHMS='FOO': expected one of MD5"),
        ({"OPENCOMMS_MEDIA__REALTIME_PRIORITY": "200"}, "PRIORITY='200': expected a whole number from 0 to 99"),
        ({"OPENCOMMS_MEDIA__CONFERENCE_TALKERS": "0"}, "TALKERS='0': expected a whole number from 1 to 16"),
        ({"OPENCOMMS_TLS_KEY": "k.pem"}, "configuration tls_key: expected tls_cert as well"),
        ({"OPENCOMMS_TOKENS__AUDIENCES": '["a",'}, "OPENCOMMS_TOKENS__AUDIENCES='[\"a\",': expected a comma"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_key_the_value_and_the_form(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        load_config(env=env)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_other_tools_variables_are_left_alone() -> None:
    assert load_config(env={"OPENCOMMS_URL": "http://x", "OPENCOMMS_BENCH_RT": "1"}).port == 8080


def test_lists_accept_json_arrays_as_users_write_them(tmp_path: Path) -> None:
    cfg = load_config(env={"OPENCOMMS_MEDIA__FETCH_ALLOW_PRIVATE": '["127.0.0.1", "::1"]'})
    assert cfg.media.fetch_allow_private == ("127.0.0.1", "::1")
    assert load_config(env={"OPENCOMMS_EGRESS__ALLOW": "10.0.0.0/8, bots.internal"}).egress.allow == (
        "10.0.0.0/8",
        "bots.internal",
    )


def test_toml_mistakes_name_the_key_or_the_file(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text("[sip]\nprot = 5060\n")
    with pytest.raises(ValueError, match=r"sip.prot.*in \[sip\]; did you mean port"):
        load_config(path, env={})
    path.write_text('[calls]\nanswer_timeout = "soon"\n')
    with pytest.raises(ValueError, match=r"calls\.answer_timeout='soon': expected a number"):
        load_config(path, env={})
    path.write_text("calls = 3\n")
    with pytest.raises(ValueError, match=r"calls=3: expected a table"):
        load_config(path, env={})
    path.write_text("port = \n")
    with pytest.raises(ValueError, match=r"node\.toml.*expected valid TOML"):
        load_config(path, env={})
    with pytest.raises(ValueError, match=r"missing\.toml.*expected a readable TOML file"):
        load_config(tmp_path / "missing.toml", env={})


@pytest.mark.parametrize("number", ["14255550199", "+0123", "+1 425 555", "tel:+14255550199"])
def test_a_dial_in_number_that_is_not_e164_is_refused(number: str) -> None:
    with pytest.raises(ConfigError, match=r"E\.164"):
        load_config(env={"OPENCOMMS_MEETINGS__DIAL_IN_NUMBER": number})
