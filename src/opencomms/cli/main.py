"""`opencomms` CLI (typer): one module per resource under `opencomms.cli`; this one assembles them and turns every
user error into one line on stderr with exit code 2 (no traceback). Secrets are printed once at creation and
stored only hashed.

Commands operate on the store named by --store / OPENCOMMS_STORE_URL / the config file, like `serve`.
"""

from __future__ import annotations

import sys

import typer

from opencomms.cli import apps, calls, instances, keys, serve, sip_accounts, status, tenants, users
from opencomms.cli.common import USAGE
from opencomms.domain.errors import OpenCommsError
from opencomms.store import StoreUnavailable

app = typer.Typer(help="opencomms: self-hosted cloud communications for calling bots.", no_args_is_help=True)
app.command("serve")(serve.serve)
app.command("status")(status.status)
app.add_typer(tenants.cli, name="tenant")
app.add_typer(apps.cli, name="app")
app.add_typer(users.cli, name="user")
app.add_typer(instances.cli, name="instance")
app.add_typer(calls.cli, name="calls")
app.add_typer(keys.cli, name="keys")
app.add_typer(sip_accounts.cli, name="sip-account")
app.command("dev-cert")(keys.dev_cert)


def main() -> None:
    try:
        app()
    except BrokenPipeError:  # pragma: no cover
        sys.exit(0)
    except StoreUnavailable as exc:  # the store cannot be opened or is locked: say which and why
        typer.echo(f"error: {exc.message}", err=True)
        sys.exit(USAGE)
    except OpenCommsError as exc:  # unknown tenant/app/instance, duplicate number, bad URL or permission
        typer.echo(f"error: {exc.message}", err=True)
        sys.exit(USAGE)


if __name__ == "__main__":
    main()
