"""The `opencomms` command line: serve a node, manage the directory, make development certificates.

`run` is the console entry point: it names the missing extra in one line when only the SDK is installed.
"""

from __future__ import annotations

import sys


def run() -> None:
    try:
        from opencomms.cli.main import main
    except ModuleNotFoundError as exc:  # `pip install opencomms` is the bot SDK alone
        sys.exit(f"opencomms: the node needs the server extra ({exc.name} is missing): pip install 'opencomms[server]'")
    main()
