"""serverless.yml and layers/serverless.yml: checked offline, since no Serverless tool can.

The Components CLI only resolves `${env:X}` locally (dropping the key when X is unset) and
leaves every other check to Tencent's servers after login. So this file validates both YAML
files against the scf and layer components' input rules (their `serverless.component.yml`
and docs/configure.md), with the example values of .env.example filled in, and checks that
they agree with the code: the settings the function reads, the handler, the local-only package
left out of the upload, the runtime the layer is built for.

The rules live in `cos_autotag_tools.deploy.components` (and the import scanner in `.imports`);
each rule returns problems, and each has a negative test here: a mutated copy of the real file
that the rule must reject.
"""

from __future__ import annotations

import copy
import importlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cos_autotag_tools import cos_facts
from cos_autotag_tools.deploy.components import (
    FUNCTION_YML,
    LAYER_YML,
    OUTPUT_RE,
    ROOT,
    deploy_files,
    env_names,
    example_env,
    function_doc,
    function_problems,
    function_src,
    glob_regex,
    layer_doc,
    layer_problems,
    load_yaml,
    required_env_names,
    resolve_env,
    resolved,
    variable_problems,
    variables_in,
)
from cos_autotag_tools.deploy.imports import import_problems, reachable_modules, runtime_import_names

BUILD_PY = ROOT / "layers" / "build.py"
PYPROJECT = ROOT / "pyproject.toml"

# Variables .env.example may list that no deployment file uses: the deploy CLI itself reads
# them, or a documented command takes them (`cos-autotag policy --appid "$COS_APPID"`).
CLI_VARIABLES = frozenset({"TENCENT_SECRET_ID", "TENCENT_SECRET_KEY", "TENCENT_TOKEN", "SERVERLESS_PLATFORM_VENDOR"})
COMMAND_VARIABLES = frozenset({"COS_APPID"})


