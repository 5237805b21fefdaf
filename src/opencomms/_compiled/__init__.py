"""The compiled per-packet media path: which modules are compiled with mypyc, and whether to import them compiled.

`modules.txt` (next to this file) lists the hot modules (RTP per packet, the media engine tick). `make compiled`
(`python -m opencomms._compiled.build`) compiles them with mypyc (or, for a module with a Cython twin `name.pyx`
beside its reference `name.py`, with Cython) into `build/compiled/` at the repository root,
never next to the sources, and writes `manifest.json` there with a hash of the sources it compiled. `activate()`,
called by the packages that hold listed modules (`opencomms.rtp`, `opencomms.media`) before they import any of
them, installs an import finder that serves the listed modules (and mypyc's shared library) from that build, but
only when the build's hash equals the hash of the current sources: a missing or stale build, or one for another
Python, falls back to the pure-Python modules with one log warning, never a wrong .so. `OPENCOMMS_COMPILED=0`
keeps the pure path (the reference: every listed module is plain, mypy-strict Python and is tested that way too);
`OPENCOMMS_COMPILED_DIR` points at another build directory. `state()` says which path the process runs (/healthz,
the node's start-up line). Importing this module imports nothing of the media path.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

log = logging.getLogger("opencomms.compiled")

PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # src/opencomms
SRC_ROOT = PACKAGE_ROOT.parent
MODULES_FILE = Path(__file__).with_name("modules.txt")
MANIFEST = "manifest.json"
ENV_SWITCH = "OPENCOMMS_COMPILED"
ENV_DIR = "OPENCOMMS_COMPILED_DIR"


def modules() -> tuple[str, ...]:
    """The dotted names of the compiled modules, in the order of modules.txt."""
    names = []
    for line in MODULES_FILE.read_text().splitlines():
        name = line.split("#", 1)[0].strip()
        if name:
            names.append(name)
    return tuple(names)


def source_path(name: str, src_root: Path = SRC_ROOT) -> Path:
    return src_root.joinpath(*name.split(".")).with_suffix(".py")


def reference(name: str) -> ModuleType:
    """Module `name`'s pure-Python reference, run from its .py source under a private name (`_reference_<leaf>` in
    its package; importing `name` gives the compiled twin when the compiled path runs): what the twins' tests hold
    each twin to. Cached: one reference module per name in a process."""
    package, leaf = name.rsplit(".", 1)
    private = f"{package}._reference_{leaf}"
    if private in sys.modules:
        return sys.modules[private]
    importlib.import_module(name)  # the package and the module's own imports first
    spec = importlib.util.spec_from_file_location(private, source_path(name))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[private] = module  # a dataclass looks its module up while the module runs
    spec.loader.exec_module(module)
    return module


def cython_source(name: str, src_root: Path = SRC_ROOT) -> Path | None:
    """The module's Cython twin (`name.pyx` beside `name.py`, the reference), compiled instead of the .py."""
    pyx = source_path(name, src_root).with_suffix(".pyx")
    return pyx if pyx.is_file() else None


def source_hash(names: Sequence[str], src_root: Path = SRC_ROOT, depends: Sequence[str] = ()) -> str:
    """What a build must have been made from: the listed modules' sources, those of the modules they import
    (`depends`, paths under src: mypyc may have inlined their constants) and this interpreter's tag."""
    digest = hashlib.sha256(sys.implementation.cache_tag.encode())
    for name in names:
        digest.update(b"\0" + name.encode() + b"\0")
        digest.update(source_path(name, src_root).read_bytes())
        twin = cython_source(name, src_root)
        if twin is not None:
            digest.update(b"\0pyx\0" + twin.read_bytes())
    for rel in depends:
        digest.update(b"\0" + rel.encode() + b"\0")
        file = src_root / rel
        digest.update(file.read_bytes() if file.is_file() else b"(missing)")
    return digest.hexdigest()


def default_build_dir() -> Path:
    configured = os.environ.get(ENV_DIR)
    return Path(configured) if configured else SRC_ROOT.parent / "build" / "compiled"


class CompiledFinder:
    """A meta-path finder serving exactly the manifest's extension modules, by full name."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        file = self.files.get(fullname)
        if file is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(file))
        return importlib.util.spec_from_file_location(fullname, file, loader=loader)


def check_build(build_dir: Path, names: Sequence[str], src_root: Path = SRC_ROOT) -> dict[str, Path] | str:
    """The module -> .so map of a usable build, or why the build cannot be used."""
    try:
        manifest = json.loads((build_dir / MANIFEST).read_text())
    except FileNotFoundError:
        return f"no build in {build_dir} (run `make compiled`)"
    except (OSError, ValueError) as exc:
        return f"unreadable build manifest in {build_dir}: {exc}"
    if not isinstance(manifest, dict) or list(manifest.get("modules", ())) != list(names):
        return "the build compiled another module list (run `make compiled`)"
    depends = [str(rel) for rel in manifest.get("depends", ())]
    if manifest.get("hash") != source_hash(names, src_root, depends):
        return "the build is stale: the sources changed since it was made (run `make compiled`)"
    files: dict[str, Path] = {}
    for name, rel in dict(manifest.get("files", {})).items():
        file = build_dir / str(rel)
        if not file.is_file():
            return f"the build lacks {rel} (run `make compiled`)"
        files[str(name)] = file
    if not set(names) <= set(files):
        return "the build lacks some modules (run `make compiled`)"
    return files


def plan(
    environ: Mapping[str, str], build_dir: Path, names: Sequence[str], src_root: Path = SRC_ROOT
) -> dict[str, Path] | str:
    """What `activate` does: the module -> .so map to serve, or why the pure-Python path runs."""
    if environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return f"{ENV_SWITCH}=0"
    return check_build(build_dir, names, src_root)


_state: str | None = None
_finder: CompiledFinder | None = None


def activate() -> str:
    """Install the compiled modules' finder once per process (when allowed and the build is current); the state."""
    global _state, _finder
    if _state is not None:
        return _state
    names = modules()
    result = plan(os.environ, default_build_dir(), names)
    early = [name for name in names if name in sys.modules]
    if isinstance(result, str):
        _state = f"pure ({result})"
        if not result.startswith(ENV_SWITCH):
            log.warning("media path: pure Python, %s", result)
        return _state
    if early:  # a listed module imported before activation stays pure: say so rather than mix silently
        _state = f"pure (imported before activation: {', '.join(early)})"
        log.warning("media path: %s", _state)
        return _state
    _finder = CompiledFinder(result)
    sys.meta_path.insert(0, _finder)
    _state = "compiled"
    return _state


def state() -> str:
    """'compiled' or 'pure (why)'; activates if nothing has yet."""
    return activate()


def compiled_modules() -> list[str]:
    """The listed modules imported in this process from an extension module (not from their .py source)."""
    return [
        name
        for name in modules()
        if (mod := sys.modules.get(name)) is not None and not str(getattr(mod, "__file__", "")).endswith(".py")
    ]
