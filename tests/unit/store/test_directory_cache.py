"""The directory's lookup cache (apps, instances, addresses) never hides a change for long.

The node looks these up on every call; the CLI changes them in another process on the same SQLite file.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from opencomms import directory as directory_module
from opencomms.directory import Directory
from opencomms.store import MemoryStore, SqliteStore

NUMBER = "+14255550100"


def test_changes_by_another_process_show(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(directory_module, "MARKER_INTERVAL", 0.0)  # read the marker on every lookup
    path = str(tmp_path / "node.db")
    node_store, cli_store = SqliteStore(path), SqliteStore(path)
    try:
        node, cli = Directory(node_store), Directory(cli_store)
        tenant = cli.create_tenant("T")
        app, _ = cli.create_app(tenant.id, "bot")
        inst = cli.create_instance(app.id, "Reception", phone_number=NUMBER)
        assert node.find_instance_by_address(NUMBER) == inst
        assert node.get_app(app.id) == app
        cli.update_app(replace(app, callback_url="https://bot.example/cb"))
        cli.delete_instance(inst.id)
        assert node.find_instance_by_address(NUMBER) is None
        assert node.get_app(app.id) == replace(app, callback_url="https://bot.example/cb")
    finally:
        node_store.close()
        cli_store.close()


def test_writes_through_any_directory_on_the_store_show_at_once() -> None:
    store = MemoryStore()
    first, second = Directory(store), Directory(store)
    tenant = first.create_tenant("T")
    app, _ = first.create_app(tenant.id, "bot")
    assert second.find_instance_by_address(NUMBER) is None  # cached as missing
    inst = first.create_instance(app.id, "Reception", phone_number=NUMBER)
    assert second.find_instance_by_address(NUMBER) == inst
    first.delete_app(app.id)
    assert second.find_instance_by_address(NUMBER) is None and second.get_app(app.id) is None