def load_build_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("layer_build", BUILD_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("layer_build", module)
    spec.loader.exec_module(module)
    return module


# --- tests: the files as they are -------------------------------------------------------------


def test_function_config_follows_the_scf_component_rules() -> None:
    assert function_problems(function_doc()) == []


def test_layer_config_follows_the_layer_component_rules() -> None:
    assert layer_problems(layer_doc()) == []


@pytest.mark.parametrize("path", [FUNCTION_YML, LAYER_YML], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_only_variables_the_components_cli_supports(path: Path) -> None:
    assert variable_problems(load_yaml(path)) == []


def test_every_env_variable_used_is_documented_in_env_example() -> None:
    active, optional = example_env()
    used = env_names(load_yaml(FUNCTION_YML)) | env_names(load_yaml(LAYER_YML))
    undocumented = used - active.keys() - optional.keys()
    assert not undocumented, f"the CLI drops these silently when unset; document them: {sorted(undocumented)}"


def test_required_env_variables_have_example_values() -> None:
    active, _ = example_env()
    required = required_env_names(load_yaml(FUNCTION_YML), load_yaml(LAYER_YML))
    assert {"COS_REGION", "COS_BUCKET", "EXECUTION_ROLE"} <= required
    missing = sorted(name for name in required if not active.get(name))
    assert not missing, f"set these (uncommented, non-empty) in .env.example: {missing}"


def test_required_env_rule_spares_only_whole_value_settings() -> None:
    doc = {"inputs": {"region": "${env:R}", "environment": {"variables": {"A": "${env:A}", "B": "x-${env:B}"}}}}
    assert required_env_names(doc, {}) == {"R", "B"}


def test_env_example_lists_nothing_unused() -> None:
    active, optional = example_env()
    used = env_names(load_yaml(FUNCTION_YML)) | env_names(load_yaml(LAYER_YML))
    stale = (active.keys() | optional.keys()) - used - CLI_VARIABLES - COMMAND_VARIABLES
    assert not stale, f".env.example documents names nothing reads: {sorted(stale)}"


# That serverless.yml sets exactly the deployed settings: test_settings.py's one drift test.


def test_example_settings_are_accepted_by_the_function() -> None:
    """With every documented example value set, the function's own settings parser accepts them."""
    settings = importlib.import_module("cos_autotag.settings")
    active, optional = example_env()
    raw = load_yaml(FUNCTION_YML)["inputs"]["environment"]["variables"]
    variables = resolve_env(raw, {**optional, **active})
    settings.Settings.from_env({k: str(v) for k, v in variables.items()})


def test_environment_fits_scf_limit_with_every_example_value() -> None:
    active, optional = example_env()
    doc = resolved(load_yaml(FUNCTION_YML), {**optional, **active})
    assert function_problems(doc) == []


def test_handler_resolves_to_a_callable_in_the_uploaded_code() -> None:
    doc = function_doc()
    module_name, function_name = doc["inputs"]["handler"].split(".")
    src, exclude = function_src(doc)
    assert f"{module_name}.py" in deploy_files(src, exclude), f"{module_name}.py is not uploaded"
    sys.path.insert(0, str(src))
    try:
        module = importlib.import_module(module_name)
    finally:
        sys.path.remove(str(src))
    assert Path(module.__file__ or "").resolve() == src / f"{module_name}.py"
    assert callable(getattr(module, function_name, None)), f"{module_name}.{function_name} is not callable"


def test_upload_is_exactly_the_handler_module_and_the_function_package() -> None:
    """serverless.yml names what ships (src/ whole): index.py and cos_autotag, nothing else."""
    src, exclude = function_src(function_doc())
    assert src == (ROOT / "src").resolve()
    files = deploy_files(src, exclude)
    assert {Path(f).parts[0] for f in files} == {"index.py", "cos_autotag"}
    package = sorted(p.relative_to(src).as_posix() for p in (src / "cos_autotag").rglob("*.py"))
    assert [f for f in files if f != "index.py"] == package, "the package ships whole, and only its modules"
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc") or ".egg-info/" in f]


def test_excludes_drop_only_build_debris(tmp_path: Path) -> None:
    """The upload's exclusions, applied to a src/ holding what Python and pip leave behind."""
    _, exclude = function_src(function_doc())
    for rel in (
        "index.py",
        "cos_autotag/__init__.py",
        "cos_autotag/__pycache__/handler.cpython-310.pyc",
        "__pycache__/index.cpython-310.pyc",
        "cos_autotag.egg-info/PKG-INFO",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("", encoding="utf-8")
    assert deploy_files(tmp_path, exclude) == ["cos_autotag/__init__.py", "index.py"]


def test_upload_holds_every_module_the_handler_can_import() -> None:
    """Excluding too much breaks the function in the cloud only; catch it here."""
    src, exclude = function_src(function_doc())
    files = set(deploy_files(src, exclude))
    needed = {
        name.replace(".", "/") + ("/__init__.py" if (src / name.replace(".", "/")).is_dir() else ".py")
        for name in reachable_modules(src)
    }
    assert "index.py" in needed
    assert needed <= files, f"excluded from the upload but imported by the handler: {sorted(needed - files)}"


def test_uploaded_code_imports_only_what_the_layer_carries() -> None:
    src, exclude = function_src(function_doc())
    files = deploy_files(src, exclude)
    allowed = runtime_import_names(load_build_module().runtime_dependencies(PYPROJECT))
    assert {"qcloud_cos", "requests", "structlog"} <= allowed
    assert import_problems(src, files, allowed, "cos_autotag_tools") == []


def test_layer_is_built_for_the_function_runtime_and_referenced_by_it() -> None:
    build = load_build_module()
    fn, layer = function_doc(), layer_doc()
    runtime = fn["inputs"]["runtime"]
    assert layer["inputs"]["runtimes"] == [runtime], "the layer must target the function's runtime"
    assert runtime == build.SCF_RUNTIME, "layers/build.py builds for another Python than the function runs"
    assert layer["inputs"]["region"] == fn["inputs"]["region"], "a function can only use layers of its region"
    assert (LAYER_YML.parent / layer["inputs"]["src"]).resolve() == (build.DEFAULT_OUT / "layer").resolve()
    raw_fn, raw_layer = load_yaml(FUNCTION_YML), load_yaml(LAYER_YML)
    assert raw_fn["app"] == raw_layer["app"] and raw_fn["stage"] == raw_layer["stage"]
    keys = []
    for item in raw_fn["inputs"]["layers"]:
        for field in ("name", "version"):
            ref = variables_in(str(item[field]))[0]  # the outermost ${...}
            match = OUTPUT_RE.match(re.sub(r"\$\{(\w+)\}", r"\1", ref))
            assert match, f"layers[].{field} should be an ${{output:...}} of the layer instance, got {ref!r}"
            assert (match["stage"], match["app"]) == ("stage", "app"), "refer to the layer in this app and stage"
            assert match["instance"] == raw_layer["name"], f"{ref} does not name the layer instance"
            assert match["key"] == field
            keys.append(match["key"])
    assert sorted(keys) == ["name", "version"]


def test_toml_fallback_reads_the_same_dependencies_as_tomllib() -> None:
    tomllib = pytest.importorskip("tomllib")
    build = load_build_module()
    text = PYPROJECT.read_text(encoding="utf-8")
    assert build.parse_dependencies(text) == tomllib.loads(text)["project"]["dependencies"]


@pytest.mark.parametrize(
    "text",
    [
        '[project]\ndependencies = [\n  "a>=1",\n',  # never closed
        "[project]\ndependencies = [a]\n",  # not a string
        '[project]\ndependencies = "a"\n',  # not an array
    ],
)
def test_toml_fallback_refuses_what_it_cannot_read(text: str) -> None:
    build = load_build_module()
    with pytest.raises(build.BuildFailed):
        build.parse_dependencies(text)


def test_toml_fallback_handles_comments_and_other_tables() -> None:
    build = load_build_module()
    text = (
        '[tool.x]\ndependencies = ["no"]\n'
        '[project]\nname = "p"  # dependencies = ["no"]\n'
        "dependencies = [ # runtime\n  'a>=1', # first\n  \"b[x]; python_version < '4'\",\n]\n"
    )
    assert build.parse_dependencies(text) == ["a>=1", "b[x]; python_version < '4'"]


# --- tests: each rule rejects what it should ----------------------------------------------------

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = _split_path(path)
        target: Any = doc
        for step in parents:
            target = target[step]
        target[last] = value

    return mutate


def _delete(path: str) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = _split_path(path)
        target: Any = doc
        for step in parents:
            target = target[step]
        del target[last]

    return mutate


def _split_path(path: str) -> list[str | int]:
    return [int(p) if p.isdigit() else p for p in path.split(".")]


def _append_trigger(event: str) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        first = copy.deepcopy(doc["inputs"]["events"][0])
        first["cos"]["parameters"]["events"] = event
        doc["inputs"]["events"].append(first)

    return mutate


def _many_env(doc: dict[str, Any]) -> None:
    doc["inputs"]["environment"]["variables"]["AUTOTAG_PADDING"] = "x" * cos_facts.SCF_ENV_MAX_BYTES


FUNCTION_MUTATIONS: list[tuple[str, Mutation, str]] = [
    ("component", _set("component", "layer"), "component must be scf"),
    ("instance name", _set("name", "9-starts-with-digit"), "name '9-starts-with-digit'"),
    ("function name too long", _set("inputs.name", "f" * 61), "not a valid SCF function name"),
    ("src missing", _delete("inputs.src"), "inputs.src is required"),
    ("src folder missing", _delete("inputs.src.src"), "inputs.src.src"),
    ("handler", _set("inputs.handler", "index"), "must be FILE.FUNCTION"),
    ("runtime", _set("inputs.runtime", "Python3.11"), "runtime 'Python3.11'"),
    ("region dropped", _delete("inputs.region"), "would default to ap-guangzhou"),
    ("memory not a step", _set("inputs.memorySize", 100), "memorySize 100"),
    ("memory too big", _set("inputs.memorySize", 3200), "memorySize 3200"),
    ("memory a string", _set("inputs.memorySize", "128"), "memorySize '128'"),
    ("timeout zero", _set("inputs.timeout", 0), "timeout 0"),
    ("timeout too long", _set("inputs.timeout", 901), "timeout 901"),
    ("role dropped", _delete("inputs.role"), "role (the execution role)"),
    ("long-running mode", _set("inputs.asyncRunEnable", True), "asyncRunEnable must be false"),
    ("retryNum without async", _set("inputs.retryNum", 2), "retryNum is ignored"),
    ("reserved env prefix", _set("inputs.environment.variables.SCF_DEBUG", "1"), "prefix SCF reserves"),
    ("env too big", _many_env, "bytes; SCF allows"),
    ("layer without name", _delete("inputs.layers.0.name"), "layers[0].name"),
    ("layer version text", _set("inputs.layers.0.version", "latest"), "layers[0].version"),
    (
        "bucket host",
        _set("inputs.events.0.cos.parameters.bucket", "examplebucket.cos.ap-guangzhou.myqcloud.com"),
        "is not <name>-<appid>.cos",
    ),
    (
        "bucket region",
        _set("inputs.events.0.cos.parameters.bucket", "examplebucket-1250000000.cos.ap-shanghai.myqcloud.com"),
        "is not the function's",
    ),
    (
        "bucket not allowed",
        _set("inputs.events.0.cos.parameters.bucket", "otherbucket-1250000000.cos.ap-guangzhou.myqcloud.com"),
        "not in AUTOTAG_BUCKETS",
    ),
    ("unknown event", _set("inputs.events.0.cos.parameters.events", "cos:ObjectCreated:Upload"), "cos event names"),
    ("remove event", _set("inputs.events.0.cos.parameters.events", "cos:ObjectRemove:*"), "not an object-created"),
    ("enable as text", _set("inputs.events.0.cos.parameters.enable", "true"), "enable must be the boolean true"),
    ("enable false", _set("inputs.events.0.cos.parameters.enable", False), "enable must be the boolean true"),
    ("filter not text", _set("inputs.events.0.cos.parameters.filter", {"prefix": 7}), "filter.prefix must be"),
    ("filter key", _set("inputs.events.0.cos.parameters.filter", {"regex": ".*"}), "only have prefix and suffix"),
    ("unknown trigger key", _set("inputs.events.0.cos.parameters.name", "x"), "unknown cos parameters"),
    ("duplicate event", _append_trigger("cos:ObjectCreated:Put"), "overlaps events[0]"),
    ("star plus put", _append_trigger("cos:ObjectCreated:*"), "overlaps events[0]"),
    ("no trigger", _set("inputs.events", []), "no cos trigger"),
]


@pytest.mark.parametrize(
    ("mutate", "expected"), [m[1:] for m in FUNCTION_MUTATIONS], ids=[m[0] for m in FUNCTION_MUTATIONS]
)
def test_function_rules_reject(mutate: Mutation, expected: str) -> None:
    doc = copy.deepcopy(function_doc())
    assert function_problems(doc) == [], "the real file must pass before a mutation means anything"
    mutate(doc)
    problems = function_problems(doc)
    assert any(expected in p for p in problems), problems


LAYER_MUTATIONS: list[tuple[str, Mutation, str]] = [
    ("component", _set("component", "scf"), "component must be layer"),
    ("src missing", _delete("inputs.src"), "inputs.src"),
    ("runtime", _set("inputs.runtimes", ["Python3.12"]), "runtimes"),
    ("no runtimes", _set("inputs.runtimes", []), "runtimes"),
    ("name", _set("inputs.name", "-bad"), "layer name"),
    ("region dropped", _delete("inputs.region"), "region None"),
]


@pytest.mark.parametrize(("mutate", "expected"), [m[1:] for m in LAYER_MUTATIONS], ids=[m[0] for m in LAYER_MUTATIONS])
def test_layer_rules_reject(mutate: Mutation, expected: str) -> None:
    doc = copy.deepcopy(layer_doc())
    mutate(doc)
    problems = layer_problems(doc)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("${self:custom.x}", "not supported"),
        ("${opt:stage}", "not supported"),
        ("${file(./x.yml)}", "not supported"),
        ("${env:bad-name}", "bad variable name"),
        ("${output:dev:app}", "is not output:STAGE:APP:INSTANCE.KEY"),
        ("${env:X", "unclosed"),
    ],
)
def test_variable_rule_rejects(value: str, expected: str) -> None:
    doc = load_yaml(FUNCTION_YML)
    doc["inputs"]["description"] = value
    problems = variable_problems(doc)
    assert any(expected in p for p in problems), problems


def test_unset_env_variable_drops_the_key_like_the_cli() -> None:
    doc = {"inputs": {"region": "${env:R}", "bucket": "${env:B}.cos.${env:R}.myqcloud.com", "keep": "x"}}
    assert resolve_env(doc, {"R": "ap-guangzhou"}) == {"inputs": {"keep": "x", "region": "ap-guangzhou"}}
    assert resolve_env(doc, {"R": "ap-guangzhou", "B": "b-1250000000"})["inputs"]["bucket"] == (
        "b-1250000000.cos.ap-guangzhou.myqcloud.com"
    )


def test_excludes_match_like_minimatch() -> None:
    assert glob_regex("cos_autotag_tools/**").match("cos_autotag_tools/engine/model.py")
    assert not glob_regex("cos_autotag_tools/**").match("cos_autotag/localize.py")
    assert glob_regex("**/__pycache__/**").match("__pycache__/index.cpython-310.pyc")
    assert glob_regex("**/__pycache__/**").match("cos_autotag/__pycache__/x.pyc")
    assert glob_regex("*.egg-info/**").match("cos_autotag.egg-info/PKG-INFO")
    assert not glob_regex("*.egg-info/**").match("cos_autotag/x.egg-info/PKG-INFO")


def test_import_rule_catches_local_and_undeclared_imports(tmp_path: Path) -> None:
    files = {
        "index.py": "from cos_autotag.handler import main_handler\n",
        "cos_autotag/__init__.py": "",
        "cos_autotag/handler.py": (
            "from typing import TYPE_CHECKING\n"
            "import json, requests\n"
            "from cos_autotag_tools import engine\n"
            "if TYPE_CHECKING:\n    import numpy\n"
            "try:\n    import tqdm\nexcept ImportError:\n    tqdm = None\n"
            "try:\n    import PIL\nexcept ValueError:\n    pass\n"
            "def main_handler(event, context):\n    import redis\n"
        ),
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    problems = import_problems(tmp_path, sorted(files), {"requests"}, "cos_autotag_tools")
    assert any("imports cos_autotag_tools" in p for p in problems), problems
    assert any("imports redis, which is not a runtime dependency" in p for p in problems), problems
    assert any("imports PIL" in p for p in problems), "only an ImportError handler makes an import optional"
    assert not any(name in p for p in problems for name in ("numpy", "json", "requests", "tqdm")), problems


# --- the built layer (built by `make layer` before the tests: pip needs the package index) ---------


@pytest.fixture(scope="session")
def built_layer() -> dict[str, Any]:
    """The layer `make layer` built (`make test` builds it first): tests never reach a package index."""
    build = load_build_module()
    summary_file = build.DEFAULT_OUT / build.SUMMARY_NAME
    assert summary_file.is_file(), "no built layer: run `make layer` (make test runs it before the tests)"
    summary: dict[str, Any] = json.loads(summary_file.read_text(encoding="utf-8"))
    assert Path(summary["layer_dir"]).is_dir(), f"{summary['layer_dir']} is gone: run `make layer` again"
    return summary


def _reports_version(python: str, version: str, env: Mapping[str, str]) -> bool:
    probe = [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]
    try:
        proc = subprocess.run(probe, capture_output=True, text=True, env=dict(env), check=False, timeout=30)
    except OSError:
        return False
    return proc.returncode == 0 and proc.stdout.strip() == version


def _isolated_python() -> tuple[str, dict[str, str]]:
    """SCF's Python (3.10) if this machine has it, found on PATH or through pyenv; otherwise
    the interpreter running the tests (a newer Python still imports the 3.10 layer's code)."""
    version = load_build_module().PYTHON_VERSION
    env = dict(os.environ)
    exe = shutil.which("python" + version)
    if exe and _reports_version(exe, version, env):
        return exe, env
    pyenv = shutil.which("pyenv")
    if exe and pyenv:  # a pyenv shim: ask for the newest installed 3.10.x
        latest = subprocess.run([pyenv, "latest", version], capture_output=True, text=True, check=False)
        env["PYENV_VERSION"] = latest.stdout.strip()
        if latest.returncode == 0 and _reports_version(exe, version, env):
            return exe, env
    return sys.executable, dict(os.environ)


@pytest.mark.integration
def test_built_layer_runs_the_uploaded_handler_in_isolation(built_layer: dict[str, Any], tmp_path: Path) -> None:
    """Upload (src minus excludes) + layer, nothing else: `import index` must work, take every
    dependency from the layer, and never load the stripped Crypto package."""
    doc = function_doc()
    src, exclude = function_src(doc)
    code = tmp_path / "code"
    for rel in deploy_files(src, exclude):
        (code / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, code / rel)
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
    python, env = _isolated_python()
    proc = subprocess.run(
        [python, "-B", "-I", "-S", "-c", check, str(code), str(layer)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, f"{python}: {proc.stderr}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
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
def test_built_layer_fits_scf_limits_with_packages_at_the_root(built_layer: dict[str, Any]) -> None:
    import zipfile

    with zipfile.ZipFile(built_layer["zip"]) as zf:
        names = zf.namelist()
    assert "qcloud_cos/__init__.py" in names, "packages must sit at the zip root (/opt on SCF)"
    assert not [n for n in names if n.startswith(("Crypto/", "bin/")) or "__pycache__" in n or n.endswith(".pyc")]
    assert built_layer["zipped_bytes"] < cos_facts.SCF_ZIP_UPLOAD_MAX_BYTES
    assert built_layer["unzipped_bytes"] < cos_facts.SCF_CODE_UNZIPPED_MAX_BYTES
    assert built_layer["unzipped_bytes"] < built_layer["pip_installed_bytes"], "stripping removed nothing"
    build = load_build_module()
    locked = [f"{pin.name}=={pin.version}" for pin in build.read_lock(build.LOCK)]
    assert built_layer.get("locked") == locked, "the layer was not built from the current lock: run `make layer`"


# --- the pinned layer: layers/requirements.lock -------------------------------------------------


def _target_closure(requirements: list[str]) -> set[str]:
    """Distribution names the requirements pull in on SCF's Python, read from the installed
    packages' metadata with SCF's environment markers (not this interpreter's)."""
    from packaging.requirements import Requirement

    build = load_build_module()
    names: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        requirement = todo.pop()
        name = build._canonical(requirement.name)
        if name in names:
            continue
        names.add(name)
        for spec in importlib.metadata.requires(name) or []:
            sub = Requirement(spec)
            if sub.marker is None or sub.marker.evaluate(build.TARGET_MARKER_ENV):
                todo.append(sub)
    return names


def test_lock_pins_every_package_of_the_layer_with_a_hash() -> None:
    build = load_build_module()
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


def test_model_wheel_is_pinned_by_hash_at_the_version_pyproject_names() -> None:
    build = load_build_module()
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
def test_lock_reader_refuses_unpinned_or_unhashed_lines(tmp_path: Path, text: str, expected: str) -> None:
    build = load_build_module()
    lock = tmp_path / "requirements.lock"
    lock.write_text(text, encoding="utf-8")
    with pytest.raises(build.BuildFailed, match=expected):
        build.read_lock(lock)


def test_lock_that_no_longer_covers_pyproject_is_refused() -> None:
    build = load_build_module()
    pins = [build.Pin("requests", "2.30.0", ["a" * 64])]
    problems = build.lock_problems(pins, ["requests>=2.31", "structlog>=24.1"])
    assert problems == ["requests==2.30.0 does not satisfy requests>=2.31", "structlog is not pinned"]


def test_layer_installs_from_the_lock_with_hash_checking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pip invocation the build makes (recorded, not run): hash-checked, nothing resolved."""
    build = load_build_module()
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
