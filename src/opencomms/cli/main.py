"""`opencomms` CLI (typer): one module per resource under `opencomms.cli`; this one assembles them and turns every
user error into one line on stderr with exit code 2 (no traceback). Secrets are printed once at creation and
stored only hashed.

Commands operate on the store named by --store / OPENCOMMS_STORE_URL / the config file, like `serve`.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperGroup

from opencomms.cli import (
    admin,
    apps,
    calls,
    cluster,
    instances,
    keys,
    meetings,
    serve,
    sip_accounts,
    status,
    tenants,
    users,
)
from opencomms.cli.common import USAGE
from opencomms.domain.errors import OpenCommsError
from opencomms.store import StoreUnavailable

try:  # typer >= 0.20 carries its own copy of click
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older typer runs on click itself
    from click import exceptions as click_errors  # type: ignore[no-redef]


class _Group(TyperGroup):
    """The root command: a domain error from any command (unknown tenant/app/instance, duplicate number, bad URL or
    permission, store unreachable) becomes one line on stderr and exit code 2, also when invoked in-process."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except OpenCommsError as exc:
            typer.echo(f"error: {exc.message}", err=True)
            raise typer.Exit(USAGE) from None


app = typer.Typer(
    help="opencomms: self-hosted cloud communications for calling bots.", no_args_is_help=True, cls=_Group
)
app.command("serve")(serve.serve)
app.command("status")(status.status)
app.add_typer(tenants.cli, name="tenant")
app.add_typer(apps.cli, name="app")
app.add_typer(users.cli, name="user")
app.add_typer(instances.cli, name="instance")
app.add_typer(calls.cli, name="calls")
app.add_typer(keys.cli, name="keys")
app.add_typer(sip_accounts.cli, name="sip-account")
app.add_typer(meetings.cli, name="meetings")
app.add_typer(meetings.policy_cli, name="policy")
app.add_typer(admin.cli, name="admin")
app.command("dev-cert")(keys.dev_cert)
app.add_typer(cluster.cli, name="cluster")


def main() -> None:
    try:
        code = app(standalone_mode=False)
    except click_errors.NoArgsIsHelpError as exc:  # `opencomms app`: the group's help
        exc.show()
        sys.exit(USAGE)
    except click_errors.UsageError as exc:  # unknown option, missing argument, bad value: one line, not click's panel
        where = f" (see: {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
        typer.echo(f"error: {exc.format_message()}{where}", err=True)
        sys.exit(USAGE)
    except click_errors.ClickException as exc:
        typer.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except BrokenPipeError:  # pragma: no cover
        sys.exit(0)
    except StoreUnavailable as exc:  # the store cannot be opened or is locked: say which and why
        typer.echo(f"error: {exc.message}", err=True)
        sys.exit(USAGE)
    except OpenCommsError as exc:  # unknown tenant/app/instance, duplicate number, bad URL or permission
        typer.echo(f"error: {exc.message}", err=True)
        sys.exit(USAGE)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
