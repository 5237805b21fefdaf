"""What every `opencomms` command shares: the --config/--store/--json options, opening the store, printing rows,
and turning a user's mistake into one line on stderr with exit code 2 (`UserError`; `main` catches the rest)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from opencomms.config import NodeConfig, load_config
from opencomms.directory import Directory
from opencomms.store import Store, open_store
from opencomms.store.redis_common import default_node_id, redis_target

USAGE = 2
"""Exit code of every user error (bad value, unknown id, store unreachable), as click uses for bad options."""

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML configuration file.")]
StoreOpt = Annotated[str | None, typer.Option("--store", help="Store URL (sqlite:///path.db or redis://host:port/db).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def fail(message: str) -> NoReturn:
    """One line on stderr, exit 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(USAGE)


def config(path: Path | None, store: str | None) -> NodeConfig:
    try:
        return load_config(path, store_url=store)
    except ValueError as exc:  # ConfigError: already one line naming the key, the value and the expected form
        fail(str(exc))


def open_cli_store(path: Path | None, store: str | None) -> Store:
    cfg = config(path, store)
    if cfg.store_url.startswith("memory:"):
        fail("the CLI needs a persistent store: pass --store sqlite:///path.db (or set OPENCOMMS_STORE_URL)")
    cluster = redis_target(cfg.store_url, cfg.cluster)
    if cluster is not None:  # a cluster's Redis: the CLI is one more client (its own name, never an owner)
        return open_store(cfg.store_url, cluster=dataclasses.replace(cluster, node=f"cli-{default_node_id()}"))
    if not cfg.store_url.startswith("sqlite:///"):
        fail(f"store URL {cfg.store_url!r} is not supported: use sqlite:///path.db or redis://host:port/db")
    return open_store(cfg.store_url)


def directory(path: Path | None, store: str | None) -> Directory:
    return Directory(open_cli_store(path, store))


def out(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        typer.echo("  ".join(f"{k}={v}" for k, v in row.items()))


def show(doc: dict[str, Any], as_json: bool) -> None:
    """One object: JSON, or `key: value` lines (nested values as compact JSON)."""
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    width = max((len(k) for k in doc), default=0)
    for key, value in doc.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            typer.echo(f"{key}:")
            for item in value:
                typer.echo("  - " + "  ".join(f"{k}={_text(v)}" for k, v in item.items()))
            continue
        typer.echo(f"{key.ljust(width)}  {_text(value)}")


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return ", ".join(map(str, value)) or "-"
    return json.dumps(value)


def warn_if_refused(cfg: NodeConfig, url: str) -> None:
    """The operator registers the webhook, so a URL the egress policy refuses is a warning, not an error: the node
    that serves may have another allow list. (Host names are judged when the node connects.)"""
    from opencomms.net.egress import EgressPolicy, EgressRefused, merge_allow  # and aiohttp: loaded here, not always

    mc = cfg.media
    policy = EgressPolicy(merge_allow(cfg.egress.allow, mc.fetch_allow_private, mc.app_hosted_allow_private))
    try:
        policy.check_url(url)
    except EgressRefused as exc:
        typer.echo(f"warning: the node will not post to this callback URL: {exc.reason} (see egress.allow)", err=True)
