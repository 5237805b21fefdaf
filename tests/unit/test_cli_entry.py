"""The console entry point names the missing server extra in one line when only the SDK is installed."""

from __future__ import annotations

import subprocess
import sys

_WITHOUT_TYPER = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "typer":
            raise ModuleNotFoundError("No module named 'typer'", name="typer")
        return None
sys.meta_path.insert(0, Block())
from opencomms.cli import run
run()
"""


def test_missing_server_extra_is_one_line() -> None:
    out = subprocess.run([sys.executable, "-c", _WITHOUT_TYPER], capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stderr.strip() == (
        "opencomms: the node needs the server extra (typer is missing): pip install 'opencomms[server]'"
    )


def test_with_the_server_extra_the_cli_runs() -> None:
    code = "import sys; sys.argv = ['opencomms', '--help']; from opencomms.cli import run; run()"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and "serve" in out.stdout
