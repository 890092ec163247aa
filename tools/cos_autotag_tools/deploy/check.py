"""`cos-autotag check`: a preflight of one deployment, before (or after) `scf deploy`.

    cos-autotag check --env-file .env [--key KEY] [--write-probe] [--with-detect]

It reads the deploy's `.env` (or the same variables from the environment): COS_BUCKET,
COS_REGION, COS_APPID, COS_TRIGGER_PREFIX, the AUTOTAG_* settings, and credentials from
TENCENTCLOUD_SECRETID / TENCENTCLOUD_SECRETKEY / TENCENTCLOUD_SESSIONTOKEN (the names SCF
gives the function: export a role's temporary keys there to check the role itself) or else
TENCENT_SECRET_ID / TENCENT_SECRET_KEY / TENCENT_TOKEN (the deploy CLI's). With
AUTOTAG_COS_ENDPOINT it talks to the local emulator instead of COS.

Each line is `ok`, `failed` (with the fix) or `not checked` (with why). The exit code is 1 if
anything failed. Nothing is printed that holds a secret: every line passes a redaction of the
keys, the token and the Redis password. It costs a listing and a few object reads; it writes
only with --write-probe (tags mode: the probe object's tag set, written back unchanged;
metadata mode: the probe object copied onto itself with its metadata, encryption and ACL, as the
function writes). Whether the bucket is bound to Cloud Infinite is asked of its free status
queries: the bucket's CIStatus (436/74933) and DescribeAIBuckets (436/50196, CAM action
ci:DescribeAiProcessBucket); detect-label itself (billed) is called only with --with-detect.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import unquote, urlsplit

from cos_autotag import carry, cos_facts
from cos_autotag.errors import CosCallError, SettingsError
from cos_autotag.settings import Settings, unknown_variables
from cos_autotag_tools.command import EXIT_FAILED, EXIT_OK, UsageError, command
from cos_autotag_tools.gateway import ToolGateway

OK, FAILED, NOT_CHECKED = "ok", "failed", "not checked"

CREDENTIAL_SOURCES = (
    ("TENCENTCLOUD_SECRETID", "TENCENTCLOUD_SECRETKEY", "TENCENTCLOUD_SESSIONTOKEN"),
    ("TENCENT_SECRET_ID", "TENCENT_SECRET_KEY", "TENCENT_TOKEN"),
)
KEY_ERRORS = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidSecretId", "ExpiredToken", "InvalidToken"}
)
IMAGE_REJECTIONS = cos_facts.NOT_AN_IMAGE_CODES | {
    cos_facts.CI_CODE_IMAGE_TOO_LARGE,
    cos_facts.CI_CODE_RESOLUTION_EXCEEDED,
    cos_facts.CI_CODE_IMAGE_TOO_SMALL,
}
CI_FIX = (
    "bind the bucket to Cloud Infinite and enable AI content recognition: Cloud Infinite console > "
    "Bucket Management > Bind Bucket, then the bucket > AI Content Recognition > enable "
    "(docs/deploy.md, step 4)"
)


@dataclass
class Line:
    status: str
    name: str
    detail: str
    fix: str = ""


@dataclass
class Report:
    lines: list[Line] = field(default_factory=list)

    def add(self, status: str, name: str, detail: str, fix: str = "") -> Line:
        line = Line(status, name, detail, fix)
        self.lines.append(line)
        return line

    @property
    def failed(self) -> bool:
        return any(line.status == FAILED for line in self.lines)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (optionally `export KEY=...`, values optionally quoted); # comments."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        name, sep, value = line.partition("=")
        if not sep or not name.strip().replace("_", "").isalnum():
            raise ValueError(f"{path}:{number}: not NAME=value")  # the line itself may hold a secret
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name.strip()] = value
    return values


def _credentials(env: Mapping[str, str]) -> tuple[dict[str, str], str] | None:
    """The TENCENTCLOUD_* mapping ToolGateway reads, and which names it came from."""
    for id_name, key_name, token_name in CREDENTIAL_SOURCES:
        if env.get(id_name) and env.get(key_name):
            creds = {"TENCENTCLOUD_SECRETID": env[id_name], "TENCENTCLOUD_SECRETKEY": env[key_name]}
            if env.get(token_name):
                creds["TENCENTCLOUD_SESSIONTOKEN"] = env[token_name]
            return creds, f"{id_name} / {key_name}" + (f" / {token_name}" if env.get(token_name) else "")
    return None


def _secrets(env: Mapping[str, str]) -> list[str]:
    found = [env.get(name, "") for source in CREDENTIAL_SOURCES for name in source[1:]]
    redis_url = env.get("AUTOTAG_IDEMPOTENCY_REDIS_URL", "")
    found.append(redis_url)
    try:
        password = urlsplit(redis_url).password
    except ValueError:
        password = None
    if password:
        found += [password, unquote(password)]
    return sorted({s for s in found if len(s) >= 4}, key=len, reverse=True)


def _redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


class _Probe:
    """One deployment's remote checks, each a call through the function's own adapter."""

    def __init__(self, report: Report, gateway: ToolGateway, bucket: str, region: str, policy_hint: str) -> None:
        self.report, self.gateway, self.bucket, self.region = report, gateway, bucket, region
        self.policy_hint = policy_hint
        self.credentials_known = False
        self.bucket_known = False

    def call(self, name: str, action: str, fn: Callable[[], Any]) -> tuple[bool, Any]:
        """Run `fn`; on failure add the line that names the cause. (succeeded, result or error)."""
        try:
            result = fn()
        except CosCallError as error:
            self._settle_credentials_and_bucket(error)
            if _is_permission(error):
                self.report.add(
                    FAILED,
                    name,
                    f"{error.code} ({error.status}): the credentials may not {action}",
                    f"attach the role policy from `{self.policy_hint}` (it grants "
                    f"{_action_of(action)}); to test the role itself, export its temporary keys "
                    "as TENCENTCLOUD_SECRETID / TENCENTCLOUD_SECRETKEY / TENCENTCLOUD_SESSIONTOKEN",
                )
            return False, error
        self._settle_credentials_and_bucket(None)
        return True, result

    def _settle_credentials_and_bucket(self, error: CosCallError | None) -> None:
        """The first answer from COS settles the credentials and bucket lines."""
        if not self.credentials_known:
            if error is None or (not _is_key_problem(error) and error.code not in ("NetworkError", "NoSuchBucket")):
                self.credentials_known = True
                self.report.add(OK, "credentials", "COS accepted the signature")
            elif _is_key_problem(error):
                self.credentials_known = True
                self.report.add(
                    FAILED,
                    "credentials",
                    f"{error.code} ({error.status}): COS refused the keys: {error.message}",
                    "set the SecretId and SecretKey of an API key (CAM console > Access Key > API Keys) in "
                    "TENCENT_SECRET_ID / TENCENT_SECRET_KEY, or temporary keys in TENCENTCLOUD_SECRETID / "
                    "TENCENTCLOUD_SECRETKEY / TENCENTCLOUD_SESSIONTOKEN (all three, unexpired)",
                )
            elif error.code == "NetworkError":
                self.credentials_known = True
                self.report.add(
                    FAILED,
                    "credentials",
                    f"COS could not be reached: {error.message}",
                    "check the network, COS_REGION, and AUTOTAG_COS_ENDPOINT if set (only for the emulator)",
                )
        if not self.bucket_known and error is not None and error.code == "NoSuchBucket":
            self.bucket_known = True
            if not self.credentials_known:
                self.report.add(NOT_CHECKED, "credentials", "COS answered NoSuchBucket before checking them")
            self.report.add(
                FAILED,
                "bucket",
                f"NoSuchBucket: there is no bucket {self.bucket} in {self.region}",
                "set COS_BUCKET to <name>-<appid> exactly as the COS console's bucket list shows it, and "
                "COS_REGION to the region that list shows for it (the function and its trigger must be "
                "deployed in the bucket's region)",
            )
        elif not self.bucket_known and error is None:
            self.bucket_known = True
            self.report.add(OK, "bucket", f"{self.bucket} exists in {self.region}")


# COS also answers AccessDenied for a missing, expired or mismatched token or signature: the
# message tells those from a missing permission.
_KEY_WORDS = ("token", "expire", "signature", "secretid", "access key")


def _is_key_problem(error: CosCallError) -> bool:
    if error.code in KEY_ERRORS:
        return True
    return error.code == "AccessDenied" and any(word in error.message.lower() for word in _KEY_WORDS)


def _is_permission(error: CosCallError) -> bool:
    """403 AccessDenied: a HEAD's 403 has no body, so its code is unknown; any other 403 code
    (a key error, Cloud Infinite not enabled) says something else."""
    if _is_key_problem(error):
        return False
    return error.code == "AccessDenied" or (error.status == 403 and error.code in ("", "Unknown", "NoSuchResource"))


def _explained(error: CosCallError) -> bool:
    """Already a line of its own: the keys, the bucket, the network or a permission."""
    return _is_key_problem(error) or error.code in ("NoSuchBucket", "NetworkError") or _is_permission(error)


def _action_of(what: str) -> str:
    return {
        "list the bucket": "nothing: the function never lists; pass --key instead",
        "read the object's tags": "cos:GetObjectTagging",
        "write the object's tags": "cos:PutObjectTagging",
        "read the object's headers": "cos:HeadObject",
        "read the object": "cos:GetObject",
        "read the object's ACL": "cos:GetObjectACL",
        "copy the object onto itself": "cos:PutObjectCopy on the object and cos:GetObject on it as the source",
        "call detect-label": "ci:CreateDetectLabelJob",
    }.get(what, what)


def run_checks(env: Mapping[str, str], key: str | None, write_probe: bool, with_detect: bool) -> Report:
    report = Report()

    # --- settings ------------------------------------------------------------------------------
    settings: Settings | None
    try:
        settings = Settings.from_env(env)
        report.add(OK, "settings", f"mode {settings.mode}, scenes {','.join(settings.scenes)}")
    except SettingsError as error:
        settings = None
        report.add(FAILED, "settings", str(error), f"fix {error.var} in .env (see the README's settings table)")
    for name, closest in unknown_variables(env):  # the tooling's own names are registered
        hint = f"did you mean {closest}?" if closest else "no setting has a similar name"
        report.add(FAILED, "settings", f"{name} is not a setting the function reads", f"rename or remove it: {hint}")

    bucket, region = env.get("COS_BUCKET", "").strip(), env.get("COS_REGION", "").strip()
    appid, prefix = env.get("COS_APPID", "").strip(), env.get("COS_TRIGGER_PREFIX", "").strip()
    match = cos_facts.BUCKET_RE.match(bucket)
    if not match:
        report.add(FAILED, "deployment", f"COS_BUCKET {bucket!r} is not <name>-<appid>", "set COS_BUCKET in .env")
    if not cos_facts.REGION_RE.match(region):
        report.add(
            FAILED, "deployment", f"COS_REGION {region!r} is not a region such as ap-guangzhou", "set COS_REGION"
        )
    if match and appid and appid != match.group("appid"):
        report.add(FAILED, "deployment", f"COS_APPID {appid} is not the bucket's ({match.group('appid')})", "fix it")
    if settings is not None and settings.buckets and bucket not in settings.buckets:
        report.add(
            FAILED, "settings", f"AUTOTAG_BUCKETS does not include {bucket}: the function would refuse its events", ""
        )
    if not match or not cos_facts.REGION_RE.match(region):
        report.add(NOT_CHECKED, "COS", "no bucket and region to check against")
        return report

    # --- remote checks, through the function's own adapter --------------------------------------
    creds = _credentials(env)
    if creds is None:
        report.add(
            FAILED,
            "credentials",
            "none set",
            "set TENCENT_SECRET_ID / TENCENT_SECRET_KEY (an API key) or TENCENTCLOUD_SECRETID / "
            "TENCENTCLOUD_SECRETKEY / TENCENTCLOUD_SESSIONTOKEN (a role's temporary keys)",
        )
        report.add(NOT_CHECKED, "COS", "no credentials")
        return report
    creds_env, source = creds
    if settings is None:
        endpoint_only = {"AUTOTAG_COS_ENDPOINT": env.get("AUTOTAG_COS_ENDPOINT", "")}
        try:
            settings = Settings.from_env(endpoint_only)
        except SettingsError:
            report.add(NOT_CHECKED, "COS", "AUTOTAG_COS_ENDPOINT is not valid: fix the settings first")
            return report
    mode = settings.mode
    policy_hint = f"cos-autotag policy --mode {mode} --bucket {bucket} --region {region} --appid {match.group('appid')}"
    if prefix:
        policy_hint += f" --prefix {prefix}"
    gateway = ToolGateway(settings, creds_env)
    probe = _Probe(report, gateway, bucket, region, policy_hint)
    where = f"the emulator at {env.get('AUTOTAG_COS_ENDPOINT')}" if settings.cos_endpoint else "COS"
    report.add(OK, "target", f"{where}, credentials from {source}")

    # The probe object: --key, or the first object a one-page listing under the prefix shows.
    if key is None:
        listed_ok, listed = probe.call(
            "probe object",
            "list the bucket",
            lambda: gateway.list_objects(bucket, region, prefix=prefix, max_keys=10),
        )
        if listed_ok:
            contents = listed.get("Contents") or []
            contents = [contents] if isinstance(contents, Mapping) else contents
            keys = [str(item.get("Key", "")) for item in contents if not str(item.get("Key", "")).endswith("/")]
            if keys:
                key = keys[0]
                report.add(OK, "probe object", f"{key} (the first object under {prefix or 'the bucket root'!r})")
            else:
                report.add(
                    NOT_CHECKED,
                    "probe object",
                    f"no object under {prefix or 'the bucket root'!r}",
                    "upload a photo there, or pass --key KEY",
                )
        elif not probe.credentials_known or not probe.bucket_known:
            _not_checked_rest(report, "COS refused the first call (see above)")
            return report
    if key is None:
        _not_checked_rest(report, "no probe object")
        return report

    # The mode's read, then the shared ranged read.
    read_name = "tag read" if mode == "tags" else "header read"
    if mode == "tags":
        read_ok, tags = probe.call(read_name, "read the object's tags", lambda: gateway.get_tags(bucket, region, key))
    else:
        read_ok, tags = probe.call(read_name, "read the object's headers", lambda: gateway.head(bucket, region, key))
    _add_plain_failure(report, probe, read_name, read_ok, tags, key)
    if not probe.bucket_known or not probe.credentials_known:
        _not_checked_rest(report, "COS refused the first call (see above)")
        return report
    if read_ok:
        detail = f"{key}: {len(tags)} tag(s)" if mode == "tags" else f"{key}: {len(tags)} header(s)"
        report.add(OK, read_name, detail)
    body_ok, body = probe.call(
        "object read", "read the object", lambda: gateway.read_first_bytes(bucket, region, key, 16)
    )
    _add_plain_failure(report, probe, "object read", body_ok, body, key)
    if body_ok:
        report.add(OK, "object read", f"a ranged read of {key}")

    # The write.
    if mode == "metadata" and not write_probe:
        report.add(
            NOT_CHECKED,
            "metadata write",
            "writes nothing unless asked",
            f"pass --write-probe to copy {key} onto itself with its own metadata, encryption and ACL, as the "
            "function writes (cos:GetObjectACL, cos:PutObjectCopy, cos:GetObject)",
        )
    elif mode == "metadata":
        _metadata_write_probe(report, probe, gateway, bucket, region, key, tags if read_ok else None)
    elif not write_probe:
        report.add(
            NOT_CHECKED,
            "tag write",
            "writes nothing unless asked",
            f"pass --write-probe to write {key}'s tag set back unchanged (a user changing its tags in that "
            "instant would lose the change)",
        )
    elif read_ok:
        wrote, result = probe.call(
            "tag write", "write the object's tags", lambda: gateway.put_tags(bucket, region, key, tags)
        )
        _add_plain_failure(report, probe, "tag write", wrote, result, key)
        if wrote:
            report.add(OK, "tag write", f"{key}: its {len(tags)} tag(s) written back unchanged")
    else:
        report.add(NOT_CHECKED, "tag write", "the tag read failed, so there is no tag set to write back")

    # Cloud Infinite: first the free status queries, then (only if asked) one paid call.
    if not with_detect:
        binding = ci_binding_status(gateway, bucket, region)
        status = ai_recognition_status(_describe_ai_bucket(gateway, bucket, region), bucket)
        if binding in ("off", "unbinding"):
            report.add(
                FAILED, "Cloud Infinite", f"the bucket is not bound to Cloud Infinite (CIStatus {binding})", CI_FIX
            )
        elif status is True:
            report.add(
                OK,
                "Cloud Infinite",
                f"{bucket} is bound (CIStatus {binding or 'not asked'}) and AI content recognition is enabled "
                "(DescribeAIBuckets)",
            )
        elif status is False:
            report.add(FAILED, "Cloud Infinite", f"AI content recognition is not enabled for {bucket}", CI_FIX)
        else:
            report.add(
                NOT_CHECKED,
                "Cloud Infinite",
                "whether the bucket is bound to Cloud Infinite with AI content recognition enabled "
                "could not be checked without paying (the free status query was refused or is not served here)",
                "pass --with-detect for one detect-label call on the probe object (billed, about USD 0.0015)",
            )
        return report
    scenes = settings.scenes
    detected, answer = probe.call(
        "Cloud Infinite", "call detect-label", lambda: gateway.detect_labels(bucket, region, key, scenes)
    )
    if detected:
        report.add(OK, "Cloud Infinite", f"detect-label answered for {key}")
    elif isinstance(answer, CosCallError) and not _explained(answer):
        if answer.code in IMAGE_REJECTIONS:
            report.add(
                NOT_CHECKED,
                "Cloud Infinite",
                f"{answer.code}: {key} is not an image detect-label takes",
                "pass --key of a JPEG or PNG under 3 MB",
            )
        elif answer.code in cos_facts.THROTTLE_CODES or answer.retryable:
            report.add(NOT_CHECKED, "Cloud Infinite", f"{answer.code}: busy; try again in a minute")
        else:
            # Any other refusal: the bucket is not bound, recognition is off, or CI is not
            # authorised; Tencent does not document one code for it.
            report.add(FAILED, "Cloud Infinite", f"{answer.code} ({answer.status}): {answer.message}", CI_FIX)
    return report


def ci_binding_status(gateway: ToolGateway, bucket: str, region: str) -> str | None:
    """The bucket's CIStatus (`GET /` on `<bucket>.ci.<region>.myqcloud.com`, 436/74933):
    "on", "off" or "unbinding"; None when it cannot be asked or the answer is not that JSON.
    The SDK has no method for it: a signed request through the SDK's own transport."""
    from qcloud_cos.cos_auth import CosS3Auth

    client = gateway.client(region)
    conf = client.get_conf()
    try:
        url = conf.uri(bucket=bucket, path="/", endpoint=conf._endpoint_ci)
        answer = client.send_request(
            method="GET",
            url=url,
            bucket=None,  # the Host is the bucket's ci. host, not its COS host
            auth=CosS3Auth(conf, "/"),
            headers={"Host": f"{bucket}.ci.{region}.{cos_facts.COS_DOMAIN}"},
            ci_request=True,
        )
        status = answer.json().get("CIStatus")
    except Exception as error:  # refused, unreachable, or not JSON: cannot tell
        if type(error).__module__.startswith(("requests", "urllib3", "json", "qcloud_cos", "builtins")):
            return None
        raise
    return status if status in ("on", "off", "unbinding") else None


