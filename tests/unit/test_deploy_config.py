"""serverless.yml and layers/serverless.yml: checked offline, since no Serverless tool can.

The Components CLI only resolves `${env:X}` locally (dropping the key when X is unset) and
leaves every other check to Tencent's servers after login. So this file validates both YAML
files against the scf and layer components' input rules (their `serverless.component.yml`
and docs/configure.md), with the example values of .env.example filled in, and checks that
they agree with the code: the settings the function reads, the handler, the local-only package
left out of the upload, the runtime the layer is built for.

Each rule is a function returning problems, and each has a negative test: a mutated copy of
the real file that the rule must reject.
"""

from __future__ import annotations

import ast
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
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from cos_autotag import cos_facts

ROOT = Path(__file__).resolve().parents[2]
FUNCTION_YML = ROOT / "serverless.yml"
LAYER_YML = ROOT / "layers" / "serverless.yml"
ENV_EXAMPLE = ROOT / ".env.example"
CAM_POLICY = ROOT / "cam-policy.json"
BUILD_PY = ROOT / "layers" / "build.py"
PYPROJECT = ROOT / "pyproject.toml"

# Settings the function reads that are deliberately not deployed, with the reason.
LOCAL_ONLY_SETTINGS = {
    "AUTOTAG_COS_ENDPOINT": "points the SDK at the local emulator; the cloud uses the real endpoint",
}
# Variables .env.example may list that no deployment file uses: the CLI itself reads them.
CLI_VARIABLES = frozenset({"TENCENT_SECRET_ID", "TENCENT_SECRET_KEY", "TENCENT_TOKEN", "SERVERLESS_PLATFORM_VENDOR"})

# From the scf component's serverless.component.yml (name) and docs/configure.md (handler).
NAME_RE = re.compile(r"^[A-Za-z][\w-]{0,58}[A-Za-z0-9]$")
HANDLER_PART_RE = re.compile(r"^[A-Za-z][\w-]{0,58}[A-Za-z]$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
VARIABLE_KINDS = ("env:", "output:")
PLAIN_VARIABLES = frozenset({"name", "stage", "app"})
OUTPUT_RE = re.compile(r"^output:(?P<stage>[^:]+):(?P<app>[^:]+):(?P<instance>[\w-]+)\.(?P<key>\w+)$")
TRIGGER_PARAMETERS = frozenset({"qualifier", "bucket", "filter", "events", "enable"})


# --- reading the files ----------------------------------------------------------------------------


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path.name} must be a mapping"
    return data


