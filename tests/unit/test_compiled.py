"""The compiled media path (opencomms._compiled): the test run uses the mypyc build of every listed module (a
silent fallback to pure Python fails here), the pure-Python path still passes those modules' unit tests, and a
stale, foreign or switched-off build is never used."""

from __future__ import annotations

import importlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from opencomms import _compiled
from opencomms._compiled import ENV_SWITCH, MANIFEST, compiled_modules, modules, plan, source_hash
from opencomms._compiled.build import imported_sources

ROOT = Path(__file__).resolve().parents[2]
SWITCHED_OFF = os.environ.get(ENV_SWITCH, "1") == "0"
# The unit tests of the compiled modules, run again on the pure path.
PURE_TESTS = [
    "tests/unit/rtp",
    "tests/unit/media/test_engine_kernels.py",
    "tests/unit/media/test_media_compiled_dsp.py",
    "tests/unit/media/test_media_dtmf_detector.py",
    "tests/unit/media/test_media_dtmf_tones.py",
    "tests/unit/media/test_media_vad.py",
]


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    return env


@pytest.mark.skipif(SWITCHED_OFF, reason=f"{ENV_SWITCH}=0: the pure path is under test")
def test_the_test_run_uses_the_compiled_modules() -> None:
    for name in modules():
        importlib.import_module(name)
    assert _compiled.state() == "compiled", f"build with `make compiled`: {_compiled.state()}"
    assert compiled_modules() == list(modules())


@pytest.mark.skipif(not SWITCHED_OFF, reason=f"runs in the {ENV_SWITCH}=0 pass below")
def test_switched_off_every_module_is_pure_python() -> None:
    for name in modules():
        importlib.import_module(name)
    assert _compiled.state() == f"pure ({ENV_SWITCH}=0)" and compiled_modules() == []


@pytest.mark.skipif(SWITCHED_OFF, reason="this is the pure pass itself")
def test_the_pure_python_path_passes_the_compiled_modules_unit_tests() -> None:
    here = str(Path(__file__).relative_to(ROOT)) + "::test_switched_off_every_module_is_pure_python"
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", here, *PURE_TESTS]
    done = subprocess.run(args, cwd=ROOT, env=_env(**{ENV_SWITCH: "0"}), capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and " skipped" not in done.stdout.splitlines()[-1]


def _fake_build(tmp_path: Path, names: tuple[str, ...], digest: str, depends: tuple[str, ...] = ()) -> Path:
    build = tmp_path / "build"
    files = {}
    for name in names:
        so = build.joinpath(*name.split(".")).with_suffix(".cpython-311-x86_64-linux-gnu.so")
        so.parent.mkdir(parents=True, exist_ok=True)
        so.write_bytes(b"")
        files[name] = str(so.relative_to(build))
    manifest = {"hash": digest, "modules": list(names), "files": files, "depends": list(depends)}
    (build / MANIFEST).write_text(json.dumps(manifest))
    return build


def test_a_build_is_used_only_when_made_from_the_current_sources_and_not_switched_off(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "opencomms" / "rtp", src / "opencomms" / "rtp")
    names = ("opencomms.rtp.packet", "opencomms.rtp.jitter")
    build = _fake_build(tmp_path, names, source_hash(names, src))
    served = plan({}, build, names, src)
    assert isinstance(served, dict) and sorted(served) == sorted(names)
    assert plan({ENV_SWITCH: "0"}, build, names, src) == f"{ENV_SWITCH}=0"
    assert "another module list" in str(plan({}, build, names[:1], src))
    with (src / "opencomms" / "rtp" / "jitter.py").open("a") as f:
        f.write("\n# edited after the build\n")
    assert "stale" in str(plan({}, build, names, src))
    assert "no build" in str(plan({}, tmp_path / "nowhere", names, src))


def test_a_change_to_a_module_the_compiled_ones_import_makes_the_build_stale(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "opencomms" / "rtp", src / "opencomms" / "rtp")
    names = ("opencomms.rtp.stream",)
    depends = tuple(imported_sources(names, src))
    assert "opencomms/rtp/address.py" in depends and "opencomms/rtp/stream.py" not in depends
    build = _fake_build(tmp_path, names, source_hash(names, src, depends), depends)
    assert isinstance(plan({}, build, names, src), dict)
    with (src / "opencomms" / "rtp" / "address.py").open("a") as f:
        f.write("\n# a constant mypyc may have inlined changed\n")
    assert "stale" in str(plan({}, build, names, src))


def test_a_stale_build_falls_back_to_pure_python_with_one_warning(tmp_path: Path) -> None:
    build = tmp_path / "compiled"
    build.mkdir()
    files = {name: name.replace(".", "/") + ".so" for name in modules()}
    (build / MANIFEST).write_text(json.dumps({"hash": "0" * 64, "modules": list(modules()), "files": files}))
    code = (
        "import opencomms.rtp, opencomms.media, opencomms._compiled as c, opencomms.rtp.bank as b;"
        "print(c.state(), c.compiled_modules(), b.__file__.endswith('.py'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=_env(OPENCOMMS_COMPILED_DIR=str(build)),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.startswith("pure (the build is stale") and done.stdout.rstrip().endswith("[] True")
    assert done.stderr.count("media path: pure Python") == 1


def test_the_settings_that_cross_the_media_process_boundary_pickle() -> None:
    from opencomms.rtp.jitter import JitterConfig
    from opencomms.rtp.stats import CallQuality
    from opencomms.rtp.stream import RtpConfig, StreamParams

    quality = CallQuality(1, 2, 3, 0.5, 1.5, 20.0, 7, 5.0, 1.0, 8)
    for obj in (JitterConfig(min_delay_ms=30), RtpConfig(symmetric=False), StreamParams(payload_type=8), quality):
        assert pickle.loads(pickle.dumps(obj)) == obj
