"""`opencomms admin`: operators of the web console (`/console`). A new operator's one-time password is printed
once and stored only hashed; `create` on an existing name gives it a new password (and ends nothing else)."""

from __future__ import annotations

import time

import typer

from opencomms.cli.common import ConfigOpt, JsonOpt, StoreOpt, fail, open_cli_store, out
from opencomms.console.auth import KIND, create_operator

cli = typer.Typer(help="Console operators (sign-in to /console).", no_args_is_help=True)


@cli.command("create")
def admin_create(
    name: str = typer.Argument("admin", help="Operator name (letters, digits, . _ - @)."),
    config: ConfigOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a console operator (or reset its password); prints the password once."""
    st = open_cli_store(config, store)
    try:
        password = create_operator(st, name, time.time())
    except ValueError as exc:
        fail(f"{exc} (got {name!r})")
    out([{"name": name.strip().lower(), "password": password}], as_json)


@cli.command("list")
def admin_list(config: ConfigOpt = None, store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Console operators (names only)."""
    st = open_cli_store(config, store)
    out([{"name": key} for key, _ in st.scan(KIND)], as_json)


@cli.command("delete")
def admin_delete(name: str, config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """Remove a console operator (its open sessions end at their expiry or the node's restart)."""
    st = open_cli_store(config, store)
    if not st.delete(KIND, name.strip().lower()):
        fail(f"no console operator {name!r} (see `opencomms admin list`)")
    typer.echo("deleted")
