"""The dependency layer: its lock, how the build installs it, and the layer `make layer` built."""

from __future__ import annotations

import importlib.metadata
import re
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cos_autotag_tools import cos_facts
from tests.build.conftest import copy_tree, import_isolated, scf_python
from tests.support.deploy_config import ROOT, function_doc, function_src
from tests.support.layer_build import load_build_module

pytestmark = pytest.mark.build

PYPROJECT = ROOT / "pyproject.toml"
# The environment markers of SCF's Python3.10 on x86_64 Linux, to read the packages' requirements as it would.
SCF_MARKERS = {
    "implementation_name": "cpython",
    "implementation_version": "3.10.0",
    "os_name": "posix",
    "platform_machine": "x86_64",
    "platform_python_implementation": "CPython",
    "platform_release": "",
    "platform_system": "Linux",
    "platform_version": "",
    "python_full_version": "3.10.0",
    "python_version": "3.10",
    "sys_platform": "linux",
    "extra": "",
}


@pytest.mark.integration
def test_built_layer_runs_the_uploaded_handler_in_isolation(
    build: ModuleType, built_layer: dict[str, Any], built_function: Path, tmp_path: Path
) -> None:
    """The function package + layer, nothing else: `import index` must work, take every
    dependency from the layer, and never load the stripped Crypto package."""
    doc = function_doc()
    assert function_src(doc)[0] == built_function.resolve()
    code = copy_tree(built_function, tmp_path / "code")
    layer = Path(built_layer["layer_dir"])
    module_name, function_name = doc["inputs"]["handler"].split(".")
    check = (
        "import importlib, json, sys\n"
        "sys.path[:0] = sys.argv[1:3]\n"
        f"handler = getattr(importlib.import_module({module_name!r}), {function_name!r})\n"
        "import sysconfig\n"
        "mods = {n: getattr(m, '__file__', None) for n, m in list(sys.modules.items())}\n"
        "stdlib = [sysconfig.get_paths()[k] for k in ('stdlib', 'platstdlib')]\n"
        "print(json.dumps({'callable': callable(handler), 'modules': mods, 'stdlib': stdlib}))\n"
    )
    python = scf_python(build)
    result = import_isolated(python, check, code, layer)
    assert result["callable"]
    modules: dict[str, str | None] = result["modules"]
    assert "Crypto" not in modules, "the handler loads pycryptodome, which the layer strips"
    for name in ("qcloud_cos", "requests", "structlog"):
        assert modules.get(name) and Path(str(modules[name])).is_relative_to(layer), f"{name}: {modules.get(name)}"
    allowed = [code.resolve(), layer.resolve(), *(Path(p).resolve() for p in result["stdlib"])]
    for name, file in modules.items():
        if file:  # every module with a file comes from the upload, the layer or the stdlib
            path = Path(file).resolve()
            assert any(path.is_relative_to(p) for p in allowed), f"{name} loaded from {file}"


@pytest.mark.integration
def test_built_layer_fits_scf_limits_with_packages_at_the_root(build: ModuleType, built_layer: dict[str, Any]) -> None:
    with zipfile.ZipFile(built_layer["zip"]) as zf:
        names = zf.namelist()
    assert "qcloud_cos/__init__.py" in names, "packages must sit at the zip root (/opt on SCF)"
    assert not [n for n in names if n.startswith(("Crypto/", "bin/"))]
    # Bytecode ships only when the build had a CPython 3.10 to write it, and then only 3.10's.
    pycs = [n for n in names if n.endswith(".pyc")]
    bytecode = built_layer["bytecode"]
    assert len(pycs) == (bytecode["pyc_files"] if bytecode else 0), built_layer["no_bytecode_reason"]
    assert all(n.endswith(".cpython-310.pyc") and "/__pycache__/" in "/" + n for n in pycs)
    assert built_layer["zipped_bytes"] < cos_facts.SCF_ZIP_UPLOAD_MAX_BYTES
    assert built_layer["unzipped_bytes"] < cos_facts.SCF_CODE_UNZIPPED_MAX_BYTES
    assert built_layer["unzipped_bytes"] < built_layer["pip_installed_bytes"], "stripping removed nothing"
    locked = [f"{pin.name}=={pin.version}" for pin in build.read_lock(build.LOCK)]
    assert built_layer.get("locked") == locked, "the layer was not built from the current lock: run `make layer`"


# --- the pinned layer: layers/requirements.lock -------------------------------------------------


def _target_closure(requirements: list[str]) -> set[str]:
    """Distribution names the requirements pull in on SCF's Python, read from the installed
    packages' metadata with SCF's environment markers (not this interpreter's)."""
    from packaging.requirements import Requirement

    names: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        requirement = todo.pop()
        name = load_build_module()._canonical(requirement.name)
        if name in names:
            continue
        names.add(name)
        for spec in importlib.metadata.requires(name) or []:
            sub = Requirement(spec)
            if sub.marker is None or sub.marker.evaluate(SCF_MARKERS):
                todo.append(sub)
    return names


