"""`opencomms tenant`: organisations."""

from __future__ import annotations

from typing import Annotated

import typer

from opencomms.cli.common import ConfigOpt, JsonOpt, StoreOpt, directory, out

cli = typer.Typer(help="Tenants (organisations).", no_args_is_help=True)


@cli.command("create")
def tenant_create(
    name: Annotated[str, typer.Option(help="Display name.")],
    domain: Annotated[str | None, typer.Option(help="Domain, usable in token URLs instead of the id.")] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    tenant = directory(config, store).create_tenant(name, domain)
    out([{"id": tenant.id, "name": tenant.name, "domain": tenant.domain}], as_json)


@cli.command("list")
def tenant_list(config: ConfigOpt = None, store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    rows = [{"id": t.id, "name": t.name, "domain": t.domain} for t in directory(config, store).list_tenants()]
    out(rows, as_json)


@cli.command("delete")
def tenant_delete(tenant: str, config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """Delete a tenant and its applications, users and instances."""
    directory(config, store).delete_tenant(tenant)
    typer.echo("deleted")
