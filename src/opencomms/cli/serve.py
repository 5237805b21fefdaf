"""`opencomms serve`: run a node."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from opencomms.cli.common import ConfigOpt, StoreOpt, fail
from opencomms.config import load_config
from opencomms.store import StoreUnavailable

if TYPE_CHECKING:
    from opencomms.server import Node


class _Refused(Exception):
    """A component refused a configuration value while the node was being built."""


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
    except ValueError as exc:
        fail(str(exc))
    for key, file in (("tls_cert", cfg.tls_cert), ("tls_key", cfg.tls_key)):
        if file and not os.access(file, os.R_OK):
            fail(f"configuration {key}={file!r}: expected a readable PEM file (it is missing or not readable)")
    setup_logging(cfg.log_level, cfg.log_format)
    from opencomms.server import Node, freeze_process_heap  # after the configuration's checks: reported in a moment

    def ready(node: Node) -> None:
        typer.echo(f"opencomms node listening on {node.public_url}", err=True)
        if ready_file:
            ready_file.write_text(node.public_url)

    async def main() -> None:
        try:
            node = Node(cfg)
        except ValueError as exc:  # a setting the components refuse (the loader's checks let it through)
            raise _Refused(str(exc)) from None
        async with node:
            freeze_process_heap()  # this process runs this one node until it exits
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
    except _Refused as exc:
        fail(f"configuration refused by the node: {exc}")
    except OSError as exc:  # the port is taken, the address is not ours, a TLS file is missing
        fail(f"the node could not start: {exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else ""))
