"""The execution role's CAM policy, derived from what the function's code calls.

`MODE_ACTIONS` is what each write-back mode's role needs; a test scans the deployed code from
`index.main_handler` (tests/support/deploy_scan.py) and holds the table to the SDK calls live
code can make. `role_policy` renders the least-privilege policy for one deployment, and
`trust_policy` the role's trust relationship with SCF.

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

from collections.abc import Iterable
from typing import Any

from cos_autotag import cos_facts

MODES = ("tags", "metadata")


# What each mode's role needs: what `cos-autotag policy` grants. tests/unit/test_cam_policy.py
# checks that this equals what the scanner finds on that mode's code path.
MODE_ACTIONS: dict[str, frozenset[str]] = {
    "tags": frozenset({"cos:GetObjectTagging", "cos:PutObjectTagging", "cos:GetObject", "ci:CreateDetectLabelJob"}),
    "metadata": frozenset(
        {"cos:HeadObject", "cos:PutObjectCopy", "cos:GetObject", "cos:GetObjectACL", "ci:CreateDetectLabelJob"}
    ),
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

TRUSTED_SERVICE = "scf.qcloud.com"


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
