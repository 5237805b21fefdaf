"""The generated Kamailio configuration: every node is a probed dispatcher destination, dialogs are record-routed,
a node that times out or answers 503 is marked and the next one tried; and Kamailio itself accepts the file."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from opencomms.cluster.kamailio import MODULE_DIRS, KamailioPlan, dispatcher_list, kamailio_cfg

NODES = (("127.0.0.1", 5071), ("127.0.0.1", 5072), ("127.0.0.1", 5073))


def test_each_node_is_a_probed_destination_of_one_set() -> None:
    lines = dispatcher_list(NODES).splitlines()[1:]
    assert lines == [f"1 sip:127.0.0.1:{port} 8 0 node={i}" for i, (_, port) in enumerate(NODES)]


def test_the_configuration_probes_record_routes_and_fails_over() -> None:
    cfg = kamailio_cfg(KamailioPlan("127.0.0.1", 5060, NODES, "/run/ds.list", probe_interval=2))
    assert "listen=udp:127.0.0.1:5060" in cfg and "listen=tcp:127.0.0.1:5060" in cfg
    assert 'modparam("dispatcher", "ds_ping_interval", 2)' in cfg
    assert 'modparam("dispatcher", "ds_ping_method", "OPTIONS")' in cfg
    assert 'modparam("dispatcher", "list_file", "/run/ds.list")' in cfg
    assert "record_route();" in cfg and "loose_route()" in cfg
    assert 'ds_mark_dst("ip")' in cfg and "ds_next_dst()" in cfg


@pytest.mark.skipif(shutil.which("kamailio") is None, reason="kamailio is not installed")
def test_kamailio_accepts_the_generated_file(tmp_path: Path) -> None:
    modules = next((d for d in MODULE_DIRS if Path(d, "dispatcher.so").exists()), MODULE_DIRS[0])
    ds = tmp_path / "dispatcher.list"
    ds.write_text(dispatcher_list(NODES))
    cfg = tmp_path / "kamailio.cfg"
    cfg.write_text(kamailio_cfg(KamailioPlan("127.0.0.1", 5060, NODES, str(ds), module_dir=modules)))
    checked = subprocess.run(["kamailio", "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr[-2000:]
