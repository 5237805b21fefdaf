"""`opencomms app`: bots with client credentials, permissions, a calling webhook and redirect URIs."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from opencomms.cli.common import ConfigOpt, JsonOpt, StoreOpt, config, directory, fail, out, show, warn_if_refused
from opencomms.directory import AppChange, check_url
from opencomms.domain.directory import Application

cli = typer.Typer(help="Applications (bots) with client credentials and permissions.", no_args_is_help=True)


def _row(a: Application) -> dict[str, Any]:
    return {
        "client_id": a.id,
        "tenant_id": a.tenant_id,
        "name": a.display_name,
        "permissions": ",".join(a.permissions),
        "callback_url": a.callback_url,
        "redirect_uris": ",".join(a.redirect_uris),
        "public_client": a.public_client,
        "secrets": len(a.secret_hashes),
    }


@cli.command("create")
def app_create(
    tenant: Annotated[str, typer.Option(help="Tenant id or domain.")],
    name: Annotated[str, typer.Option(help="Display name of the bot.")],
    permission: Annotated[
        list[str] | None, typer.Option("--permission", "-p", help="Granted application permission (repeat).")
    ] = None,
    callback_url: Annotated[
        str | None, typer.Option(help="Calling webhook: where incoming calls are notified.")
    ] = None,
    redirect_uri: Annotated[list[str] | None, typer.Option(help="Sign-in redirect URI (repeat).")] = None,
    public_client: Annotated[
        bool, typer.Option("--public-client", help="Users sign in to it without a client secret (CLI, desktop).")
    ] = False,
    config_path: ConfigOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a bot. Its client secret is printed once and cannot be shown again."""
    if callback_url:
        check_url(callback_url, "callback URL")
        warn_if_refused(config(config_path, store), callback_url)
    d = directory(config_path, store)
    created, secret = d.create_app(tenant, name, permissions=permission or (), callback_url=callback_url)
    if redirect_uri or public_client:
        change = AppChange(redirect_uris=tuple(redirect_uri) if redirect_uri else None, public_client=public_client)
        created = d.edit_app(created.id, change)
    row = {"client_id": created.id, "client_secret": secret, **_row(created)}
    del row["secrets"]
    out([row], as_json)
    if not as_json:
        typer.echo("# store the client secret now: it is kept only hashed and cannot be shown again", err=True)


@cli.command("list")
def app_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    config_path: ConfigOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    d = directory(config_path, store)
    tenant_id = d.require_tenant(tenant).id if tenant else None
    out([_row(a) for a in d.list_apps(tenant_id)], as_json)


@cli.command("show")
def app_show(client_id: str, config_path: ConfigOpt = None, store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """An application's settings and its instances (numbers and SIP URIs); never its secrets."""
    d = directory(config_path, store)
    a = d.require_app(client_id)
    doc = {
        **_row(a),
        "permissions": list(a.permissions),
        "redirect_uris": list(a.redirect_uris),
        "instances": [
            {"id": i.id, "name": i.display_name, "number": i.phone_number, "sip_uri": i.sip_uri}
            for i in d.list_instances(a.id)
        ],
    }
    show(doc, as_json)


@cli.command("update")
def app_update(
    client_id: str,
    name: Annotated[str | None, typer.Option(help="New display name.")] = None,
    callback_url: Annotated[str | None, typer.Option(help='New calling webhook ("" removes it).')] = None,
    permission: Annotated[
        list[str] | None, typer.Option("--permission", "-p", help="Replace the permissions with these (repeat).")
    ] = None,
    add_permission: Annotated[list[str] | None, typer.Option(help="Grant a permission (repeat).")] = None,
    remove_permission: Annotated[list[str] | None, typer.Option(help="Revoke a permission (repeat).")] = None,
    redirect_uri: Annotated[list[str] | None, typer.Option(help="Replace the redirect URIs (repeat).")] = None,
    add_redirect_uri: Annotated[list[str] | None, typer.Option(help="Add a redirect URI (repeat).")] = None,
    remove_redirect_uri: Annotated[list[str] | None, typer.Option(help="Remove a redirect URI (repeat).")] = None,
    public_client: Annotated[
        bool | None,
        typer.Option("--public-client/--confidential-client", help="Allow sign-in without a client secret, or not."),
    ] = None,
    config_path: ConfigOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a bot's name, webhook, permissions or redirect URIs. Running nodes see the change within a second."""
    if callback_url:
        check_url(callback_url, "callback URL")
        warn_if_refused(config(config_path, store), callback_url)
    change = AppChange(
        name=name,
        callback_url=callback_url,
        permissions=None if permission is None else tuple(permission),
        add_permissions=tuple(add_permission or ()),
        remove_permissions=tuple(remove_permission or ()),
        redirect_uris=None if redirect_uri is None else tuple(redirect_uri),
        add_redirect_uris=tuple(add_redirect_uri or ()),
        remove_redirect_uris=tuple(remove_redirect_uri or ()),
        public_client=public_client,
    )
    if change == AppChange():
        fail("nothing to change: give --name, --callback-url, --permission, --add-permission, … (see --help)")
    out([_row(directory(config_path, store).edit_app(client_id, change))], as_json)


@cli.command("add-secret")
def app_add_secret(
    client_id: str, config_path: ConfigOpt = None, store: StoreOpt = None, as_json: JsonOpt = False
) -> None:
    """Add another client secret (rotate credentials without downtime)."""
    out([{"client_secret": directory(config_path, store).add_secret(client_id)}], as_json)


@cli.command("delete")
def app_delete(client_id: str, config_path: ConfigOpt = None, store: StoreOpt = None) -> None:
    directory(config_path, store).delete_app(client_id)
    typer.echo("deleted")
