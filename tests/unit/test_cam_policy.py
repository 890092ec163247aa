"""cam-policy.json: the execution role's policy grants exactly what the function calls.

The policy is CAM syntax version 2.0. Its `${NAME}` placeholders are filled from .env at deploy
time (`envsubst < cam-policy.json`), with the names .env.example documents.

Where each action name comes from (Tencent Cloud documentation):
- COS object actions `cos:HeadObject`, `cos:GetObject`, `cos:PutObject`, `cos:GetObjectTagging`,
  `cos:PutObjectTagging`, and the resource form `qcs::cos:<region>:uid/<appid>:<bucket>/*`:
  CAM's list of COS APIs (tencentcloud.com/document/product/598/57092) and COSCLI's
  object-tagging page (tencentcloud.com/document/product/436/74109), which names the tagging
  actions.
- `PUT Object - Copy` "is equivalent to requesting GET Object once in the source bucket and
  PUT Object once in the destination bucket" (tencentcloud.com/document/api/436/10881): the
  metadata write-back (a copy of the object onto itself) needs GetObject and PutObject.
- detect-label: "When using with a sub-account, you need to add ci:CreateDetectLabelJob in the
  action of the authorization policy" (tencentcloud.com/document/product/1045/73048). Cloud
  Infinite's authorization table (tencentcloud.com/document/product/1045/58195) lists
  CreateDetectLabelJob as resource-level, on `qcs::ci:<region>:uid/<appid>:bucket/<bucket>/*`.
- The SDK sends detect-label as a signed GET on the object's own COS URL
  (`GET /<key>?ci-process=detect-label`), so COS also authorizes it as GetObject: inferred, not
  stated by Tencent; GetObject is needed for the ranged read and the copy source anyway.

The set of actions is derived from the code: every SDK method the function can reach from
`index.main_handler` is mapped to the actions it needs (SDK_METHOD_ACTIONS), and the policy
must grant exactly that set: no missing action, no unused one.
"""

from __future__ import annotations

import ast
import copy
import inspect
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "cam-policy.json"
ENV_EXAMPLE = ROOT / ".env.example"
SRC = ROOT / "src"
PACKAGE = "cos_autotag"
LOCAL_PACKAGE = "cos_autotag_tools"  # never deployed, never run under the execution role

# The actions the execution role needs, and so exactly what cam-policy.json grants.
REQUIRED_ACTIONS = frozenset(
    {
        "cos:HeadObject",  # content type, size, user metadata before deciding to label
        "cos:GetObject",  # ranged read of the first bytes; copy source; detect-label's GET
        "cos:GetObjectTagging",  # read-merge-write of the tag set
        "cos:PutObjectTagging",  # labels as tags (the default mode)
        "cos:PutObject",  # metadata mode: the copy onto itself writes the destination
        "ci:CreateDetectLabelJob",  # Cloud Infinite detect-label
    }
)

# Each CosS3Client method the code might call -> the CAM actions it needs. A method the code
# calls that is missing here fails the test, so the table grows with the code.
SDK_METHOD_ACTIONS: dict[str, frozenset[str]] = {
    "head_object": frozenset({"cos:HeadObject"}),
    "object_exists": frozenset({"cos:HeadObject"}),  # a HEAD under the hood
    "get_object": frozenset({"cos:GetObject"}),
    "get_object_tagging": frozenset({"cos:GetObjectTagging"}),
    "put_object_tagging": frozenset({"cos:PutObjectTagging"}),
    "delete_object_tagging": frozenset({"cos:DeleteObjectTagging"}),
    "put_object": frozenset({"cos:PutObject"}),
    "copy_object": frozenset({"cos:GetObject", "cos:PutObject"}),  # GET source + PUT destination
    "update_object_meta": frozenset({"cos:GetObject", "cos:PutObject"}),  # a copy onto itself
    "ci_image_detect_label": frozenset({"ci:CreateDetectLabelJob", "cos:GetObject"}),
    "list_objects": frozenset({"cos:GetBucket"}),
    "delete_object": frozenset({"cos:DeleteObject"}),
    # Signing makes no request, but the signed URL (detect-url for a thumbnail) is a GET that
    # Cloud Infinite performs with the function's credentials.
    "get_auth": frozenset({"cos:GetObject"}),
    "get_presigned_url": frozenset({"cos:GetObject"}),
    "get_presigned_download_url": frozenset({"cos:GetObject"}),
    # Local helpers: no request, no permission.
    "get_conf": frozenset(),
    "get_object_url": frozenset(),
    "generate_built_in_connection_pool": frozenset(),
    "handle_built_in_connection_pool_by_pid": frozenset(),
    "get_retry_exe_times": frozenset(),
    "inc_retry_exe_times": frozenset(),
    "should_switch_domain": frozenset(),
}

