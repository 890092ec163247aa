"""The Serverless Components rules for serverless.yml and layers/serverless.yml, offline.

The Components CLI only resolves `${env:X}` locally (dropping the key when X is unset) and
leaves every other check to Tencent's servers after login. So these functions validate both
YAML files against the scf and layer components' input rules (their `serverless.component.yml`
and docs/configure.md), and compute what the function's upload holds (`src` minus its
excludes, matched like minimatch). Each rule returns a list of problems; tests/unit/
test_deploy_config.py runs them on the real files and on mutated copies. Reading and resolving
the files is the tooling's (`cos_autotag_tools.deploy.components`, used by `cos-autotag local`).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cos_autotag_tools import cos_facts
from cos_autotag_tools.deploy.components import _ENV_VAR, FUNCTION_YML, PLAIN_VARIABLES, ROOT, load_yaml, resolved

LAYER_YML = ROOT / "layers" / "serverless.yml"


ENV_EXAMPLE = ROOT / ".env.example"


# From the scf component's serverless.component.yml (name) and docs/configure.md (handler).
NAME_RE = re.compile(r"^[A-Za-z][\w-]{0,58}[A-Za-z0-9]$")


HANDLER_PART_RE = re.compile(r"^[A-Za-z][\w-]{0,58}[A-Za-z]$")


ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


OUTPUT_RE = re.compile(r"^output:(?P<stage>[^:]+):(?P<app>[^:]+):(?P<instance>[\w-]+)\.(?P<key>\w+)$")


TRIGGER_PARAMETERS = frozenset({"qualifier", "bucket", "filter", "events", "enable"})


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


def _component_problems(doc: Mapping[str, Any], component: str) -> tuple[list[str], dict[str, Any] | None]:
    """What every component document needs: its component, names, and an inputs mapping (or None)."""
    problems: list[str] = []
    if doc.get("component") != component:
        problems.append(f"component must be {component}")
    for key in ("name", "app", "stage"):
        if not isinstance(doc.get(key), str) or not NAME_RE.match(doc[key]):
            problems.append(f"{key} {doc.get(key)!r} must match {NAME_RE.pattern}")
    inputs = doc.get("inputs")
    if not isinstance(inputs, dict):
        return [*problems, "inputs must be a mapping"], None
    return problems, inputs


def function_problems(doc: Mapping[str, Any]) -> list[str]:
    """Problems of a resolved scf component document (env and ${name}/${stage}/${app} filled)."""
    problems, inputs = _component_problems(doc, "scf")
    if inputs is None:
        return problems
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
    problems, inputs = _component_problems(doc, "layer")
    if inputs is None:
        return problems
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


def function_src(doc: Mapping[str, Any], root: Path = ROOT) -> tuple[Path, list[str]]:
    src = doc["inputs"]["src"]
    if isinstance(src, str):
        return (root / src).resolve(), []
    return (root / src["src"]).resolve(), list(src.get("exclude", []))


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


def function_doc(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """serverless.yml as the CLI would send it, with `env` (default: .env.example's values)."""
    if env is None:
        env, _ = example_env()
    return resolved(load_yaml(FUNCTION_YML), env)


def layer_doc(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    if env is None:
        env, _ = example_env()
    return resolved(load_yaml(LAYER_YML), env)
