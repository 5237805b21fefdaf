"""`opencomms user`: directory users."""

from __future__ import annotations

from typing import Annotated

import typer

from opencomms.cli.common import ConfigOpt, JsonOpt, StoreOpt, directory, out

cli = typer.Typer(help="Directory users.", no_args_is_help=True)


@cli.command("create")
def user_create(
    tenant: Annotated[str, typer.Option(help="Tenant id or domain.")],
    name: Annotated[str, typer.Option(help="Display name.")],
    config: ConfigOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    user = directory(config, store).create_user(tenant, name)
    out([{"id": user.id, "tenant_id": user.tenant_id, "name": user.display_name}], as_json)


@cli.command("list")
def user_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    d = directory(config, store)
    tenant_id = d.require_tenant(tenant).id if tenant else None
    out([{"id": u.id, "tenant_id": u.tenant_id, "name": u.display_name} for u in d.list_users(tenant_id)], as_json)


@cli.command("delete")
def user_delete(user_id: str, config: ConfigOpt = None, store: StoreOpt = None) -> None:
    directory(config, store).delete_user(user_id)
    typer.echo("deleted")