def _describe_ai_bucket(gateway: ToolGateway, bucket: str, region: str) -> Any:
    """Cloud Infinite's free AI status query (DescribeAIBuckets: GET /ai_bucket, 436/50196), or
    None when it cannot be asked: it needs the CAM action ci:DescribeAiProcessBucket, which the
    function's role does not have."""
    from qcloud_cos.cos_exception import CosClientError, CosServiceError

    try:
        return gateway.client(region).ci_get_ai_bucket(Regions=region, BucketNames=bucket)
    except (CosServiceError, CosClientError, OSError, ValueError):
        return None
    except Exception as error:  # requests' errors and anything the SDK's parser raises
        if type(error).__module__.startswith(("requests", "urllib3", "xml", "qcloud_cos")):
            return None
        raise


def ai_recognition_status(answer: Any, bucket: str) -> bool | None:
    """True: `bucket` is in the answer's AiBucketList; False: the answer says it lists no bucket
    (TotalCount 0); None: the answer cannot tell (missing, another shape)."""
    if not isinstance(answer, Mapping):
        return None
    listed = answer.get("AiBucketList")
    entries = [listed] if isinstance(listed, Mapping) else listed if isinstance(listed, list) else []
    if any(isinstance(entry, Mapping) and entry.get("Name") == bucket for entry in entries):
        return True
    if str(answer.get("TotalCount", "")).strip() == "0" and not entries:
        return False
    return None