def test_lock_pins_every_package_of_the_layer_with_a_hash(build: ModuleType) -> None:
    pins = build.read_lock(build.LOCK)
    deps = build.runtime_dependencies(PYPROJECT)
    assert build.lock_problems(pins, deps) == []
    for pin in pins:
        assert pin.hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in pin.hashes), pin
        assert re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", pin.version), pin
    locked = {pin.name for pin in pins}
    needed = _target_closure(deps)
    assert {"typing-extensions", "crcmod", "pycryptodome"} <= needed, "SCF's markers are not applied"
    assert locked == needed, f"not pinned: {sorted(needed - locked)}; pinned but unused: {sorted(locked - needed)}"


def test_model_wheel_is_pinned_by_hash_at_the_version_pyproject_names(build: ModuleType) -> None:
    (pin,) = build.read_lock(build.MODEL_LOCK)
    assert pin.name == build.MODEL_PACKAGE and re.fullmatch(r"[0-9a-f]{64}", pin.hashes[0])
    assert f'"{build.MODEL_PACKAGE}=={pin.version}"' in PYPROJECT.read_text(encoding="utf-8")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "--require-hashes --no-deps -r tools/requirements-model.lock" in makefile


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("requests>=2.31 --hash=sha256:" + "a" * 64 + "\n", "expected NAME==VERSION"),
        ("requests==2.31.0\n", "expected NAME==VERSION"),
        ("requests==2.31.0 --hash=md5:abc\n", "expected NAME==VERSION"),
        ("a==1 --hash=sha256:" + "a" * 64 + "\nA==1 --hash=sha256:" + "b" * 64 + "\n", "twice"),
    ],
)
def test_lock_reader_refuses_unpinned_or_unhashed_lines(
    build: ModuleType, tmp_path: Path, text: str, expected: str
) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text(text, encoding="utf-8")
    with pytest.raises(build.BuildFailed, match=expected):
        build.read_lock(lock)


def test_lock_that_no_longer_covers_pyproject_is_refused(build: ModuleType) -> None:
    pins = [build.Pin("requests", "2.30.0", ["a" * 64])]
    problems = build.lock_problems(pins, ["requests>=2.31", "structlog>=24.1"])
    assert problems == ["requests==2.30.0 does not satisfy requests>=2.31", "structlog is not pinned"]


def test_layer_installs_from_the_lock_with_hash_checking(
    build: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pip invocation the build makes (recorded, not run): hash-checked, nothing resolved."""
    calls: list[list[str]] = []
    monkeypatch.setattr(build, "_pip", lambda args, env=None: calls.append(list(args)))
    pins = [build.Pin("requests", "2.32.0", ["a" * 64]), build.Pin("idna", "3.7", ["b" * 64, "c" * 64])]
    build.install_from_lock(pins, tmp_path / "layer", tmp_path / "work")
    (install,) = calls
    assert install[0] == "install" and "--require-hashes" in install and "--no-deps" in install
    assert install[install.index("--python-version") + 1] == build.PYTHON_VERSION
    requirements = Path(install[install.index("-r") + 1]).read_text(encoding="utf-8").splitlines()
    assert requirements == [
        "requests==2.32.0 --hash=sha256:" + "a" * 64,
        "idna==3.7 --hash=sha256:" + "b" * 64 + " --hash=sha256:" + "c" * 64,
    ]


def test_make_lock_runs_uv_pip_compile_with_hashes_for_scf(build: ModuleType) -> None:
    """`make lock` is `uv pip compile --generate-hashes`, resolved for SCF's Python and platform."""
    (layer, layer_stdin), (model, model_stdin) = build.lock_commands()
    assert Path(layer[0]).name == "uv" and layer[1:3] == ["pip", "compile"]
    assert "--generate-hashes" in layer and "--generate-hashes" in model and "--upgrade" not in layer
    assert layer[layer.index("--python-version") + 1] == build.PYTHON_VERSION
    assert layer[layer.index("--python-platform") + 1].startswith("x86_64-manylinux")
    assert layer[layer.index("-o") + 1] == "layers/requirements.lock" and layer[-1] == "pyproject.toml"
    assert layer_stdin is None
    assert "--no-deps" in model and model[model.index("-o") + 1] == "tools/requirements-model.lock"
    assert model_stdin == f"{build.MODEL_PACKAGE}=={build.read_lock(build.MODEL_LOCK)[0].version}\n"
    assert "--upgrade" in build.lock_commands(upgrade=True)[0][0]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "layers/build.py lock" in makefile
