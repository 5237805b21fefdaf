"""Configuration: defaults, TOML file, environment overrides, CLI overrides, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from opencomms.config import QuotaConfig, load_config


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
