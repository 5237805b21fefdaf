"""`opencomms keys` (token signing keys) and `opencomms dev-cert` (a local CA and server certificate)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from opencomms.cli.common import ConfigOpt, JsonOpt, StoreOpt, config, fail, open_cli_store, out

cli = typer.Typer(help="Token signing keys.", no_args_is_help=True)


@cli.command("rotate")
def keys_rotate(config_path: ConfigOpt = None, store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Make a new signing key active now. Old tokens stay valid until they expire; nodes pick it up in 30 s."""
    from opencomms.auth.keystore import load_keyring, save_keyring

    cfg = config(config_path, store)
    st = open_cli_store(config_path, store)
    ring = load_keyring(st, time.time(), cfg.tokens.key_file)
    key = ring.rotate(time.time())
    save_keyring(st, ring, cfg.tokens.key_file)
    if as_json:
        out([{"active_key": key.kid}], as_json)
    else:
        typer.echo(f"active key: {key.kid}")


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

    try:
        paths = make_dev_cert(directory, tuple(hostname) if hostname else ("localhost", "127.0.0.1", "::1"))
    except OSError as exc:
        fail(f"cannot write the certificates to {directory}: {exc.strerror or exc}")
    typer.echo(f"CA certificate:     {paths.ca_cert}   (trust this in clients, e.g. REQUESTS_CA_BUNDLE)")
    typer.echo(f"server certificate: {paths.cert}")
    typer.echo(f"server key:         {paths.key}")
    typer.echo(f"serve with: opencomms serve --tls-cert {paths.cert} --tls-key {paths.key}")
