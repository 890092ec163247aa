"""The execution role's policy: what `cos-autotag policy` prints, per mode, equals what that
mode's code path calls.

The scanner and the policy builder live in `cos_autotag_tools.deploy.cam`: every SDK method
the function can reach from `index.main_handler` is mapped to the CAM actions it needs
(`SDK_METHOD_ACTIONS`), one mode's own adapter calls are dead code when scanning the other
(`MODE_ONLY_CALLS`), and `MODE_ACTIONS` (what the command grants) must equal what the scan
finds: no missing action, no unused one. A second test runs the real handler in each mode
against the emulator and checks that every request it makes is granted.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from cos_autotag_tools.cli import main as cli_main
from cos_autotag_tools.deploy import cam
from cos_autotag_tools.deploy.cam import MODE_ACTIONS, role_policy
from tests.support import deploy_scan
from tests.support.deploy_scan import (
    SDK_METHOD_ACTIONS,
    ScanError,
    actions_needed_by,
    granted_actions,
    mode_actions,
    policy_problems,
    sdk_method_names,
)

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "cam-policy.json"
SRC = ROOT / "src"
BUCKET, REGION, APPID = "examplebucket-1250000000", "ap-guangzhou", "1250000000"
# cam-policy.json is this command's output, kept as a readable example.
EXAMPLE_ARGS = ["--mode", "tags", "--bucket", BUCKET, "--region", REGION, "--appid", APPID]


def run_policy(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli_main(["policy", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


# --- the command -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", cam.MODES)
def test_policy_command_prints_the_modes_least_privilege_policy(mode: str, capsys) -> None:
    code, out, err = run_policy(["--mode", mode, "--bucket", BUCKET, "--region", REGION, "--appid", APPID], capsys)
    assert code == 0, err
    policy = json.loads(out)  # stdout is only the JSON
    assert policy_problems(policy, BUCKET, REGION, APPID) == []
    assert granted_actions(policy) == MODE_ACTIONS[mode]
    assert ("cos:PutObjectCopy" in granted_actions(policy)) == (mode == "metadata")  # 436/10881, not cos:PutObject
    assert "ci:CreateDetectLabelJob" in granted_actions(policy)
    assert "cos:PutObject" not in MODE_ACTIONS["tags"]
    for action in MODE_ACTIONS[mode]:
        assert action in err, "stderr says what each action is for"


def test_policy_with_a_prefix_scopes_every_grant_to_it(capsys) -> None:
    args = [*EXAMPLE_ARGS, "--prefix", "uploads/"]
    code, out, _ = run_policy(args, capsys)
    assert code == 0
    policy = json.loads(out)
    assert policy_problems(policy, BUCKET, REGION, APPID, "uploads/") == []
    by_service = {s["action"][0].split(":")[0]: s["resource"] for s in policy["statement"]}
    assert by_service["name/cos"] == [f"qcs::cos:{REGION}:uid/{APPID}:{BUCKET}/uploads/*"]
    # detect-url (large photos) names the bucket root, not an object under the prefix.
    assert by_service["name/ci"] == [
        f"qcs::ci:{REGION}:uid/{APPID}:bucket/{BUCKET}/uploads/*",
        f"qcs::ci:{REGION}:uid/{APPID}:bucket/{BUCKET}/",
    ]
    # The unscoped policy would not pass as the scoped one.
    code, out, _ = run_policy(EXAMPLE_ARGS, capsys)
    assert policy_problems(json.loads(out), BUCKET, REGION, APPID, "uploads/")


def test_redis_adds_no_action_and_says_what_to_do(capsys) -> None:
    _, plain, _ = run_policy(EXAMPLE_ARGS, capsys)
    code, out, err = run_policy([*EXAMPLE_ARGS, "--redis"], capsys)
    assert code == 0 and out == plain
    assert "VPC" in err


def test_trust_policy_lets_scf_assume_the_role(capsys) -> None:
    code, out, _ = run_policy(["--trust"], capsys)
    assert code == 0
    trust = json.loads(out)
    assert trust["version"] == "2.0"
    (statement,) = trust["statement"]
    assert statement["action"] == "name/sts:AssumeRole" and statement["effect"] == "allow"
    assert statement["principal"] == {"service": ["scf.qcloud.com"]}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--mode", "tags", "--bucket", "photos", "--region", REGION, "--appid", APPID], "not <name>-<appid>"),
        (["--mode", "tags", "--bucket", BUCKET, "--region", REGION, "--appid", "1250000001"], "ends with"),
        (["--mode", "tags", "--bucket", BUCKET, "--region", "guangzhou", "--appid", APPID], "full region name"),
        ([*EXAMPLE_ARGS, "--prefix", "/uploads/"], "without a leading /"),
    ],
)
def test_policy_command_refuses_values_that_would_grant_the_wrong_thing(args, expected, capsys) -> None:
    code, out, err = run_policy(args, capsys)
    assert code == 2 and out == "" and expected in err


def test_policy_command_names_missing_arguments(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        cli_main(["policy", "--mode", "tags"])
    assert info.value.code == 2
    assert "--bucket, --region, --appid" in capsys.readouterr().err


def test_cam_policy_json_is_the_rendered_example(capsys) -> None:
    _, out, _ = run_policy(EXAMPLE_ARGS, capsys)
    assert json.loads(POLICY.read_text(encoding="utf-8")) == json.loads(out), (
        "cam-policy.json is stale: cos-autotag policy " + " ".join(EXAMPLE_ARGS) + " > cam-policy.json"
    )


# --- the policy checker rejects what it should ---------------------------------------------


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
        (_set(("statement", 0, "resource", 0), "*"), "is not one of ['qcs::cos:"),
        (
            _set(("statement", 0, "resource", 0), f"qcs::cos:{REGION}:uid/{APPID}:otherbucket-1250000000/*"),
            "is not one of ['qcs::cos:",
        ),
        (_set(("statement", 0, "resource", 0), f"qcs::cos:{REGION}:uid/{APPID}:{BUCKET}/*/../*"), "is not one of"),
        (_set(("statement", 1, "resource", 0), f"qcs::ci:{REGION}:uid/{APPID}:bucket/*"), "is not one of ['qcs::ci:"),
        (_set(("statement", 0, "action", 0), "name/ci:CreateDetectLabelJob"), "mixes services"),
        (_set(("statement", 0, "condition"), {"ip_equal": {"qcs:ip": "10.0.0.0/8"}}), "unexpected keys"),
    ],
)
def test_policy_checker_rejects_broad_or_malformed_policies(mutate: Any, expected: str) -> None:
    policy = copy.deepcopy(role_policy(MODE_ACTIONS["tags"], BUCKET, REGION, APPID))
    assert policy["statement"][0]["action"][0].startswith("name/cos:")
    mutate(policy)
    problems = policy_problems(policy, BUCKET, REGION, APPID)
    assert any(expected in problem for problem in problems), problems


# --- the actions follow from the code ------------------------------------------------------


def test_every_mapped_method_is_a_real_sdk_method() -> None:
    """A typo in SDK_METHOD_ACTIONS would otherwise silently map nothing."""
    assert SDK_METHOD_ACTIONS.keys() <= sdk_method_names()


@pytest.mark.parametrize("mode", cam.MODES)
def test_each_modes_policy_is_what_its_code_path_calls(mode: str) -> None:
    found = mode_actions(SRC, mode)
    granted = MODE_ACTIONS[mode]
    assert found == granted, f"{mode}: missing {sorted(found - granted)}; not needed {sorted(granted - found)}"


def test_the_modes_together_cover_everything_the_function_can_call() -> None:
    """The per-mode split may only remove a call from one mode, never lose it altogether."""
    everything, _, unmapped = actions_needed_by(SRC, sdk_method_names())
    assert not unmapped
    assert everything == MODE_ACTIONS["tags"] | MODE_ACTIONS["metadata"]


def test_mode_only_calls_are_real_adapter_methods() -> None:
    from cos_autotag.cos_adapter import CosGateway

    for methods in deploy_scan.MODE_ONLY_CALLS.values():
        for name in methods:
            assert callable(getattr(CosGateway, name, None)), f"CosGateway.{name} is gone: update MODE_ONLY_CALLS"


# The emulator's operation names -> the actions the request needs (detect-label: also the GET
# COS authorizes it as, and the signed GET of a detect-url).
OP_ACTIONS: dict[str, frozenset[str]] = {
    "HeadObject": frozenset({"cos:HeadObject"}),
    "GetObject": frozenset({"cos:GetObject"}),
    "GetObjectTagging": frozenset({"cos:GetObjectTagging"}),
    "PutObjectTagging": frozenset({"cos:PutObjectTagging"}),
    "CopyObject": frozenset({"cos:GetObject", "cos:PutObjectCopy"}),  # 436/10881
    "GetObjectACL": frozenset({"cos:GetObjectACL"}),  # GET Object acl
    "DetectLabel": frozenset({"ci:CreateDetectLabelJob", "cos:GetObject"}),
}


@pytest.mark.integration
@pytest.mark.parametrize("mode", cam.MODES)
def test_every_request_the_handler_makes_is_granted(mode: str) -> None:
    """The real handler, in `mode`, against the emulator: a JPEG by its name, and an object
    whose type is only known from its first bytes (the ranged read)."""
    pytest.importorskip("PIL")
    from tests.support.constants import BUCKET as EMU_BUCKET
    from tests.support.function_stack import running_stack
    from tests.support.images import jpeg
    from tests.support.scf import context

    with running_stack() as stack:
        since = time.time()
        app = stack.app(mode=mode)
        for seed, key, content_type in ((3, "a/photo.jpg", "image/jpeg"), (4, "a/upload", "application/octet-stream")):
            body = jpeg(seed)  # the deterministic engine labels it by its content
            rid = stack.put(key, body, content_type=content_type)
            summary = app.handle(stack.event(key, rid, content_type=content_type), context())
            assert summary["labeled"] == 1, summary
        ops = [r.op for r in stack.emulator.requests if r.timestamp >= since and r.op != "PutObject"]
    assert EMU_BUCKET
    unknown = set(ops) - OP_ACTIONS.keys()
    assert not unknown, f"the handler makes requests with no mapping here: {sorted(unknown)}"
    needed: set[str] = set().union(*(OP_ACTIONS[op] for op in ops))
    assert needed <= MODE_ACTIONS[mode], f"{mode}: not granted {sorted(needed - MODE_ACTIONS[mode])}"
    write = {"tags": "cos:PutObjectTagging", "metadata": "cos:PutObjectCopy"}[mode]
    assert write in needed and "GetObject" in ops, ops


# --- the scanner itself, on small packages written for the purpose --------------------------


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
    assert actions == {"cos:HeadObject", "cos:GetObject", "cos:PutObjectCopy"}
    assert unmapped == set()


def test_scan_of_one_mode_leaves_out_the_other_modes_calls(tmp_path: Path) -> None:
    src = _write_package(
        tmp_path,
        {
            "index.py": (
                "def main_handler(event, context):\n"
                "    if event: put_tags()\n"
                "    else: copy_in_place()\n"
                "def put_tags():\n    client.put_object_tagging(Bucket='b')\n"
                "def copy_in_place():\n    client.copy_object(Bucket='b')\n"
            ),
        },
    )
    names = frozenset({"put_object_tagging", "copy_object"})
    assert actions_needed_by(src, names, "tags")[0] == {"cos:PutObjectTagging"}
    assert actions_needed_by(src, names, "metadata")[0] == {"cos:GetObject", "cos:PutObjectCopy"}
    assert actions_needed_by(src, names)[0] == {"cos:PutObjectTagging", "cos:GetObject", "cos:PutObjectCopy"}


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
                "from cos_autotag_tools import emulator\n"
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
    with pytest.raises(ScanError, match=r"index\.py"):
        actions_needed_by(_write_package(tmp_path, {"other.py": ""}), SCAN_NAMES)


# Tencent's own names for what each mode does, from Tencent's pages (not from cam.py's tables):
# (what, CAM action, page).
TENCENT_ACTIONS = {
    "tags": [
        ("GET Object tagging", "cos:GetObjectTagging", "cloud.tencent.com/document/product/436/30580"),
        ("PUT Object tagging", "cos:PutObjectTagging", "cloud.tencent.com/document/product/436/30580"),
        ("GET Object (ranged read)", "cos:GetObject", "cloud.tencent.com/document/product/436/30580"),
        ("detect-label", "ci:CreateDetectLabelJob", "tencentcloud.com/document/product/1045/73048"),
    ],
    "metadata": [
        ("HEAD Object", "cos:HeadObject", "cloud.tencent.com/document/product/436/30580"),
        ("PUT Object - Copy, destination", "cos:PutObjectCopy", "cloud.tencent.com/document/api/436/10881"),
        ("PUT Object - Copy, source read", "cos:GetObject", "cloud.tencent.com/document/api/436/10881"),
        ("GET Object acl", "cos:GetObjectACL", "cloud.tencent.com/document/product/436/30580"),
        ("detect-label", "ci:CreateDetectLabelJob", "tencentcloud.com/document/product/1045/73048"),
    ],
}


@pytest.mark.parametrize("mode", sorted(TENCENT_ACTIONS))
def test_each_mode_grants_exactly_tencents_names(mode: str, capsys) -> None:
    code, out, _ = run_policy(["--mode", mode, "--bucket", BUCKET, "--region", REGION, "--appid", APPID], capsys)
    assert code == 0
    granted = granted_actions(json.loads(out))
    assert granted == {action for _, action, _ in TENCENT_ACTIONS[mode]}
    assert "cos:PutObject" not in granted and "cos:PutObjectACL" not in granted


def test_trust_can_add_the_users_own_account_for_the_assume_role_check(capsys) -> None:
    code, out, _ = run_policy(["--trust", "--trust-account", "100000000001"], capsys)
    assert code == 0
    principal = json.loads(out)["statement"][0]["principal"]
    assert principal == {"service": ["scf.qcloud.com"], "qcs": ["qcs::cam::uin/100000000001:root"]}
    with pytest.raises(SystemExit):
        run_policy(["--trust", "--trust-account", "me"], capsys)
    with pytest.raises(SystemExit):
        run_policy(["--trust-account", "100000000001"], capsys)
