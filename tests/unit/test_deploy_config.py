"""serverless.yml and layers/serverless.yml: checked offline, since no Serverless tool can.

The Components CLI only resolves `${env:X}` locally (dropping the key when X is unset) and
leaves every other check to Tencent's servers after login. So this file validates both YAML
files against the scf and layer components' input rules (their `serverless.component.yml`
and docs/configure.md), with the example values of .env.example filled in, and checks that
they agree with the code: the settings the function reads, the handler, the local-only package
left out of the upload, the runtime the layer is built for.

The rules live in tests/support/deploy_config.py (and the import scanner in tests/support/deploy_scan.py);
each rule returns problems, and each has a negative test here: a mutated copy of the real file
that the rule must reject.
"""

from __future__ import annotations

import copy
import importlib
import importlib.metadata
import importlib.util
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cos_autotag_tools import cos_facts
from cos_autotag_tools.deploy.components import resolve_env
from tests.support.deploy_config import (
    FUNCTION_YML,
    LAYER_YML,
    OUTPUT_RE,
    ROOT,
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
    resolved,
    variable_problems,
    variables_in,
)
from tests.support.deploy_scan import import_problems, reachable_modules, runtime_import_names
from tests.support.layer_build import load_build_module

SRC = (ROOT / "src").resolve()
PYPROJECT = ROOT / "pyproject.toml"

# Variables .env.example may list that no deployment file uses: the deploy CLI itself reads
# them, or a documented command takes them (`cos-autotag policy --appid "$COS_APPID"`).
CLI_VARIABLES = frozenset({"TENCENT_SECRET_ID", "TENCENT_SECRET_KEY", "TENCENT_TOKEN", "SERVERLESS_PLATFORM_VENDOR"})
COMMAND_VARIABLES = frozenset({"COS_APPID"})


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


def test_function_uploads_the_package_make_package_builds() -> None:
    """serverless.yml uploads build/function, which `make package` (layers/build.py) writes."""
    src, exclude = function_src(function_doc())
    assert src == (load_build_module().FUNCTION_OUT / "function").resolve()
    assert exclude == [], "the build decides what ships; an exclusion here would hide a build problem"


def test_handler_resolves_to_a_callable_in_the_uploaded_code() -> None:
    doc = function_doc()
    module_name, function_name = doc["inputs"]["handler"].split(".")
    assert f"{module_name}.py" in load_build_module().function_files(SRC), f"{module_name}.py is not uploaded"
    sys.path.insert(0, str(SRC))
    try:
        module = importlib.import_module(module_name)
    finally:
        sys.path.remove(str(SRC))
    assert Path(module.__file__ or "").resolve() == SRC / f"{module_name}.py"
    assert callable(getattr(module, function_name, None)), f"{module_name}.{function_name} is not callable"


def test_upload_is_exactly_the_handler_module_and_the_function_package() -> None:
    """The function package is src/ whole: index.py and cos_autotag, nothing else."""
    files = load_build_module().function_files(SRC)
    assert {Path(f).parts[0] for f in files} == {"index.py", "cos_autotag"}
    package = sorted(p.relative_to(SRC).as_posix() for p in (SRC / "cos_autotag").rglob("*.py"))
    assert [f for f in files if f != "index.py"] == package, "the package ships whole, and only its modules"
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc") or ".egg-info/" in f]


def test_package_leaves_out_only_build_debris(tmp_path: Path) -> None:
    """What the build copies from a src/ holding what Python and pip leave behind."""
    for rel in (
        "index.py",
        "cos_autotag/__init__.py",
        "cos_autotag/__pycache__/handler.cpython-310.pyc",
        "__pycache__/index.cpython-311.pyc",
        "cos_autotag.egg-info/PKG-INFO",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("", encoding="utf-8")
    assert load_build_module().function_files(tmp_path) == ["cos_autotag/__init__.py", "index.py"]


def test_upload_holds_every_module_the_handler_can_import() -> None:
    """Leaving out too much breaks the function in the cloud only; catch it here."""
    files = set(load_build_module().function_files(SRC))
    needed = {
        name.replace(".", "/") + ("/__init__.py" if (SRC / name.replace(".", "/")).is_dir() else ".py")
        for name in reachable_modules(SRC)
    }
    assert "index.py" in needed
    assert needed <= files, f"left out of the package but imported by the handler: {sorted(needed - files)}"


def test_uploaded_code_imports_only_what_the_layer_carries() -> None:
    build = load_build_module()
    allowed = runtime_import_names(build.runtime_dependencies(PYPROJECT))
    assert {"qcloud_cos", "requests", "structlog"} <= allowed
    assert import_problems(SRC, build.function_files(SRC), allowed, "cos_autotag_tools") == []


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