def carried_headers(head: Mapping[str, str], acl: Mapping[str, Any]) -> dict[str, str]:
    """What a copy in place must send to keep what the object had (PUT Object - Copy, 436/10881):
    its user metadata, its encryption and its ACL as x-cos-grant-* headers, as the function's own
    copy sends them (`cos_autotag.carry`; `carry.CannotCarry` when it cannot keep them). The SDK
    sends the keys of `Metadata=` verbatim, which is how the grant headers it has no keyword for go out."""
    lowered = {name.lower(): value for name, value in head.items()}
    user = {name: value for name, value in lowered.items() if name.startswith(cos_facts.USER_META_PREFIX)}
    kept = carry.keep(lowered, user, lambda: acl)
    return {**kept.metadata, **kept.headers}


def _metadata_write_probe(
    report: Report, probe: _Probe, gateway: ToolGateway, bucket: str, region: str, key: str, head: Any
) -> None:
    """Copy the probe object onto itself as metadata mode does, carrying its metadata, encryption
    and ACL: proves cos:GetObjectACL and the copy's actions (cos:PutObjectCopy on the object,
    cos:GetObject on it as the source) with one real copy that changes nothing."""
    if not isinstance(head, Mapping):
        report.add(NOT_CHECKED, "metadata write", "the header read failed, so there is nothing to carry")
        return
    acl_ok, acl = probe.call(
        "ACL read",
        "read the object's ACL",
        lambda: gateway.call("GetObjectACL", region, "get_object_acl", Bucket=bucket, Key=key),
    )
    _add_plain_failure(report, probe, "ACL read", acl_ok, acl, key)
    if not acl_ok:
        report.add(NOT_CHECKED, "metadata write", "without the object's ACL a copy would drop it; not copied")
        return
    report.add(OK, "ACL read", f"{key}: its ACL, to carry on the copy")
    lowered = {name.lower(): value for name, value in head.items()}
    content_type = lowered.get("content-type", "application/octet-stream")
    try:
        carried = carried_headers(head, acl)
    except carry.CannotCarry as error:
        report.add(NOT_CHECKED, "metadata write", f"{key}: {error.problem}; not copied", error.fix)
        return
    wrote, result = probe.call(
        "metadata write",
        "copy the object onto itself",
        lambda: gateway.call(
            "CopyObject",
            region,
            "copy_object",
            Bucket=bucket,
            Key=key,
            CopySource={"Bucket": bucket, "Key": key, "Region": region},
            CopyStatus="Replaced",
            ContentType=content_type,
            Metadata=carried,
        ),
    )
    _add_plain_failure(report, probe, "metadata write", wrote, result, key)
    if wrote:
        report.add(OK, "metadata write", f"{key} copied onto itself with its metadata, encryption and ACL")


