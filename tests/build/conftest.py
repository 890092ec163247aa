"""What the build tests share: the layer and function package `make package` built, and SCF's Python.

The build needs the package index, so the tests never run it for the layer: without a built
layer (or function package) they skip and say which `make` target to run. `make test` runs
`make package` first, so there they always run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support.layer_build import load_build_module


@pytest.fixture(scope="session")
def build() -> ModuleType:
    return load_build_module()


@pytest.fixture(scope="session")
def built_layer(build: ModuleType) -> dict[str, Any]:
    """The summary of the layer `make layer` built."""
    summary_file = build.DEFAULT_OUT / build.SUMMARY_NAME
    if not summary_file.is_file():
        pytest.skip("no built layer: run `make layer` (`make test` runs `make package` before the tests)")
    summary: dict[str, Any] = json.loads(summary_file.read_text(encoding="utf-8"))
    if not Path(summary["layer_dir"]).is_dir():
        pytest.skip(f"{summary['layer_dir']} is gone: run `make layer` again")
    return summary


@pytest.fixture(scope="session")
def built_function(build: ModuleType) -> Path:
    """build/function, as `make function` built it; refused when src/ changed since."""
    package = build.FUNCTION_OUT / "function"
    if not (package / "index.py").is_file():
        pytest.skip("no built function package: run `make function` (`make test` runs `make package` first)")
    src = build.ROOT / "src"
    stale = [rel for rel in build.function_files(src) if (package / rel).read_bytes() != (src / rel).read_bytes()]
    assert not stale, f"build/function is older than src/ ({stale[:3]}): run `make function`"
    return package


@pytest.fixture(scope="session")
def python310(build: ModuleType) -> str:
    """SCF's CPython 3.10, found as the build finds it (PY310, pyenv, PATH)."""
    python, reason = build.find_python310()
    if python is None:
        pytest.skip(reason)
    return str(python.exe)


def scf_python(build: ModuleType) -> str:
    """SCF's Python if this machine has one, else the interpreter running the tests."""
    python, _ = build.find_python310()
    return str(python.exe) if python else sys.executable


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def import_isolated(python: str, check: str, code: Path, layer: Path) -> dict[str, Any]:
    """Run `check` as SCF would import the function (`-B -I -S`, argv: code, layer); its last line's JSON."""
    proc = subprocess.run(
        [python, "-B", "-I", "-S", "-c", check, str(code), str(layer)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, f"{python}: {proc.stderr}"
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result
