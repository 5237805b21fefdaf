"""[cluster]: a node on Redis gets its name, key prefix and timings from the configuration."""

from __future__ import annotations

import pytest

from opencomms.config import ConfigError, load_config
from opencomms.store.redis_common import redis_target


def test_cluster_settings_reach_the_redis_target() -> None:
    env = {
        "OPENCOMMS_STORE_URL": "redis://127.0.0.1:6379/2",
        "OPENCOMMS_CLUSTER__NODE_ID": "node-7",
        "OPENCOMMS_CLUSTER__KEY_PREFIX": "acme:",
        "OPENCOMMS_CLUSTER__LEASE": "6",
    }
    cfg = load_config(env=env)
    target = redis_target(cfg.store_url, cfg.cluster)
    assert target is not None
    assert (target.node, target.prefix, target.lease_ms, target.claim_idle_ms) == ("node-7", "acme:", 6000, 1500)
    assert target.key("conv", "c1") == "acme:conv:c1"
    assert redis_target("sqlite:///x.db", cfg.cluster) is None
    unnamed = redis_target(cfg.store_url, load_config(env={}).cluster)
    assert unnamed is not None and unnamed.node  # host-pid by default


def test_cluster_timings_must_be_positive() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(env={"OPENCOMMS_CLUSTER__POLL": "0"})
    assert "OPENCOMMS_CLUSTER__POLL" in str(err.value)
