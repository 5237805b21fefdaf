"""`opencomms` CLI (typer). Secrets are printed once at creation and stored only hashed.

Commands operate on the store named by --store / OPENCOMMS_STORE_URL / the config file, like `serve`.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from opencomms.config import NodeConfig, load_config
from opencomms.directory import Directory
from opencomms.domain.errors import OpenCommsError
from opencomms.gateway.accounts import SipAccounts, realm_for
from opencomms.net.egress import EgressPolicy, EgressRefused, merge_allow
from opencomms.store import Store, StoreUnavailable, open_store

app = typer.Typer(help="opencomms: self-hosted cloud communications for calling bots.", no_args_is_help=True)
tenant_cli = typer.Typer(help="Tenants (organisations).", no_args_is_help=True)
app_cli = typer.Typer(help="Applications (bots) with client credentials and permissions.", no_args_is_help=True)
user_cli = typer.Typer(help="Directory users.", no_args_is_help=True)
instance_cli = typer.Typer(help="Application instances: phone numbers and SIP URIs of bots.", no_args_is_help=True)
keys_cli = typer.Typer(help="Token signing keys.", no_args_is_help=True)
sip_account_cli = typer.Typer(help="Softphone accounts of the SIP registrar.", no_args_is_help=True)
app.add_typer(tenant_cli, name="tenant")
app.add_typer(app_cli, name="app")
app.add_typer(user_cli, name="user")
app.add_typer(instance_cli, name="instance")
app.add_typer(keys_cli, name="keys")
app.add_typer(sip_account_cli, name="sip-account")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML configuration file.")]
StoreOpt = Annotated[str | None, typer.Option("--store", help="Store URL (sqlite:///path.db).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _config(config: Path | None, store: str | None) -> NodeConfig:
    try:
        return load_config(config, store_url=store)
    except (OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _store(config: Path | None, store: str | None) -> Store:
    cfg = _config(config, store)
    if cfg.store_url.startswith("memory:"):
        typer.echo("error: the CLI needs a persistent store (sqlite:///path.db)", err=True)
        raise typer.Exit(2)
    return open_store(cfg.store_url)


def _out(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        typer.echo("  ".join(f"{k}={v}" for k, v in row.items()))


def _fail(exc: OpenCommsError) -> None:
    typer.echo(f"error: {exc.message}", err=True)
    raise typer.Exit(1)


def _warn_if_refused(cfg: NodeConfig, url: str) -> None:
    """The operator registers the webhook, so a URL the egress policy refuses is a warning, not an error: the node
    that serves may have another allow list. (Host names are judged when the node connects.)"""
    mc = cfg.media
    policy = EgressPolicy(merge_allow(cfg.egress.allow, mc.fetch_allow_private, mc.app_hosted_allow_private))
    try:
        policy.check_url(url)
    except EgressRefused as exc:
        typer.echo(f"warning: the node will not post to this callback URL: {exc.reason} (see egress.allow)", err=True)


# -- serve -------------------------------------------------------------------------------------------------
@app.command()
def serve(
    config: ConfigOpt = None,
    store: StoreOpt = None,
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (0 = any free port).")] = None,
    tls_cert: Annotated[str | None, typer.Option(help="PEM certificate: serve HTTPS.")] = None,
    tls_key: Annotated[str | None, typer.Option(help="PEM private key of --tls-cert.")] = None,
    public_url: Annotated[str | None, typer.Option(help="Base URL clients use to reach this node.")] = None,
    ready_file: Annotated[Path | None, typer.Option(help="Write the node's URL here once it listens.")] = None,
) -> None:
    """Run a node: the Graph-compatible REST API, token service and notification delivery."""
    from opencomms.logs import setup_logging
    from opencomms.server import Node

    try:
        cfg = load_config(
            config,
            store_url=store,
            host=host,
            port=port,
            tls_cert=tls_cert,
            tls_key=tls_key,
            public_url=public_url,
        )
    except (OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    setup_logging(cfg.log_level, cfg.log_format)

    def ready(node: Node) -> None:
        typer.echo(f"opencomms node listening on {node.public_url}", err=True)
        if ready_file:
            ready_file.write_text(node.public_url)

    async def main() -> None:
        async with Node(cfg) as node:
            await node.serve(ready)

    try:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
            asyncio.run(main())
        else:
            uvloop.run(main())
    except KeyboardInterrupt:
        pass
    except StoreUnavailable as exc:  # read-only, full or locked store at start: one line, no traceback
        typer.echo(f"opencomms serve: {exc.message}", err=True)
        raise typer.Exit(1) from None


# -- tenants -----------------------------------------------------------------------------------------------
@tenant_cli.command("create")
def tenant_create(
    name: Annotated[str, typer.Option(help="Display name.")],
    domain: Annotated[str | None, typer.Option(help="Domain, usable in token URLs instead of the id.")] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    try:
        tenant = Directory(_store(config, store)).create_tenant(name, domain)
    except OpenCommsError as exc:
        _fail(exc)
    _out([{"id": tenant.id, "name": tenant.name, "domain": tenant.domain}], as_json)


@tenant_cli.command("list")
def tenant_list(config: ConfigOpt = None, store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    rows = [{"id": t.id, "name": t.name, "domain": t.domain} for t in Directory(_store(config, store)).list_tenants()]
    _out(rows, as_json)


@tenant_cli.command("delete")
def tenant_delete(tenant: str, config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """Delete a tenant and its applications, users and instances."""
    try:
        Directory(_store(config, store)).delete_tenant(tenant)
    except OpenCommsError as exc:
        _fail(exc)
    typer.echo("deleted")


# -- applications ------------------------------------------------------------------------------------------
@app_cli.command("create")
def app_create(
    tenant: Annotated[str, typer.Option(help="Tenant id or domain.")],
    name: Annotated[str, typer.Option(help="Display name of the bot.")],
    permission: Annotated[
        list[str] | None, typer.Option("--permission", "-p", help="Granted application permission (repeat).")
    ] = None,
    callback_url: Annotated[
        str | None, typer.Option(help="Calling webhook: where incoming calls are notified.")
    ] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a bot. Its client secret is printed once and cannot be shown again."""
    if callback_url:
        _warn_if_refused(_config(config, store), callback_url)
    try:
        created, secret = Directory(_store(config, store)).create_app(
            tenant, name, permissions=permission or (), callback_url=callback_url
        )
    except OpenCommsError as exc:
        _fail(exc)
    row = {
        "client_id": created.id,
        "client_secret": secret,
        "tenant_id": created.tenant_id,
        "name": created.display_name,
        "permissions": ",".join(created.permissions),
        "callback_url": created.callback_url,
    }
    _out([row], as_json)
    if not as_json:
        typer.echo("# store the client secret now: it is kept only hashed and cannot be shown again", err=True)


