"""What the uploaded code imports: scanned from its source, never imported.

`import_problems` lists imports the deployed function could not satisfy (the tooling package,
or a third-party package the layer does not carry); `reachable_modules` follows imports from
the handler's module, so the policy scanner (`cam.py`) sees only code that can run on SCF.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

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
