"""`opencomms user`: directory users."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from opencomms.cli.common import ConfigOpt, JsonOpt, StoreOpt, directory, out

cli = typer.Typer(help="Directory users.", no_args_is_help=True)


@cli.command("create")
def user_create(
    tenant: Annotated[str, typer.Option(help="Tenant id or domain.")],
    name: Annotated[str, typer.Option(help="Display name.")],
    upn: Annotated[str | None, typer.Option(help="User principal name for sign-in (alice@contoso.example).")] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    user = directory(config, store).create_user(tenant, name, upn=upn)
    out([{"id": user.id, "tenant_id": user.tenant_id, "name": user.display_name, "upn": user.upn}], as_json)


@cli.command("set-password")
def user_set_password(
    user: Annotated[str, typer.Argument(help="User id or user principal name.")],
    password: Annotated[
        str | None,
        typer.Option(help="The password (prefer the prompt or OPENCOMMS_USER_PASSWORD: options land in history)."),
    ] = None,
    remove: Annotated[bool, typer.Option("--remove", help="Remove the password: the user cannot sign in.")] = False,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """Let a user sign in (authorization code, device code); the password is kept only as a salted scrypt hash."""
    if not remove and password is None:
        password = os.environ.get("OPENCOMMS_USER_PASSWORD") or typer.prompt(
            "Password", hide_input=True, confirmation_prompt=True
        )
    directory(config, store).set_password(user, None if remove else password)
    typer.echo("password removed" if remove else "password set")


@cli.command("set-role")
def user_set_role(
    user: Annotated[str, typer.Argument(help="User id or user principal name.")],
    role: Annotated[list[str] | None, typer.Argument(help="Roles to hold (admin: the operators' console).")] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """Replace a user's platform roles; none given removes them all."""
    updated = directory(config, store).set_roles(user, role or ())
    typer.echo(f"roles: {', '.join(updated.roles) or '(none)'}")


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
