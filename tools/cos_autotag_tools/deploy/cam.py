"""The execution role's CAM policy, derived from what the function's code calls.

`SDK_METHOD_ACTIONS` maps each CosS3Client method to the CAM actions it needs; the scanner
follows the deployed code from `index.main_handler` (source only, nothing imported) and
collects the SDK methods live code can call. `role_policy` renders the least-privilege policy
for one deployment, and `trust_policy` the role's trust relationship with SCF.

Where each action name comes from (Tencent Cloud documentation):
- COS object actions `cos:HeadObject`, `cos:GetObject`, `cos:PutObject`, `cos:GetObjectTagging`,
  `cos:PutObjectTagging`, and the resource form `qcs::cos:<region>:uid/<appid>:<bucket>/<path>`:
  CAM's list of COS APIs (tencentcloud.com/document/product/598/57092) and COSCLI's
  object-tagging page (tencentcloud.com/document/product/436/74109).
- `PUT Object - Copy` "is equivalent to requesting GET Object once in the source bucket and
  PUT Object once in the destination bucket" (tencentcloud.com/document/api/436/10881): the
  metadata write-back (a copy of the object onto itself) needs cos:PutObjectCopy on the object and
  cos:GetObject on it as the source (PUT Object - Copy, 436/10881), and cos:GetObjectACL to carry
  its ACL.
- detect-label: "When using with a sub-account, you need to add ci:CreateDetectLabelJob in the
  action of the authorization policy" (tencentcloud.com/document/product/1045/73048). Cloud
  Infinite's resource form is `qcs::ci:<region>:uid/<appid>:bucket/<bucket>/<path>`, where the
  path may end in `*` for a prefix (tencentcloud.com/document/product/1045/72914).
- The SDK sends detect-label as a signed GET on the object's own COS URL
  (`GET /<key>?ci-process=detect-label`), so COS also authorizes it as GetObject: inferred, not
  stated by Tencent; GetObject is needed for the ranged read anyway.
- A large photo is labeled through `detect-url` (a signed URL of a thumbnail): that request is
  `GET /?ci-process=detect-label&detect-url=...`, naming the bucket's root rather than an
  object, so a prefix-scoped policy also grants CreateDetectLabelJob on the root path
  (inferred from the resource form; `cos-autotag check --with-detect` tries it for real).
- The trust relationship: the role's carrier is the service `scf.qcloud.com` (docs 583/40142).
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cos_autotag import cos_facts

from .imports import reachable_modules

MODES = ("tags", "metadata")

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

# What each mode's role needs: what `cos-autotag policy` grants. tests/unit/test_cam_policy.py
# checks that this equals what the scanner finds on that mode's code path.
MODE_ACTIONS: dict[str, frozenset[str]] = {
    "tags": frozenset({"cos:GetObjectTagging", "cos:PutObjectTagging", "cos:GetObject", "ci:CreateDetectLabelJob"}),
    "metadata": frozenset(
        {"cos:HeadObject", "cos:PutObjectCopy", "cos:GetObject", "cos:GetObjectACL", "ci:CreateDetectLabelJob"}
    ),
}
# The adapter methods (CosGateway's stable API) that only one write-back mode calls. Scanning
# one mode treats the other modes' methods as dead code; everything else (the ranged read, the
# thumbnail URL, detect-label) is shared.
MODE_ONLY_CALLS: dict[str, frozenset[str]] = {
    "tags": frozenset({"get_tags", "put_tags"}),
    "metadata": frozenset({"head", "get_acl", "copy_in_place"}),
}

# What each action is for, for the policy's reader (README, docs/deploy.md, `policy` on stderr).
ACTION_PURPOSE: dict[str, str] = {
    "cos:GetObjectTagging": "read the tag set for the merge and the marker (tags mode)",
    "cos:PutObjectTagging": "write the labels as tags (tags mode)",
    "cos:HeadObject": "read the object's headers and marker (metadata mode)",
    "cos:GetObject": "a ranged read of the first bytes when the type is unknown; the copy's source; "
    "what a signed detect-url fetches",
    "cos:PutObjectCopy": "the copy of the object onto itself (metadata mode; PUT Object - Copy, 436/10881)",
    "cos:GetObjectACL": "read the object's own ACL, to carry it on the copy (metadata mode)",
    "ci:CreateDetectLabelJob": "detect-label itself (Cloud Infinite)",
}

ACTION_RE = re.compile(r"^name/(?P<service>cos|ci):(?P<api>[A-Z][A-Za-z]+)$")
TRUSTED_SERVICE = "scf.qcloud.com"


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


# --- the policies ------------------------------------------------------------------------------


def resources(service: str, bucket: str, region: str, appid: str, prefix: str = "") -> list[str]:
    """The resource forms one service's statement grants on: the prefix's objects, and for
    Cloud Infinite with a prefix also the bucket root that a detect-url request names."""
    if service == "cos":
        return [f"qcs::cos:{region}:uid/{appid}:{bucket}/{prefix}*"]
    objects = f"qcs::ci:{region}:uid/{appid}:bucket/{bucket}/{prefix}*"
    return [objects, f"qcs::ci:{region}:uid/{appid}:bucket/{bucket}/"] if prefix else [objects]


def role_policy(actions: Iterable[str], bucket: str, region: str, appid: str, prefix: str = "") -> dict[str, Any]:
    """A CAM 2.0 policy granting `actions` (``cos:X`` / ``ci:Y``), one statement per service."""
    by_service: dict[str, list[str]] = {}
    for action in sorted(actions):
        by_service.setdefault(action.split(":", 1)[0], []).append("name/" + action)
    return {
        "version": "2.0",
        "statement": [
            {"effect": "allow", "action": names, "resource": resources(service, bucket, region, appid, prefix)}
            for service, names in sorted(by_service.items(), reverse=True)  # cos first, then ci
        ],
    }


def trust_policy(account_uin: str | None = None) -> dict[str, Any]:
    """The role's trust relationship: SCF may assume it and hand its keys to the function.
    `account_uin` also lets that account (its CAM users with sts:AssumeRole) assume it, which the
    deploy guide's check of the role's own keys needs (tccli sts AssumeRole)."""
    principal: dict[str, list[str]] = {"service": [TRUSTED_SERVICE]}
    if account_uin is not None:
        if not account_uin.isdigit():
            raise ValueError(f"--trust-account {account_uin!r} is not an account ID (digits, e.g. 100000000001)")
        principal["qcs"] = [f"qcs::cam::uin/{account_uin}:root"]
    return {
        "version": "2.0",
        "statement": [{"action": "name/sts:AssumeRole", "effect": "allow", "principal": principal}],
    }


def deployment_problems(bucket: str, region: str, appid: str, prefix: str) -> list[str]:
    """What is wrong with the values a policy is rendered for, each with what to pass instead."""
    problems: list[str] = []
    match = cos_facts.BUCKET_RE.match(bucket)
    if not match:
        problems.append(f"bucket {bucket!r} is not <name>-<appid>, e.g. examplebucket-1250000000")
    elif match.group("appid") != appid:
        problems.append(f"appid {appid!r} is not the one the bucket name ends with ({match.group('appid')})")
    if not cos_facts.REGION_RE.match(region):
        problems.append(f"region {region!r} is not a full region name such as ap-guangzhou")
    if not appid.isdigit():
        problems.append(f"appid {appid!r} must be digits")
    if prefix.startswith("/") or "*" in prefix:
        problems.append(f"prefix {prefix!r}: give the key prefix as the trigger has it, without a leading / or *")
    return problems


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