def parse_env_example(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """(active NAME=value lines, commented-out `# NAME=value` lines: optional, documented)."""
    active: dict[str, str] = {}
    optional: dict[str, str] = {}
    for line in text.splitlines():
        stripped = line.strip()
        commented = stripped.startswith("#")
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", stripped)
        if match:
            (optional if commented else active)[match.group(1)] = match.group(2).strip()
    return active, optional


def example_env() -> tuple[dict[str, str], dict[str, str]]:
    return parse_env_example(ENV_EXAMPLE.read_text(encoding="utf-8"))


def load_build_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("layer_build", BUILD_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("layer_build", module)
    spec.loader.exec_module(module)
    return module


# --- ${...} variables --------------------------------------------------------------------------


def variables_in(text: str) -> list[str]:
    """The insides of every `${...}` in `text`, nested ones included (outermost first)."""
    found: list[str] = []
    starts: list[int] = []
    i = 0
    while i < len(text):
        if text.startswith("${", i):
            starts.append(i + 2)
            i += 2
            continue
        if text[i] == "}" and starts:
            start = starts.pop()
            found.append(text[start:i])
        i += 1
    if starts:
        found.append(text[starts[-1] :] + " (unclosed)")
    return sorted(found, key=len, reverse=True)


def walk_strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(dotted path, string) for every string in a YAML document, keys included."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield f"{path}.{key}#key", str(key)
            yield from walk_strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from walk_strings(item, f"{path}[{index}]")


def variable_problems(doc: Mapping[str, Any]) -> list[str]:
    """Only `${env:X}`, `${output:...}`, `${name}`, `${stage}` and `${app}`: the Components CLI
    treats `${self:}`, `${opt:}` and `${file:}` as errors."""
    problems: list[str] = []
    for path, text in walk_strings(doc):
        for inner in variables_in(text):
            if inner.endswith("(unclosed)"):
                problems.append(f"{path}: unclosed ${{ in {text!r}")
            elif inner in PLAIN_VARIABLES:
                continue
            elif inner.startswith("env:"):
                if not ENV_NAME_RE.match(inner[4:]):
                    problems.append(f"{path}: bad variable name in ${{{inner}}}")
            elif inner.startswith("output:"):
                flat = re.sub(r"\$\{(\w+)\}", r"\1", inner)  # ${stage} -> stage for the shape check
                if not OUTPUT_RE.match(flat):
                    problems.append(f"{path}: ${{{inner}}} is not output:STAGE:APP:INSTANCE.KEY")
            else:
                problems.append(f"{path}: ${{{inner}}} is not supported (only env:, output:, name, stage, app)")
    return problems


def env_names(doc: Any) -> set[str]:
    return {inner[4:] for _, text in walk_strings(doc) for inner in variables_in(text) if inner.startswith("env:")}


_ENV_VAR = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")


class _Dropped:
    """Marker for a value whose ${env:X} is unset: the CLI drops the key."""


DROPPED = _Dropped()


def resolve_env(value: Any, env: Mapping[str, str]) -> Any:
    """`value` as the Components CLI sends it: ${env:X} filled in, keys with an unset X dropped."""
    if isinstance(value, str):
        names = _ENV_VAR.findall(value)
        if any(env.get(name, "") == "" for name in names):
            return DROPPED
        return _ENV_VAR.sub(lambda m: env[m.group(1)], value)
    if isinstance(value, dict):
        resolved = {key: resolve_env(item, env) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not DROPPED}
    if isinstance(value, list):
        return [item for item in (resolve_env(v, env) for v in value) if item is not DROPPED]
    return value


def resolve_plain(value: Any, doc: Mapping[str, Any]) -> Any:
    """Replace ${name}, ${stage}, ${app} with the document's own values (as the cloud does)."""
    if isinstance(value, str):
        for var in PLAIN_VARIABLES:
            if isinstance(doc.get(var), str):
                value = value.replace("${" + var + "}", doc[var])
        return value
    if isinstance(value, dict):
        return {key: resolve_plain(item, doc) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve_plain(item, doc) for item in value]
    return value


def resolved(doc: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    out = resolve_env(doc, env)
    assert isinstance(out, dict)
    return dict(resolve_plain(out, out))


# --- the component rules ------------------------------------------------------------------------


def _is_output_ref(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("${output:") and value.endswith("}")


def _memory_ok(value: Any) -> bool:
    if not isinstance(value, int) or isinstance(value, bool):
        return False
    in_range = cos_facts.SCF_MEMORY_MIN_MB <= value <= cos_facts.SCF_MEMORY_MAX_MB
    return in_range and (value == cos_facts.SCF_MEMORY_MIN_MB or value % cos_facts.SCF_MEMORY_STEP_MB == 0)


def _events_overlap(a: str, b: str) -> bool:
    if a == b:
        return True
    created_any = cos_facts.EVENT_CREATED_ANY
    return (a == created_any and b.startswith(cos_facts.EVENT_CREATED_PREFIX)) or (
        b == created_any and a.startswith(cos_facts.EVENT_CREATED_PREFIX)
    )


def _filters_overlap(a: Mapping[str, str], b: Mapping[str, str]) -> bool:
    pa, pb = a.get("prefix", ""), b.get("prefix", "")
    sa, sb = a.get("suffix", ""), b.get("suffix", "")
    return (pa.startswith(pb) or pb.startswith(pa)) and (sa.endswith(sb) or sb.endswith(sa))


def trigger_problems(inputs: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    events = inputs.get("events", [])
    if not isinstance(events, list):
        return ["inputs.events must be a list"]
    region = inputs.get("region")
    allowed_buckets = str(inputs.get("environment", {}).get("variables", {}).get("AUTOTAG_BUCKETS", ""))
    seen: list[tuple[str, str, dict[str, str]]] = []
    cos_count = 0
    for i, event in enumerate(events):
        where = f"events[{i}]"
        if not isinstance(event, dict) or len(event) != 1:
            problems.append(f"{where} must be a mapping with one trigger type")
            continue
        kind, body = next(iter(event.items()))
        if kind != "cos":
            problems.append(f"{where}: only cos triggers are expected, got {kind!r}")
            continue
        cos_count += 1
        params = body.get("parameters") if isinstance(body, dict) else None
        if not isinstance(params, dict):
            problems.append(f"{where}.cos.parameters must be a mapping")
            continue
        unknown = set(params) - TRIGGER_PARAMETERS
        if unknown:
            problems.append(f"{where}: unknown cos parameters {sorted(unknown)}")
        bucket_host = params.get("bucket")
        match = cos_facts.COS_HOST_RE.match(bucket_host) if isinstance(bucket_host, str) else None
        if not match or not str(bucket_host).endswith("." + cos_facts.COS_DOMAIN):
            problems.append(f"{where}: bucket {bucket_host!r} is not <name>-<appid>.cos.<region>.myqcloud.com")
        else:
            if match.group("region") != region:
                problems.append(f"{where}: bucket region {match.group('region')} is not the function's ({region})")
            if allowed_buckets and match.group("bucket") not in allowed_buckets.split(","):
                problems.append(f"{where}: bucket {match.group('bucket')} is not in AUTOTAG_BUCKETS")
        name = params.get("events")
        if name not in cos_facts.TRIGGER_EVENT_NAMES:
            problems.append(f"{where}: events {name!r} is not one of the component's cos event names")
        elif not str(name).startswith(cos_facts.EVENT_CREATED_PREFIX):
            problems.append(f"{where}: events {name!r} is not an object-created event; the function labels uploads")
        if params.get("enable") is not True:
            problems.append(f"{where}: enable must be the boolean true (the component defaults to false)")
        flt = params.get("filter", {})
        if not isinstance(flt, dict) or set(flt) - {"prefix", "suffix"}:
            problems.append(f"{where}: filter may only have prefix and suffix")
            flt = {}
        for key, value in flt.items():
            if not isinstance(value, str):
                problems.append(f"{where}: filter.{key} must be a string, got {value!r}")
        if "qualifier" in params and not isinstance(params["qualifier"], str):
            problems.append(f"{where}: qualifier must be a string")
        if isinstance(name, str) and isinstance(bucket_host, str):
            str_filter = {k: v for k, v in flt.items() if isinstance(v, str)}
            for j, (other_bucket, other_name, other_filter) in enumerate(seen):
                if (
                    other_bucket == bucket_host
                    and _events_overlap(name, other_name)
                    and _filters_overlap(str_filter, other_filter)
                ):
                    problems.append(f"{where} overlaps events[{j}]: the same upload would be delivered twice")
            seen.append((bucket_host, name, str_filter))
    if cos_count == 0:
        problems.append("no cos trigger: nothing would invoke the function")
    if cos_count > cos_facts.SCF_TRIGGERS_PER_TYPE_MAX:
        problems.append(f"{cos_count} cos triggers; SCF allows {cos_facts.SCF_TRIGGERS_PER_TYPE_MAX} per type")
    return problems


def function_problems(doc: Mapping[str, Any]) -> list[str]:
    """Problems of a resolved scf component document (env and ${name}/${stage}/${app} filled)."""
    problems: list[str] = []
    if doc.get("component") != "scf":
        problems.append("component must be scf")
    for key in ("name", "app", "stage"):
        if not isinstance(doc.get(key), str) or not NAME_RE.match(doc[key]):
            problems.append(f"{key} {doc.get(key)!r} must match {NAME_RE.pattern}")
    inputs = doc.get("inputs")
    if not isinstance(inputs, dict):
        return [*problems, "inputs must be a mapping"]
    function_name = inputs.get("name", f"{doc.get('name')}-{doc.get('stage')}-{doc.get('app')}")
    if not NAME_RE.match(str(function_name)) or len(str(function_name)) > cos_facts.SCF_FUNCTION_NAME_MAX_CHARS:
        problems.append(f"function name {function_name!r} is not a valid SCF function name")
    src = inputs.get("src")
    if isinstance(src, dict):
        if not isinstance(src.get("src"), str):
            problems.append("inputs.src.src (the code folder) is required")
        exclude = src.get("exclude", [])
        if not isinstance(exclude, list) or not all(isinstance(p, str) for p in exclude):
            problems.append("inputs.src.exclude must be a list of glob strings")
    elif not isinstance(src, str):
        problems.append("inputs.src is required")
    handler = inputs.get("handler")
    parts = handler.split(".") if isinstance(handler, str) else []
    if len(parts) != 2 or not all(HANDLER_PART_RE.match(p) for p in parts):
        problems.append(f"handler {handler!r} must be FILE.FUNCTION")
    if inputs.get("runtime") not in cos_facts.SCF_PYTHON_RUNTIMES:
        problems.append(f"runtime {inputs.get('runtime')!r} is not one of {cos_facts.SCF_PYTHON_RUNTIMES}")
    region = inputs.get("region")
    if not isinstance(region, str) or not cos_facts.REGION_RE.match(region):
        problems.append(f"region {region!r} is not a full region name (it would default to ap-guangzhou)")
    if not _memory_ok(inputs.get("memorySize")):
        problems.append(f"memorySize {inputs.get('memorySize')!r} must be 64 or a multiple of 128 up to 3072")
    timeout = inputs.get("timeout")
    if (
        not isinstance(timeout, int)
        or isinstance(timeout, bool)
        or not cos_facts.SCF_TIMEOUT_MIN_S <= timeout <= cos_facts.SCF_TIMEOUT_MAX_S
    ):
        problems.append(f"timeout {timeout!r} must be {cos_facts.SCF_TIMEOUT_MIN_S}..{cos_facts.SCF_TIMEOUT_MAX_S}")
    if not isinstance(inputs.get("role"), str) or not inputs["role"]:
        problems.append("role (the execution role) is required: without it the function has no credentials")
    if inputs.get("asyncRunEnable", False) is not False:
        problems.append("asyncRunEnable must be false: true switches to long-running mode, without SCF's retries")
    for key in ("retryNum", "msgTTL"):
        if key in inputs:
            problems.append(f"{key} is ignored by the component unless asyncRunEnable is true; remove it")
    variables = inputs.get("environment", {}).get("variables", {})
    if not isinstance(variables, dict):
        problems.append("environment.variables must be a mapping")
        variables = {}
    size = 0
    for key, value in variables.items():
        if not ENV_NAME_RE.match(str(key)):
            problems.append(f"environment variable name {key!r} is invalid")
        if str(key).startswith(cos_facts.SCF_RESERVED_ENV_PREFIXES):
            problems.append(f"environment variable {key} uses a prefix SCF reserves")
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            problems.append(f"environment variable {key} must be a string or number")
        size += len(str(key).encode()) + len(str(value).encode())
    if size > cos_facts.SCF_ENV_MAX_BYTES:
        problems.append(f"environment variables take {size} bytes; SCF allows {cos_facts.SCF_ENV_MAX_BYTES}")
    layers = inputs.get("layers", [])
    if not isinstance(layers, list) or len(layers) > cos_facts.SCF_LAYERS_PER_FUNCTION_MAX:
        problems.append(f"layers must be a list of at most {cos_facts.SCF_LAYERS_PER_FUNCTION_MAX}")
        layers = []
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict) or not isinstance(layer.get("name"), str) or not layer["name"]:
            problems.append(f"layers[{i}].name (a string) is required")
            continue
        version = layer.get("version")
        if not (isinstance(version, int) and not isinstance(version, bool) and version > 0) and not _is_output_ref(
            version
        ):
            problems.append(f"layers[{i}].version must be a number (or a ${{output:...}} reference)")
    problems.extend(trigger_problems(inputs))
    return problems


def layer_problems(doc: Mapping[str, Any]) -> list[str]:
    """Problems of a resolved layer component document."""
    problems: list[str] = []
    if doc.get("component") != "layer":
        problems.append("component must be layer")
    for key in ("name", "app", "stage"):
        if not isinstance(doc.get(key), str) or not NAME_RE.match(doc[key]):
            problems.append(f"{key} {doc.get(key)!r} must match {NAME_RE.pattern}")
    inputs = doc.get("inputs")
    if not isinstance(inputs, dict):
        return [*problems, "inputs must be a mapping"]
    if not isinstance(inputs.get("region"), str) or not cos_facts.REGION_RE.match(inputs["region"]):
        problems.append(f"region {inputs.get('region')!r} is not a full region name")
    if not isinstance(inputs.get("name"), str) or not NAME_RE.match(inputs["name"]):
        problems.append(f"layer name {inputs.get('name')!r} must match {NAME_RE.pattern}")
    if not isinstance(inputs.get("src"), str):
        problems.append("inputs.src (the folder to upload) is required")
    runtimes = inputs.get("runtimes")
    if not isinstance(runtimes, list) or not runtimes or not all(r in cos_facts.SCF_PYTHON_RUNTIMES for r in runtimes):
        problems.append(f"runtimes {runtimes!r} must list SCF Python runtimes")
    return problems


# --- the upload: src with its excludes --------------------------------------------------------


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A minimatch-style glob (`**` any depth, `*` and `?` within a segment) as a regex."""
    parts = pattern.strip("/").split("/")
    out = ""
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            out += ".*" if last else "(?:[^/]+/)*"
            continue
        segment = "".join("[^/]*" if ch == "*" else "[^/]" if ch == "?" else re.escape(ch) for ch in part)
        out += segment + ("" if last else "/")
    return re.compile("^" + out + "$")


def deploy_files(src: Path, exclude: list[str]) -> list[str]:
    """Files under `src` the component would upload, as posix paths relative to `src`."""
    patterns = [glob_regex(p) for p in exclude]
    files = []
    for path in sorted(src.rglob("*")):
        if path.is_file():
            rel = path.relative_to(src).as_posix()
            if not any(p.match(rel) for p in patterns):
                files.append(rel)
    return files


def function_src(doc: Mapping[str, Any]) -> tuple[Path, list[str]]:
    src = doc["inputs"]["src"]
    if isinstance(src, str):
        return (ROOT / src).resolve(), []
    return (ROOT / src["src"]).resolve(), list(src.get("exclude", []))


# --- imports of the uploaded code -----------------------------------------------------------------


def _requirement_name(spec: str) -> str:
    match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
    assert match, f"cannot read a package name from {spec!r}"
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def runtime_import_names(requirements: list[str]) -> set[str]:
    """Top-level import names of the runtime dependencies and everything they pull in."""
    from packaging.requirements import Requirement

    dists: set[str] = set()
    todo = [_requirement_name(r) for r in requirements]
    while todo:
        name = todo.pop()
        if name in dists:
            continue
        dists.add(name)
        for spec in importlib.metadata.requires(name) or []:
            requirement = Requirement(spec)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(_requirement_name(requirement.name))
    names: set[str] = set()
    for module, owners in importlib.metadata.packages_distributions().items():
        if any(_requirement_name(owner) in dists for owner in owners):
            names.add(module)
    return names


_IMPORT_ERRORS = frozenset({"ImportError", "ModuleNotFoundError"})


def _optional_import_nodes(tree: ast.AST) -> set[int]:
    """ids of nodes whose imports cannot break the function: inside `if TYPE_CHECKING:` (never
    run) or inside a `try:` whose handler catches ImportError (an optional extra)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        body: list[ast.stmt] = []
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else ""
            if name == "TYPE_CHECKING":
                body = node.body
        elif isinstance(node, ast.Try):
            caught: set[str] = set()
            for handler in node.handlers:
                kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
                caught |= {k.id for k in kinds if isinstance(k, ast.Name)}
            if caught & _IMPORT_ERRORS:
                body = node.body
        skipped.update(id(child) for stmt in body for child in ast.walk(stmt))
    return skipped


def import_problems(src: Path, files: list[str], allowed_third_party: set[str], local_package: str) -> list[str]:
    """Imports in the uploaded code that the deployed function could not satisfy."""
    problems: list[str] = []
    ours = {Path(f).parts[0].removesuffix(".py") for f in files}
    for rel in files:
        if not rel.endswith(".py"):
            continue
        path = src / rel
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        skipped = _optional_import_nodes(tree)
        module = rel.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
        package = module if rel.endswith("__init__.py") else module.rpartition(".")[0]
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            targets: list[str] = []
            lineno = getattr(node, "lineno", 0)
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
                    targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
                else:
                    targets = [node.module or ""]
            for target in targets:
                top = target.split(".")[0]
                if target == local_package or target.startswith(local_package + "."):
                    problems.append(f"{rel}:{lineno} imports {target}, which is not uploaded")
                elif top in sys.stdlib_module_names or top in allowed_third_party:
                    continue
                elif top in ours:
                    continue  # our own code: whether it imports is the handler test's job
                else:
                    problems.append(
                        f"{rel}:{lineno} imports {top}, which is not a runtime dependency "
                        "(add it to [project].dependencies so the layer carries it, or keep the code local)"
                    )
    return sorted(set(problems))


# --- tests: the files as they are -------------------------------------------------------------


def function_doc() -> dict[str, Any]:
    active, _ = example_env()
    return resolved(load_yaml(FUNCTION_YML), active)


def layer_doc() -> dict[str, Any]:
    active, _ = example_env()
    return resolved(load_yaml(LAYER_YML), active)


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


def required_env_names(function: Mapping[str, Any], layer: Mapping[str, Any]) -> set[str]:
    """Names whose absence would break the deploy rather than fall back to a default.

    A function setting or a trigger filter whose whole value is one `${env:X}` may stay unset:
    the CLI drops the key and the default applies. Anywhere else (region, role, bucket, stage)
    a dropped key deploys something else than intended, e.g. to ap-guangzhou.
    """
    doc = copy.deepcopy(dict(function))
    inputs = doc.get("inputs", {})
    optional_blocks = [inputs.get("environment", {}).get("variables", {})]
    optional_blocks += [e["cos"]["parameters"].get("filter", {}) for e in inputs.get("events", []) if "cos" in e]
    for block in optional_blocks:
        for key in [k for k, v in block.items() if isinstance(v, str) and _ENV_VAR.fullmatch(v)]:
            del block[key]
    return env_names(doc) | env_names(layer)


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
    used |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)\}", CAM_POLICY.read_text(encoding="utf-8")))
    stale = (active.keys() | optional.keys()) - used - CLI_VARIABLES
    assert not stale, f".env.example documents names nothing reads: {sorted(stale)}"


def test_environment_variables_are_the_settings_the_function_reads() -> None:
    settings = importlib.import_module("cos_autotag.settings")
    if not hasattr(settings, "ENV_VARS"):
        pytest.skip("cos_autotag.settings does not export ENV_VARS yet")
    env_vars = set(settings.ENV_VARS)
    assert set(LOCAL_ONLY_SETTINGS) <= env_vars, "LOCAL_ONLY_SETTINGS names a setting the code no longer reads"
    deployed = set(load_yaml(FUNCTION_YML)["inputs"]["environment"]["variables"])
    expected = env_vars - set(LOCAL_ONLY_SETTINGS)
    assert deployed == expected, f"missing: {sorted(expected - deployed)}; unknown: {sorted(deployed - expected)}"


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


def test_upload_leaves_out_the_local_package_and_build_debris() -> None:
    src, exclude = function_src(function_doc())
    files = deploy_files(src, exclude)
    package_files = [f for f in files if f.startswith("cos_autotag/")]
    assert package_files, "the cos_autotag package is not uploaded"
    assert not [f for f in files if f.startswith("cos_autotag_tools/")], "local-only code is uploaded"
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc") or ".egg-info/" in f]


def test_upload_holds_every_module_the_handler_can_import() -> None:
    """Excluding too much breaks the function in the cloud only; catch it here."""
    from tests.unit.test_cam_policy import reachable_modules

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