def _add_plain_failure(report: Report, probe: _Probe, name: str, ok: bool, result: Any, key: str) -> None:
    """A failure `_Probe.call` did not already explain (not keys, bucket or permission)."""
    if ok or not isinstance(result, CosCallError):
        return
    error = result
    if _explained(error):
        return
    if error.not_found:
        report.add(NOT_CHECKED, name, f"{key} is gone ({error.code})", "pass --key of an existing object")
        return
    report.add(FAILED, name, f"{error.code} ({error.status}): {error.message}", "see the message")


def _not_checked_rest(report: Report, why: str) -> None:
    for name in ("tag read", "tag write", "Cloud Infinite"):
        report.add(NOT_CHECKED, name, why)


def format_report(report: Report, secrets: list[str]) -> str:
    out = []
    for line in report.lines:
        out.append(f"{line.status:<12} {line.name}: {line.detail}")
        if line.fix:
            out.append(f"{'':<12}   {'fix' if line.status == FAILED else 'to check'}: {line.fix}")
    verdict = "FAILED: fix the lines marked failed" if report.failed else "no failure found"
    out.append(verdict)
    return _redact("\n".join(out), secrets) + "\n"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cos-autotag check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--env-file", type=Path, help="the deploy's .env (its values override the environment's)")
    parser.add_argument("--key", help="probe this object instead of the first one a listing shows")
    parser.add_argument(
        "--write-probe", action="store_true", help="write the probe object's tag set back unchanged (tags mode)"
    )
    parser.add_argument("--with-detect", action="store_true", help="one detect-label call on the probe object (billed)")
    return parser


def _check(args: argparse.Namespace, env: Mapping[str, str], out: TextIO | None = None) -> int:
    merged = dict(env)
    if args.env_file is not None:
        try:
            merged.update(read_env_file(args.env_file))
        except (OSError, ValueError) as error:
            raise UsageError(f"cannot read {args.env_file}: {error}") from error
    report = run_checks(merged, args.key, args.write_probe, args.with_detect)
    (sys.stdout if out is None else out).write(format_report(report, _secrets(merged)))
    return EXIT_FAILED if report.failed else EXIT_OK


run_check = command(_parser, _check)
