"""Build the compiled media path: `python -m opencomms._compiled.build [--force]` (what `make compiled` runs).

Compiles the modules listed in modules.txt with mypyc (mypy is a dev/build requirement), and those with a Cython
twin (`name.pyx` beside the reference `name.py`) with Cython (also a dev/build requirement; `-O3 -march=native`:
the build is made on, and for, the machine that runs it), into a fresh directory
next to the build directory, writes its manifest (module -> .so, the source hash) and swaps it in, so that a
failed build never leaves a half-written one behind. Does nothing when the build is current. The C files and
object files go to `build/compiled-tmp/`; nothing is written into src/.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from opencomms._compiled import (
    MANIFEST,
    SRC_ROOT,
    check_build,
    cython_source,
    default_build_dir,
    modules,
    source_hash,
    source_path,
)


def imported_sources(names: Sequence[str], src_root: Path = SRC_ROOT) -> list[str]:
    """The source files (relative to src) of the opencomms modules the listed modules import, themselves excluded:
    part of the build's hash, so that a change there (a constant mypyc inlined) makes the build stale too."""
    found: set[str] = set()
    for name in names:
        package = name.rsplit(".", 1)[0]
        tree = ast.parse(source_path(name, src_root).read_text())
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parent, *([base] if base else [])])
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                if not target.startswith("opencomms") or target in names:
                    continue
                for file in (source_path(target, src_root), src_root.joinpath(*target.split("."), "__init__.py")):
                    if file.is_file():
                        found.add(str(file.relative_to(src_root)))
    return sorted(found)


CYTHON_FLAGS = ["-O3", "-march=native"]


def build(out: Path, names: tuple[str, ...], jobs: int) -> None:
    from Cython.Build import cythonize  # type: ignore[import-untyped]
    from mypyc.build import mypycify
    from setuptools import Extension, setup  # type: ignore[import-untyped]

    tmp = out.parent / (out.name + "-tmp")
    staging = out.parent / (out.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    tmp.mkdir(parents=True, exist_ok=True)
    twins = {name: pyx for name in names if (pyx := cython_source(name)) is not None}
    paths = [str(source_path(name).relative_to(SRC_ROOT)) for name in names if name not in twins]
    depends = imported_sources(names)
    digest = source_hash(names, SRC_ROOT, depends)
    cwd = os.getcwd()
    os.chdir(SRC_ROOT)  # mypyc names modules by their path relative to the current directory
    try:
        args = ["--cache-dir", str(tmp / "mypy_cache"), *paths]
        extensions = mypycify(args, opt_level="3", target_dir=str(tmp / "c"), strip_asserts=False)
        extensions += cythonize(  # type: ignore[no-untyped-call]
            [
                Extension(name, [str(pyx.relative_to(SRC_ROOT))], extra_compile_args=CYTHON_FLAGS)
                for name, pyx in twins.items()
            ],
            build_dir=str(tmp / "cython"),
            quiet=True,
        )
        setup(
            name="opencomms-compiled",
            ext_modules=extensions,
            script_args=["-q", "build_ext", "--build-lib", str(staging), "--build-temp", str(tmp), "-j", str(jobs)],
        )
    finally:
        os.chdir(cwd)
    files = {}
    for ext in extensions:
        so = sorted(staging.joinpath(*ext.name.split(".")).parent.glob(ext.name.rsplit(".", 1)[-1] + ".*.so"))
        if not so:
            raise SystemExit(f"the build produced no extension for {ext.name}")
        files[ext.name] = str(so[0].relative_to(staging))
    (staging / MANIFEST).write_text(
        json.dumps({"hash": digest, "modules": list(names), "files": files, "depends": depends}, indent=1)
    )
    old = out.parent / (out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="rebuild even when the build is current")
    parser.add_argument("--out", type=Path, default=None, help="build directory (default build/compiled)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel C compilations")
    args = parser.parse_args()
    out = (args.out or default_build_dir()).resolve()
    names = modules()
    if not args.force and not isinstance(check_build(out, names), str):
        print(f"compiled media path: up to date ({len(names)} modules in {out})")
        return
    started = time.monotonic()
    build(out, names, args.jobs)
    problem = check_build(out, names)
    if isinstance(problem, str):
        sys.exit(f"compiled media path: build unusable: {problem}")
    print(f"compiled media path: {len(names)} modules built in {time.monotonic() - started:.0f} s into {out}")


if __name__ == "__main__":
    main()
