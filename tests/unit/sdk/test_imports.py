"""The SDK imports without the server's dependencies (bots install only what they use)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import opencomms

FORBIDDEN = ("numpy", "uvicorn", "typer", "redis", "uvloop", "pydantic")
SERVER_PARTS = ("server", "api", "calling", "media", "sip", "rtp", "store", "notify", "gateway", "cli")


def test_sdk_import_graph_is_light() -> None:
    code = "import sys, opencomms.sdk, opencomms.sdk.calling, opencomms.sdk.media\nprint(*sorted(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    heavy = [m for m in out if m.split(".")[0] in FORBIDDEN]
    server = [m for m in out if m.startswith("opencomms.") and m.split(".")[1] in SERVER_PARTS]
    assert heavy == [] and server == [], (heavy, server)


def test_optional_parts_are_exported_lazily() -> None:
    import opencomms.sdk as sdk
    from opencomms.sdk.media import LocalMediaSession
    from opencomms.sdk.state import RedisCallState

    assert sdk.RedisCallState is RedisCallState and sdk.LocalMediaSession is LocalMediaSession
    with pytest.raises(AttributeError):
        _ = sdk.NoSuchThing  # type: ignore[attr-defined]


_IMPORT_EVERY_SDK_MODULE = """
import importlib, os, pkgutil, sys
import opencomms.sdk
names = sorted(m.name for m in pkgutil.walk_packages(opencomms.sdk.__path__, "opencomms.sdk."))
for name in names:
    importlib.import_module(name)
ours = ("opencomms.sdk", "opencomms.wire")
server = [m for m in sys.modules if m.startswith("opencomms.") and not m.startswith(ours)]
assert not [k for k in os.environ if k.endswith("_NUM_THREADS")], "the SDK set BLAS variables"
print(len(names), *server)
"""


def _sdk_distributions() -> set[str]:
    """The distributions the base install (the SDK) pulls in, with their own requirements (installed ones)."""
    pyproject = tomllib.loads((Path(__file__).resolve().parents[3] / "pyproject.toml").read_text())
    todo = [Requirement(r) for r in pyproject["project"]["dependencies"]]
    seen: set[str] = set()
    while todo:
        req = todo.pop()
        name = req.name.lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        for raw in metadata.requires(req.name) or []:
            sub = Requirement(raw)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in (req.extras or {""})):
                todo.append(sub)
    return seen


def test_sdk_imports_with_only_its_own_dependencies(tmp_path: Path) -> None:
    """Every SDK module imports in an interpreter that sees only the stdlib, opencomms and what the `sdk` extra
    pulls in (no site-packages), without loading the server's modules or touching BLAS environment variables."""
    dists = _sdk_distributions()
    assert {"aiohttp", "pyjwt"} <= dists and not {"numpy", "uvicorn", "pydantic", "typer"} & dists
    for top, owners in metadata.packages_distributions().items():
        spec = importlib.util.find_spec(top) if {o.lower().replace("_", "-") for o in owners} & dists else None
        if spec is not None and spec.origin not in (None, "built-in", "frozen"):
            where = Path(spec.origin)
            target = where.parent if spec.submodule_search_locations else where
            (tmp_path / target.name).symlink_to(target)
    src = Path(opencomms.__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{src}"
    run = subprocess.run(
        [sys.executable, "-S", "-s", "-c", _IMPORT_EVERY_SDK_MODULE], capture_output=True, text=True, env=env
    )
    assert run.returncode == 0, run.stderr[-2000:]
    count, *server = run.stdout.split()
    assert int(count) >= 10 and server == []


def test_sdk_raises_its_own_errors_for_a_bad_media_config() -> None:
    from opencomms.sdk import SdkError
    from opencomms.sdk.media import LocalMediaSession, MediaConfigError

    with pytest.raises(MediaConfigError) as err:
        LocalMediaSession(public_url="http://not-a-websocket.example/media")
    assert isinstance(err.value, SdkError) and isinstance(err.value, ValueError)
    session = LocalMediaSession(public_url="ws://127.0.0.1:9/media")
    with pytest.raises(MediaConfigError):
        session.media_config("not a key!")
