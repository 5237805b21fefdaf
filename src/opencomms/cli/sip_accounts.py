"""`opencomms sip-account`: softphone accounts of the SIP registrar (only digest hashes of passwords are kept)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from opencomms.cli.common import ConfigOpt, JsonOpt, StoreOpt, config, open_cli_store, out
from opencomms.gateway.accounts import SipAccounts, realm_for

cli = typer.Typer(help="Softphone accounts of the SIP registrar.", no_args_is_help=True)


def _accounts(config_path: Path | None, store: str | None) -> SipAccounts:
    return SipAccounts(open_cli_store(config_path, store), realm_for(config(config_path, store).sip))


@cli.command("add")
def sip_account_add(
    tenant: Annotated[str, typer.Option(help="Tenant id or domain.")],
    username: Annotated[str, typer.Option(help="SIP user name the softphone registers with.")],
    password: Annotated[
        str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True, help="Digest password.")
    ],
    name: Annotated[str | None, typer.Option(help="Display name (default: the user name).")] = None,
    user: Annotated[str | None, typer.Option(help="Directory user id: calls to this user ring the softphone.")] = None,
    config_path: ConfigOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a softphone account. Only digest hashes of the password are stored (MD5 and SHA-256)."""
    account = _accounts(config_path, store).add(tenant, username, password, display_name=name, user_id=user)
    out([account.public()], as_json)


@cli.command("list")
def sip_account_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    config_path: ConfigOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    accounts = _accounts(config_path, store)
    tenant_id = accounts.directory.require_tenant(tenant).id if tenant else None
    out([a.public() for a in accounts.list_accounts(tenant_id)], as_json)


@cli.command("delete")
def sip_account_delete(username: str, config_path: ConfigOpt = None, store: StoreOpt = None) -> None:
    _accounts(config_path, store).delete(username)
    typer.echo("deleted")
