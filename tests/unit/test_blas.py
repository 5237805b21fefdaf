"""The server still pins BLAS to one thread before numpy loads (the package root no longer does: the SDK must not)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CHECK = """
import os, sys
seen = []
class Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "numpy" and not seen:
            seen.append({k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")})
sys.meta_path.insert(0, Watch())
import importlib
importlib.import_module(sys.argv[1])
print(seen)
"""


@pytest.mark.parametrize("module", ["opencomms.server", "opencomms.demo", "opencomms.testing", "opencomms.media"])
def test_blas_is_pinned_before_numpy_loads(module: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", CHECK, module], capture_output=True, text=True, env=env, check=True)
    want = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    assert out.stdout.strip() == repr([want])


def test_an_explicit_setting_is_kept() -> None:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "4"}
    code = "import os, opencomms.media; print(os.environ['OPENBLAS_NUM_THREADS'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "4"