# CosS3Client method names too generic to count as SDK calls when they appear in our code
# (`copy` is also dict.copy / list.copy). The function uses copy_object instead.
AMBIGUOUS_NAMES = frozenset({"copy"})

ACTION_RE = re.compile(r"^name/(?P<service>cos|ci):(?P<api>[A-Z][A-Za-z]+)$")
PLACEHOLDER_RE = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")


# --- the policy ------------------------------------------------------------------------------------


def load_policy() -> dict[str, Any]:
    data = json.loads(POLICY.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "cam-policy.json must be a JSON object"
    return data


def example_env() -> dict[str, str]:
    """The active NAME=value lines of .env.example."""
    env: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line.strip())
        if match:
            env[match.group(1)] = match.group(2).strip()
    return env


def render(value: Any, env: Mapping[str, str]) -> Any:
    """`value` with every ${NAME} replaced from `env`, as envsubst would at deploy time."""
    if isinstance(value, str):

        def fill(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                raise KeyError(f"${{{name}}} has no value in .env.example")
            return env[name]

        return PLACEHOLDER_RE.sub(fill, value)
    if isinstance(value, list):
        return [render(item, env) for item in value]
    if isinstance(value, dict):
        return {key: render(item, env) for key, item in value.items()}
    return value


def policy_problems(policy: Mapping[str, Any], bucket: str, region: str, appid: str) -> list[str]:
    """What is wrong with a rendered policy: CAM 2.0 shape, and every grant scoped to the bucket."""
    problems: list[str] = []
    if set(policy) != {"version", "statement"}:
        problems.append(f"top-level keys must be version and statement, got {sorted(policy)}")
    if policy.get("version") != "2.0":
        problems.append(f"version must be '2.0', got {policy.get('version')!r}")
    statements = policy.get("statement")
    if not isinstance(statements, list) or not statements:
        return [*problems, "statement must be a non-empty list"]
    expected = {
        "cos": f"qcs::cos:{region}:uid/{appid}:{bucket}/*",
        "ci": f"qcs::ci:{region}:uid/{appid}:bucket/{bucket}/*",
    }
    for i, statement in enumerate(statements):
        where = f"statement[{i}]"
        if not isinstance(statement, dict):
            problems.append(f"{where} is not an object")
            continue
        unknown = set(statement) - {"effect", "action", "resource"}
        if unknown:  # a condition or principal would change what the statement means
            problems.append(f"{where} has unexpected keys {sorted(unknown)}")
        if statement.get("effect") != "allow":
            problems.append(f"{where}.effect must be 'allow'")
        actions, resources = statement.get("action"), statement.get("resource")
        if not isinstance(actions, list) or not actions or not all(isinstance(a, str) for a in actions):
            problems.append(f"{where}.action must be a non-empty list of strings")
            continue
        if not isinstance(resources, list) or not resources or not all(isinstance(r, str) for r in resources):
            problems.append(f"{where}.resource must be a non-empty list of strings")
            continue
        services = set()
        for action in actions:
            match = ACTION_RE.match(action)
            if not match:  # also rejects "*", "name/cos:*" and "cos:Get*"
                problems.append(f"{where}: action {action!r} is not one named API (name/cos:Api)")
            else:
                services.add(match.group("service"))
        if len(services) > 1:
            problems.append(f"{where} mixes services {sorted(services)}: their resources differ")
        for resource in resources:
            if not services or resource != expected[next(iter(services))]:
                wanted = expected[next(iter(services))] if services else "the bucket's objects"
                problems.append(f"{where}: resource {resource!r} is not {wanted!r}")
    return problems


def granted_actions(policy: Mapping[str, Any]) -> set[str]:
    return {
        action.removeprefix("name/")
        for statement in policy.get("statement", [])
        for action in statement.get("action", [])
    }


# --- what the code calls -------------------------------------------------------------------------


def sdk_method_names() -> frozenset[str]:
    """Public methods of the real CosS3Client."""
    from qcloud_cos import CosS3Client

    names = {name for name, _ in inspect.getmembers(CosS3Client, inspect.isfunction) if not name.startswith("_")}
    return frozenset(names - AMBIGUOUS_NAMES)


def _module_file(src: Path, module: str) -> Path | None:
    base = src.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every module an AST imports (at any depth), as absolute dotted names."""
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base_parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            # `from pkg import name` may import the submodule pkg.name
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def reachable_modules(src: Path, entry: str = "index") -> dict[str, ast.Module]:
    """Modules of `src` reachable by imports from `entry`, minus the local-only package."""
    seen: dict[str, ast.Module] = {}
    todo = [entry]
    while todo:
        module = todo.pop()
        if module in seen or module == LOCAL_PACKAGE or module.startswith(LOCAL_PACKAGE + "."):
            continue
        path = _module_file(src, module)
        if path is None:
            continue  # not ours: stdlib or a dependency
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        seen[module] = tree
        for imported in _imported_modules(tree, module, path.name == "__init__.py"):
            parts = imported.split(".")
            todo.extend(".".join(parts[: i + 1]) for i in range(len(parts)))  # parents run too
    return seen


def _identifiers(nodes: Iterable[ast.AST]) -> set[str]:
    """Names, attribute names and string constants used in `nodes` (and below them)."""
    found: set[str] = set()
    for top in nodes:
        for node in ast.walk(top):
            if isinstance(node, ast.Name):
                found.add(node.id)
            elif isinstance(node, ast.Attribute):
                found.add(node.attr)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.add(node.value)  # getattr(client, "put_object_tagging") style calls
    return found


def _split_module(tree: ast.Module) -> tuple[list[ast.AST], list[ast.FunctionDef | ast.AsyncFunctionDef]]:
    """(code that runs at import: module and class bodies minus defs, every def in the module)."""
    top: list[ast.AST] = []
    defs: list[ast.FunctionDef | ast.AsyncFunctionDef] = []

    def visit(body: list[ast.stmt]) -> None:
        for stmt in body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                defs.append(stmt)
                top.extend(stmt.decorator_list)
                top.extend(stmt.args.defaults)
            elif isinstance(stmt, ast.ClassDef):
                top.extend(stmt.bases)
                top.extend(stmt.decorator_list)
                visit(stmt.body)
            else:
                top.append(stmt)

    visit(tree.body)
    return top, defs


def live_identifiers(modules: Mapping[str, ast.Module], entry_points: Iterable[str] = ("main_handler",)) -> set[str]:
    """Identifiers used by code that can run: import-time code, the entry points, and every
    function whose name live code mentions (a name-based call graph, so it over-approximates,
    which can only make the policy demand more, never less)."""
    live = set(entry_points)
    pending: list[ast.FunctionDef | ast.AsyncFunctionDef] = []
    for tree in modules.values():
        top, defs = _split_module(tree)
        live |= _identifiers(top)
        pending.extend(defs)
    changed = True
    while changed:
        changed = False
        for fn in list(pending):
            dunder = fn.name.startswith("__") and fn.name.endswith("__")  # called implicitly
            if fn.name in live or dunder:
                pending.remove(fn)
                live |= _identifiers(fn.body)
                changed = True
    return live


def actions_needed_by(src: Path, sdk_names: frozenset[str]) -> tuple[set[str], dict[str, frozenset[str]], set[str]]:
    """(actions, {sdk method: actions} for the methods the function can call, unmapped methods)."""
    modules = reachable_modules(src)
    if "index" not in modules:
        raise AssertionError(f"{src / 'index.py'} is missing: it is the handler serverless.yml names")
    called = live_identifiers(modules) & sdk_names
    unmapped = called - SDK_METHOD_ACTIONS.keys()
    per_method = {name: SDK_METHOD_ACTIONS[name] for name in sorted(called - unmapped)}
    actions: set[str] = set().union(*per_method.values()) if per_method else set()
    return actions, per_method, unmapped


# --- tests: the policy file --------------------------------------------------------------------


def test_policy_is_cam_2_0_and_scoped_to_the_bucket_objects() -> None:
    env = example_env()
    policy = render(load_policy(), env)
    assert policy_problems(policy, env["COS_BUCKET"], env["COS_REGION"], env["COS_APPID"]) == []


def test_policy_placeholders_are_all_documented_in_env_example() -> None:
    names = set(PLACEHOLDER_RE.findall(POLICY.read_text(encoding="utf-8")))
    assert names, "the policy should be a template filled from .env"
    assert names <= example_env().keys(), f"undocumented placeholders: {sorted(names - example_env().keys())}"


def test_example_appid_is_the_one_the_bucket_name_ends_with() -> None:
    env = example_env()
    assert env["COS_BUCKET"].rsplit("-", 1)[-1] == env["COS_APPID"]


def test_policy_grants_exactly_the_required_actions() -> None:
    granted = granted_actions(load_policy())
    assert granted == REQUIRED_ACTIONS, (
        f"missing: {sorted(REQUIRED_ACTIONS - granted)}; not needed: {sorted(granted - REQUIRED_ACTIONS)}"
    )


def _valid_policy() -> dict[str, Any]:
    return render(load_policy(), example_env())


def _set(path: tuple[Any, ...], value: Any) -> Any:
    def mutate(policy: dict[str, Any]) -> None:
        target: Any = policy
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value

    return mutate


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_set(("version",), "1.0"), "version must be '2.0'"),
        (_set(("statement",), []), "non-empty list"),
        (_set(("statement", 0, "effect"), "deny"), "effect must be 'allow'"),
        (_set(("statement", 0, "action", 0), "name/cos:*"), "not one named API"),
        (_set(("statement", 0, "action", 0), "*"), "not one named API"),
        (_set(("statement", 0, "action", 0), "name/cos:Get*"), "not one named API"),
        (_set(("statement", 0, "resource", 0), "*"), "is not 'qcs::cos:"),
        (
            _set(("statement", 0, "resource", 0), "qcs::cos:ap-guangzhou:uid/1250000000:otherbucket-1250000000/*"),
            "is not 'qcs::cos:",
        ),
        (
            _set(
                ("statement", 0, "resource", 0), "qcs::cos:ap-guangzhou:uid/1250000000:examplebucket-1250000000/*/../*"
            ),
            "is not 'qcs::cos:",
        ),
        (_set(("statement", 1, "resource", 0), "qcs::ci:ap-guangzhou:uid/1250000000:bucket/*"), "is not 'qcs::ci:"),
        (_set(("statement", 0, "action", 0), "name/ci:CreateDetectLabelJob"), "mixes services"),
        (_set(("statement", 0, "condition"), {"ip_equal": {"qcs:ip": "10.0.0.0/8"}}), "unexpected keys"),
    ],
)
def test_policy_checker_rejects_broad_or_malformed_policies(mutate: Any, expected: str) -> None:
    env = example_env()
    policy = copy.deepcopy(_valid_policy())
    mutate(policy)
    problems = policy_problems(policy, env["COS_BUCKET"], env["COS_REGION"], env["COS_APPID"])
    assert any(expected in problem for problem in problems), problems


# --- tests: the actions follow from the code -------------------------------------------------


def test_every_mapped_method_is_a_real_sdk_method() -> None:
    """A typo in SDK_METHOD_ACTIONS would otherwise silently map nothing."""
    assert SDK_METHOD_ACTIONS.keys() <= sdk_method_names()


def test_required_actions_are_what_the_function_calls() -> None:
    actions, per_method, unmapped = actions_needed_by(SRC, sdk_method_names())
    assert not unmapped, f"the function calls SDK methods with no CAM mapping: {sorted(unmapped)}"
    assert per_method, "found no SDK call reachable from index.main_handler"
    missing, unused = actions - REQUIRED_ACTIONS, REQUIRED_ACTIONS - actions
    assert not missing, f"the code needs {sorted(missing)} (via {per_method}) but REQUIRED_ACTIONS lacks it"
    assert not unused, f"REQUIRED_ACTIONS grants {sorted(unused)}, which nothing the function calls needs"


# The scanner itself, on small packages written for the purpose.


def _write_package(root: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


SCAN_NAMES = frozenset({"head_object", "copy_object", "list_objects", "ci_image_detect_label", "get_bucket_acl"})


def test_scan_follows_imports_and_string_dispatch(tmp_path: Path) -> None:
    src = _write_package(
        tmp_path,
        {
            "index.py": "from cos_autotag.handler import main_handler\n",
            "cos_autotag/__init__.py": "",
            "cos_autotag/handler.py": (
                "from .adapter import Gateway\ndef main_handler(event, context):\n    Gateway().label()\n"
            ),
            "cos_autotag/adapter.py": (
                "class Gateway:\n"
                "    def _call(self, name, **kw):\n"
                "        return getattr(self.client, name)(**kw)\n"
                "    def label(self):\n"
                "        self.client.head_object(Bucket='b', Key='k')\n"
                "        self._call('copy_object', Bucket='b')\n"
                "    def list_everything(self):\n"  # never referenced: tooling only
                "        return self._call('list_objects', Bucket='b')\n"
            ),
        },
    )
    actions, per_method, unmapped = actions_needed_by(src, SCAN_NAMES)
    assert set(per_method) == {"head_object", "copy_object"}
    assert actions == {"cos:HeadObject", "cos:GetObject", "cos:PutObject"}
    assert unmapped == set()


def test_scan_sees_a_wrapper_once_live_code_calls_it(tmp_path: Path) -> None:
    src = _write_package(
        tmp_path,
        {
            "index.py": "from cos_autotag import handler\nmain_handler = handler.main_handler\n",
            "cos_autotag/__init__.py": "",
            "cos_autotag/handler.py": (
                "from . import adapter\ndef main_handler(event, context):\n    adapter.Gateway().list_everything()\n"
            ),
            "cos_autotag/adapter.py": (
                "class Gateway:\n    def list_everything(self):\n        return self.client.list_objects(Bucket='b')\n"
            ),
        },
    )
    actions, _, _ = actions_needed_by(src, SCAN_NAMES)
    assert actions == {"cos:GetBucket"}


def test_scan_ignores_the_local_package_and_unreached_modules(tmp_path: Path) -> None:
    src = _write_package(
        tmp_path,
        {
            "index.py": "from cos_autotag.handler import main_handler\n",
            "cos_autotag/__init__.py": "",
            "cos_autotag/handler.py": (
                "from .local import emulator\n"
                "def main_handler(event, context):\n"
                "    client.ci_image_detect_label(Bucket='b', Key='k')\n"
            ),
            "cos_autotag_tools/__init__.py": "",
            "cos_autotag_tools/emulator.py": "client.copy_object(Bucket='b')\n",
            "cos_autotag/cli.py": "client.list_objects(Bucket='b')\n",  # never imported by index
        },
    )
    actions, per_method, _ = actions_needed_by(src, SCAN_NAMES)
    assert set(per_method) == {"ci_image_detect_label"}
    assert actions == {"ci:CreateDetectLabelJob", "cos:GetObject"}


def test_scan_reports_sdk_calls_with_no_mapping(tmp_path: Path) -> None:
    src = _write_package(
        tmp_path,
        {
            "index.py": "def main_handler(event, context):\n    client.get_bucket_acl(Bucket='b')\n",
        },
    )
    _, _, unmapped = actions_needed_by(src, SCAN_NAMES)
    assert unmapped == {"get_bucket_acl"}


def test_scan_fails_without_the_handler_module(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match=r"index\.py"):
        actions_needed_by(_write_package(tmp_path, {"other.py": ""}), SCAN_NAMES)
