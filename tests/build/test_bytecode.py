"""The layer and the function package import from their CPython 3.10 bytecode, as SCF runs them.

A check script imports the handler with SCF's Python (`-B -I -S`: writes nothing, sees only the
code, the layer and the stdlib) from a read-only copy of both, and records every module the
import system compiles from source (`SourceFileLoader.source_to_code` runs only then). It also
checks that each module of ours and the layer's has a `__cached__` file that exists.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cos_autotag_tools.deploy.components import ROOT
from tests.build.conftest import copy_tree, import_isolated

pytestmark = pytest.mark.build

CHECK = """
import importlib.machinery, json, os, sys
roots = [os.path.realpath(p) + os.sep for p in sys.argv[1:]]
sys.path[:0] = sys.argv[1:]
compiled = []
_source_to_code = importlib.machinery.SourceFileLoader.source_to_code
def source_to_code(self, data, path, *args, **kwargs):  # runs only when no usable .pyc exists
    compiled.append(os.path.realpath(path))
    return _source_to_code(self, data, path, *args, **kwargs)
importlib.machinery.SourceFileLoader.source_to_code = source_to_code
import index
modules = {}
for name, module in list(sys.modules.items()):
    spec = getattr(module, "__spec__", None)
    origin = os.path.realpath(getattr(spec, "origin", None) or "")
    if any(origin.startswith(root) for root in roots):
        cached = getattr(spec, "cached", None)
        modules[name] = {"loader": type(spec.loader).__name__, "cached": cached,
                         "cached_exists": bool(cached) and os.path.isfile(cached)}
print(json.dumps({"python": sys.version.split()[0], "compiled": compiled, "modules": modules}))
"""


def import_from(python: str, code: Path, layer: Path) -> dict[str, Any]:
    return import_isolated(python, CHECK, code, layer)


def listing(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


@pytest.fixture
def shipped(built_layer: dict[str, Any], built_function: Path, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """Read-only copies of the function package and the layer, as SCF unpacks them."""
    code = copy_tree(built_function, tmp_path / "var-user")
    layer = copy_tree(Path(built_layer["layer_dir"]), tmp_path / "opt")
    for root in (code, layer):
        for path in [root, *root.rglob("*")]:
            path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        yield code, layer
    finally:
        for root in (code, layer):
            for path in [root, *root.rglob("*")]:
                path.chmod(path.stat().st_mode | stat.S_IWUSR)


def test_cold_start_imports_every_module_from_shipped_bytecode(
    built_layer: dict[str, Any], python310: str, shipped: tuple[Path, Path]
) -> None:
    assert built_layer["bytecode"], f"the layer was built without bytecode: {built_layer['no_bytecode_reason']}"
    code, layer = shipped
    before = listing(code), listing(layer)
    result = import_from(python310, code, layer)
    assert result["python"].startswith("3.10.")
    assert result["compiled"] == [], "compiled from source on a cold start: " + ", ".join(result["compiled"][:10])
    modules = result["modules"]
    for name in ("index", "cos_autotag.handler", "qcloud_cos", "requests", "urllib3", "structlog"):
        assert name in modules, f"{name} was not imported from the shipped code"
    from_source = {n: m for n, m in modules.items() if m["loader"] == "SourceFileLoader" and not m["cached_exists"]}
    assert not from_source, f"modules without their .pyc: {sorted(from_source)[:10]}"
    assert (listing(code), listing(layer)) == before, "importing wrote into the shipped code"


def test_the_check_catches_a_module_compiled_from_source(
    built_layer: dict[str, Any], built_function: Path, python310: str, tmp_path: Path
) -> None:
    """Without one module's .pyc, and with a .pyc of another Python in its place, the same
    import compiles that module from source, and the check says so."""
    assert built_layer["bytecode"], built_layer["no_bytecode_reason"]
    code = copy_tree(built_function, tmp_path / "code")
    (code / "cos_autotag" / "__pycache__" / "handler.cpython-310.pyc").unlink()
    layer = copy_tree(Path(built_layer["layer_dir"]), tmp_path / "layer")
    cache = layer / "structlog" / "__pycache__"
    (cache / "_config.cpython-310.pyc").rename(cache / "_config.cpython-311.pyc")
    result = import_from(python310, code, layer)
    compiled = {Path(p).relative_to(tmp_path.resolve()).as_posix() for p in result["compiled"]}
    assert compiled == {"code/cos_autotag/handler.py", "layer/structlog/_config.py"}


def test_function_package_is_src_plus_its_3_10_bytecode(build: ModuleType, built_function: Path) -> None:
    """src/'s files and, when a CPython 3.10 exists here, one cpython-310 .pyc beside each module."""
    sources = build.function_files(build.ROOT / "src")
    shipped = {p.relative_to(built_function).as_posix() for p in built_function.rglob("*") if p.is_file()}
    pycs = {(Path(s).parent / "__pycache__" / f"{Path(s).stem}.cpython-310.pyc").as_posix() for s in sources}
    python, _ = build.find_python310()
    with_bytecode = python is not None or bool(shipped & pycs)
    assert shipped == set(sources) | (pycs if with_bytecode else set()), "run `make function`"
    assert build.bytecode_problems(built_function) == [] if with_bytecode else not list(built_function.rglob("*.pyc"))


def test_bytecode_check_refuses_another_pythons_pyc(build: ModuleType, built_function: Path, tmp_path: Path) -> None:
    code = copy_tree(built_function, tmp_path / "code")
    pyc = code / "__pycache__" / "index.cpython-311.pyc"
    pyc.parent.mkdir(exist_ok=True)
    pyc.write_bytes((3495).to_bytes(2, "little") + b"\r\n" + bytes(12))
    assert any("index.cpython-311.pyc: magic 3495" in p for p in build.bytecode_problems(code))


def run_build(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PY310"}
    return subprocess.run(
        [sys.executable, str(ROOT / "layers" / "build.py"), *args], capture_output=True, text=True, env=env, check=False
    )


@pytest.mark.skipif(sys.version_info[:2] == (3, 10), reason="needs an interpreter other than 3.10")
def test_build_refuses_to_ship_bytecode_of_another_python(tmp_path: Path) -> None:
    proc = run_build("function", "--out", str(tmp_path), "--python", sys.executable)
    assert proc.returncode == 1
    assert f"is cpython {sys.version.split()[0]}" in proc.stderr and "magic 3439" in proc.stderr
    assert not list(tmp_path.rglob("*.pyc"))


def test_build_without_a_3_10_ships_source_and_says_so(tmp_path: Path) -> None:
    proc = run_build("function", "--out", str(tmp_path), "--python", str(tmp_path / "no-such-python3.10"))
    assert proc.returncode == 0, proc.stderr
    assert "no CPython 3.10 found" in proc.stderr and "shipping source only" in proc.stderr
    assert (tmp_path / "function" / "index.py").is_file()
    assert not list(tmp_path.rglob("*.pyc"))


def test_build_writes_3_10_unchecked_hash_bytecode(build: ModuleType, python310: str, tmp_path: Path) -> None:
    proc = run_build("function", "--out", str(tmp_path), "--python", python310)
    assert proc.returncode == 0, proc.stderr
    assert build.bytecode_problems(tmp_path / "function") == []
    assert "(unchecked-hash)" in proc.stdout
