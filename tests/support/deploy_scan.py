"""What the uploaded code imports and which SDK calls it can make, scanned from its source.

Test-only: `import_problems` lists imports the deployed function could not satisfy (the tooling
package, or a third-party package the layer does not carry); `reachable_modules` follows imports
from the handler's module; `actions_needed_by` / `mode_actions` collect the SDK methods live code
can call and map them to CAM actions, so tests/unit/test_cam_policy.py can hold
`cos_autotag_tools.deploy.cam.MODE_ACTIONS` (what `cos-autotag policy` grants) to the code.
"""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cos_autotag_tools.deploy.cam import resources

LOCAL_PACKAGE = "cos_autotag_tools"  # never deployed, never run under the execution role


def _requirement_name(spec: str) -> str:
    match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
    if not match:
        raise ValueError(f"cannot read a package name from {spec!r}")
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


def import_problems(
    src: Path, files: list[str], allowed_third_party: set[str], local_package: str = LOCAL_PACKAGE
) -> list[str]:
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
    """Modules of `src` reachable by imports from `entry`, minus the local-only package
    (which the upload never holds: importing it is `import_problems`' finding)."""
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
    # PUT Object - Copy (436/10881): "授权策略中 action 设置为 cos:PutObjectCopy" on the destination,
    # and read permission on the source (cos:GetObject).
    "copy_object": frozenset({"cos:GetObject", "cos:PutObjectCopy"}),
    "update_object_meta": frozenset({"cos:GetObject", "cos:PutObjectCopy"}),  # a copy onto itself
    "get_object_acl": frozenset({"cos:GetObjectACL"}),
    "put_object_acl": frozenset({"cos:PutObjectACL"}),
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


# The adapter methods (CosGateway's stable API) that only one write-back mode calls. Scanning
# one mode treats the other modes' methods as dead code; everything else (the ranged read, the
# thumbnail URL, detect-label) is shared.
MODE_ONLY_CALLS: dict[str, frozenset[str]] = {
    "tags": frozenset({"get_tags", "put_tags"}),
    "metadata": frozenset({"head", "get_acl", "copy_in_place"}),
}


ACTION_RE = re.compile(r"^name/(?P<service>cos|ci):(?P<api>[A-Z][A-Za-z]+)$")


class ScanError(ValueError):
    """The code to scan is not a deployable function."""


def sdk_method_names() -> frozenset[str]:
    """Public methods of the real CosS3Client."""
    from qcloud_cos import CosS3Client

    names = {name for name, _ in inspect.getmembers(CosS3Client, inspect.isfunction) if not name.startswith("_")}
    return frozenset(names - AMBIGUOUS_NAMES)


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


def live_identifiers(
    modules: Mapping[str, ast.Module],
    entry_points: Iterable[str] = ("main_handler",),
    dead: frozenset[str] = frozenset(),
) -> set[str]:
    """Identifiers used by code that can run: import-time code, the entry points, and every
    function whose name live code mentions (a name-based call graph, so it over-approximates,
    which can only make the policy demand more, never less). Functions named in `dead` never
    run: the other write-back mode's calls, when scanning one mode."""
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
            if fn.name in dead:
                continue
            if fn.name in live or dunder:
                pending.remove(fn)
                live |= _identifiers(fn.body)
                changed = True
    return live


def actions_needed_by(
    src: Path, sdk_names: frozenset[str], mode: str | None = None
) -> tuple[set[str], dict[str, frozenset[str]], set[str]]:
    """(actions, {sdk method: actions} for the methods the function can call, unmapped methods).

    `mode`: only that write-back mode's path (the other modes' own adapter calls are dead);
    None: every mode.
    """
    modules = reachable_modules(src)
    if "index" not in modules:
        raise ScanError(f"{src / 'index.py'} is missing: it is the handler serverless.yml names")
    dead: frozenset[str] = frozenset()
    if mode is not None:
        dead = frozenset().union(*(methods for other, methods in MODE_ONLY_CALLS.items() if other != mode))
    called = live_identifiers(modules, dead=dead) & sdk_names
    unmapped = called - SDK_METHOD_ACTIONS.keys()
    per_method = {name: SDK_METHOD_ACTIONS[name] for name in sorted(called - unmapped)}
    actions: set[str] = set().union(*per_method.values()) if per_method else set()
    return actions, per_method, unmapped


def mode_actions(src: Path, mode: str) -> set[str]:
    """The CAM actions `mode`'s code path needs; fails on an SDK call with no mapping."""
    actions, per_method, unmapped = actions_needed_by(src, sdk_method_names(), mode)
    if unmapped:
        raise ScanError(f"the function calls SDK methods with no CAM mapping: {sorted(unmapped)}")
    if not per_method:
        raise ScanError("found no SDK call reachable from index.main_handler")
    return actions


def policy_problems(policy: Mapping[str, Any], bucket: str, region: str, appid: str, prefix: str = "") -> list[str]:
    """What is wrong with a rendered policy: CAM 2.0 shape, one named API per action, and
    every grant scoped to the bucket (and prefix)."""
    problems: list[str] = []
    if set(policy) != {"version", "statement"}:
        problems.append(f"top-level keys must be version and statement, got {sorted(policy)}")
    if policy.get("version") != "2.0":
        problems.append(f"version must be '2.0', got {policy.get('version')!r}")
    statements = policy.get("statement")
    if not isinstance(statements, list) or not statements:
        return [*problems, "statement must be a non-empty list"]
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
        actions, granted = statement.get("action"), statement.get("resource")
        if not isinstance(actions, list) or not actions or not all(isinstance(a, str) for a in actions):
            problems.append(f"{where}.action must be a non-empty list of strings")
            continue
        if not isinstance(granted, list) or not granted or not all(isinstance(r, str) for r in granted):
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
        expected = resources(next(iter(services)), bucket, region, appid, prefix) if len(services) == 1 else []
        for resource in granted:
            if resource not in expected:
                problems.append(f"{where}: resource {resource!r} is not one of {expected}")
    return problems


def granted_actions(policy: Mapping[str, Any]) -> set[str]:
    return {
        action.removeprefix("name/")
        for statement in policy.get("statement", [])
        for action in statement.get("action", [])
    }