@app_cli.command("list")
def app_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    directory = Directory(_store(config, store))
    tenant_id = directory.require_tenant(tenant).id if tenant else None
    rows = [
        {
            "client_id": a.id,
            "tenant_id": a.tenant_id,
            "name": a.display_name,
            "permissions": ",".join(a.permissions),
            "callback_url": a.callback_url,
            "secrets": len(a.secret_hashes),
        }
        for a in directory.list_apps(tenant_id)
    ]
    _out(rows, as_json)


@app_cli.command("add-secret")
def app_add_secret(client_id: str, config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """Add another client secret (rotate credentials without downtime)."""
    try:
        secret = Directory(_store(config, store)).add_secret(client_id)
    except OpenCommsError as exc:
        _fail(exc)
    typer.echo(f"client_secret={secret}")


@app_cli.command("delete")
def app_delete(client_id: str, config: ConfigOpt = None, store: StoreOpt = None) -> None:
    try:
        Directory(_store(config, store)).delete_app(client_id)
    except OpenCommsError as exc:
        _fail(exc)
    typer.echo("deleted")


# -- users -------------------------------------------------------------------------------------------------
@user_cli.command("create")
def user_create(
    tenant: Annotated[str, typer.Option(help="Tenant id or domain.")],
    name: Annotated[str, typer.Option(help="Display name.")],
    config: ConfigOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    try:
        user = Directory(_store(config, store)).create_user(tenant, name)
    except OpenCommsError as exc:
        _fail(exc)
    _out([{"id": user.id, "tenant_id": user.tenant_id, "name": user.display_name}], as_json)


@user_cli.command("list")
def user_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    directory = Directory(_store(config, store))
    tenant_id = directory.require_tenant(tenant).id if tenant else None
    rows = [{"id": u.id, "tenant_id": u.tenant_id, "name": u.display_name} for u in directory.list_users(tenant_id)]
    _out(rows, as_json)


@user_cli.command("delete")
def user_delete(user_id: str, config: ConfigOpt = None, store: StoreOpt = None) -> None:
    try:
        Directory(_store(config, store)).delete_user(user_id)
    except OpenCommsError as exc:
        _fail(exc)
    typer.echo("deleted")


# -- application instances ---------------------------------------------------------------------------------
@instance_cli.command("create")
def instance_create(
    app_id: Annotated[str, typer.Option("--app", help="Client id of the owning application.")],
    name: Annotated[str, typer.Option(help="Display name callers see.")],
    number: Annotated[str | None, typer.Option(help="Phone number in E.164 form.")] = None,
    sip_uri: Annotated[str | None, typer.Option(help="SIP URI, e.g. sip:ivr@example.com.")] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    try:
        inst = Directory(_store(config, store)).create_instance(app_id, name, phone_number=number, sip_uri=sip_uri)
    except OpenCommsError as exc:
        _fail(exc)
    _out(
        [
            {
                "id": inst.id,
                "app_id": inst.app_id,
                "name": inst.display_name,
                "number": inst.phone_number,
                "sip_uri": inst.sip_uri,
            }
        ],
        as_json,
    )


@instance_cli.command("list")
def instance_list(
    app_id: Annotated[str | None, typer.Option("--app", help="Only this application.")] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    rows = [
        {
            "id": i.id,
            "app_id": i.app_id,
            "name": i.display_name,
            "number": i.phone_number,
            "sip_uri": i.sip_uri,
        }
        for i in Directory(_store(config, store)).list_instances(app_id)
    ]
    _out(rows, as_json)


@instance_cli.command("delete")
def instance_delete(instance_id: str, config: ConfigOpt = None, store: StoreOpt = None) -> None:
    try:
        Directory(_store(config, store)).delete_instance(instance_id)
    except OpenCommsError as exc:
        _fail(exc)
    typer.echo("deleted")


# -- softphone accounts ------------------------------------------------------------------------------------
def _accounts(config: Path | None, store: str | None) -> SipAccounts:
    cfg = _config(config, store)
    return SipAccounts(_store(config, store), realm_for(cfg.sip))


@sip_account_cli.command("add")
def sip_account_add(
    tenant: Annotated[str, typer.Option(help="Tenant id or domain.")],
    username: Annotated[str, typer.Option(help="SIP user name the softphone registers with.")],
    password: Annotated[
        str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True, help="Digest password.")
    ],
    name: Annotated[str | None, typer.Option(help="Display name (default: the user name).")] = None,
    user: Annotated[str | None, typer.Option(help="Directory user id: calls to this user ring the softphone.")] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a softphone account. Only digest hashes of the password are stored (MD5 and SHA-256)."""
    try:
        account = _accounts(config, store).add(tenant, username, password, display_name=name, user_id=user)
    except OpenCommsError as exc:
        _fail(exc)
    _out([account.public()], as_json)


@sip_account_cli.command("list")
def sip_account_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    accounts = _accounts(config, store)
    try:
        tenant_id = accounts.directory.require_tenant(tenant).id if tenant else None
    except OpenCommsError as exc:
        _fail(exc)
    _out([a.public() for a in accounts.list_accounts(tenant_id)], as_json)


@sip_account_cli.command("delete")
def sip_account_delete(username: str, config: ConfigOpt = None, store: StoreOpt = None) -> None:
    try:
        _accounts(config, store).delete(username)
    except OpenCommsError as exc:
        _fail(exc)
    typer.echo("deleted")


# -- keys and certificates ---------------------------------------------------------------------------------
@keys_cli.command("rotate")
def keys_rotate(config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """Make a new signing key active now. Old tokens stay valid until they expire; nodes pick it up in 30 s."""
    from opencomms.auth.keystore import load_keyring, save_keyring

    cfg = _config(config, store)
    st = _store(config, store)
    ring = load_keyring(st, time.time(), cfg.tokens.key_file)
    key = ring.rotate(time.time())
    save_keyring(st, ring, cfg.tokens.key_file)
    typer.echo(f"active key: {key.kid}")


@app.command("dev-cert")
def dev_cert(
    directory: Annotated[Path, typer.Option("--dir", help="Where to write ca.pem, cert.pem, key.pem.")] = Path(
        "var/tls"
    ),
    hostname: Annotated[
        list[str] | None, typer.Option("--host", help="Name or IP in the certificate (repeat).")
    ] = None,
) -> None:
    """Make a local CA and a server certificate, so MSAL and other https-only clients can talk to a dev node."""
    from opencomms.auth.devcert import make_dev_cert

    paths = make_dev_cert(directory, tuple(hostname) if hostname else ("localhost", "127.0.0.1", "::1"))
    typer.echo(f"CA certificate:     {paths.ca_cert}   (trust this in clients, e.g. REQUESTS_CA_BUNDLE)")
    typer.echo(f"server certificate: {paths.cert}")
    typer.echo(f"server key:         {paths.key}")
    typer.echo(f"serve with: opencomms serve --tls-cert {paths.cert} --tls-key {paths.key}")


def main() -> None:
    try:
        app()
    except BrokenPipeError:  # pragma: no cover
        sys.exit(0)
    except StoreUnavailable as exc:
        typer.echo(f"opencomms: {exc.message}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
