"""`cos-autotag check` against the emulator: a good deployment passes; each first-deploy
mistake (wrong keys, no such bucket, wrong region, a role missing a permission, a bucket not
bound to Cloud Infinite, a bad setting) is a `failed` line that names its fix, and no line
holds a secret."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from cos_autotag.cos_adapter import CosGateway
from cos_autotag.settings import Settings
from cos_autotag_tools.deploy.check import (
    CI_FIX,
    _describe_ai_bucket,
    ai_recognition_status,
    ci_binding_status,
    read_env_file,
    run_check,
)
from cos_autotag_tools.emulator import Emulator, Faults, ci
from tests.support.emulator import seed_object, started_emulator
from tests.support.images import image_bytes

pytestmark = pytest.mark.integration

APPID = "1250000000"
BUCKET = f"photos-{APPID}"
REGION = "ap-guangzhou"
SECRET_ID = "AKIDcheck00000001"
SECRET_KEY = "check-secret-key-0123456789abcdef"
REDIS_PASSWORD = "redis-pa55word-xyz"


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with started_emulator(BUCKET, credentials={SECRET_ID: SECRET_KEY}) as emu:
        seed_object(
            emu, BUCKET, "uploads/cat.jpg", image_bytes(seed=5), content_type="image/jpeg", tags={"owner": "alice"}
        )
        yield emu


def env_for(emu: Emulator, **changes: str) -> dict[str, str]:
    env = {
        "AUTOTAG_COS_ENDPOINT": f"http://127.0.0.1:{emu.port}",
        "COS_BUCKET": BUCKET,
        "COS_REGION": REGION,
        "COS_APPID": APPID,
        "COS_TRIGGER_PREFIX": "uploads/",
        "TENCENT_SECRET_ID": SECRET_ID,
        "TENCENT_SECRET_KEY": SECRET_KEY,
    }
    env.update(changes)
    return {k: v for k, v in env.items() if v != "-"}


def check(env: dict[str, str], *args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = run_check(list(args), env=env, out=out)
    text = out.getvalue()
    for secret in (SECRET_KEY, REDIS_PASSWORD, "wrong-secret-key-000"):
        assert secret not in text, "a secret was printed"
    return code, text


def line(text: str, status: str, name: str) -> str:
    """The line `status name: ...` and its fix line, or fail the test."""
    lines = text.splitlines()
    for i, current in enumerate(lines):
        if current.startswith(f"{status:<12} {name}:"):
            follows = lines[i + 1].lstrip() if i + 1 < len(lines) else ""
            fix = follows if follows.startswith(("fix:", "to check:")) else ""
            return current + "\n" + fix
    raise AssertionError(f"no `{status} {name}` line in:\n{text}")


def test_a_good_deployment_passes_and_the_write_probe_changes_nothing(emulator: Emulator) -> None:
    code, text = check(env_for(emulator), "--write-probe", "--with-detect")
    assert code == 0, text
    for name in ("settings", "credentials", "bucket", "probe object", "tag read", "object read", "tag write"):
        line(text, "ok", name)
    assert "uploads/cat.jpg" in line(text, "ok", "probe object")
    assert "fix:" not in text and "to check:" not in text
    line(text, "ok", "Cloud Infinite")
    assert emulator.get_object_state(BUCKET, "uploads/cat.jpg").tags == {"owner": "alice"}
    assert emulator.count("DetectLabel") == 1


def test_without_flags_it_writes_nothing_and_pays_nothing(emulator: Emulator) -> None:
    code, text = check(env_for(emulator))
    assert code == 0, text
    # The free status queries (CIStatus, DescribeAIBuckets) answer it without a detect-label call.
    assert "DescribeAIBuckets" in line(text, "ok", "Cloud Infinite")
    assert "--write-probe" in line(text, "not checked", "tag write")
    assert emulator.count("DetectLabel") == 0 and emulator.count("PutObjectTagging") == 0


@pytest.mark.parametrize("which", ["secret key", "secret id"])
def test_wrong_keys_are_named_with_their_fix(emulator: Emulator, which: str) -> None:
    change = (
        {"TENCENT_SECRET_KEY": "wrong-secret-key-000"} if which == "secret key" else {"TENCENT_SECRET_ID": "AKIDnobody"}
    )
    code, text = check(env_for(emulator, **change))
    assert code == 1
    failed = line(text, "failed", "credentials")
    assert ("SignatureDoesNotMatch" if which == "secret key" else "InvalidAccessKeyId") in failed
    assert "API Keys" in failed and "TENCENT_SECRET_KEY" in failed
    assert "ok           bucket" not in text


def test_a_missing_bucket_is_named_with_its_fix(emulator: Emulator) -> None:
    code, text = check(env_for(emulator, COS_BUCKET=f"nophotos-{APPID}"))
    assert code == 1
    failed = line(text, "failed", "bucket")
    assert "NoSuchBucket" in failed and f"nophotos-{APPID}" in failed and "COS_BUCKET" in failed


def test_the_wrong_region_is_named_with_its_fix(emulator: Emulator) -> None:
    code, text = check(env_for(emulator, COS_REGION="ap-shanghai"))
    assert code == 1
    failed = line(text, "failed", "bucket")
    assert "NoSuchBucket" in failed and "ap-shanghai" in failed and "COS_REGION" in failed
    line(text, "not checked", "credentials")


def test_a_bucket_not_bound_to_cloud_infinite_is_named_with_its_fix(emulator: Emulator) -> None:
    emulator.set_ci_bound(BUCKET, False)
    code, text = check(env_for(emulator), "--with-detect")
    assert code == 1
    failed = line(text, "failed", "Cloud Infinite")
    assert ci.UNBOUND_CODE_403 in failed and CI_FIX in failed
    # Without --with-detect the bucket's free CIStatus tells it, and nothing is paid.
    code, text = check(env_for(emulator))
    assert code == 1 and "CIStatus off" in line(text, "failed", "Cloud Infinite")
    assert emulator.count("DetectLabel") == 1


@pytest.mark.parametrize(
    ("mode", "denied", "flags", "name", "action"),
    [
        ("tags", "GetObjectTagging", (), "tag read", "cos:GetObjectTagging"),
        ("tags", "PutObjectTagging", ("--write-probe",), "tag write", "cos:PutObjectTagging"),
        ("tags", "GetObject", (), "object read", "cos:GetObject"),
        ("tags", "DetectLabel", ("--with-detect",), "Cloud Infinite", "ci:CreateDetectLabelJob"),
        ("metadata", "HeadObject", (), "header read", "cos:HeadObject"),
    ],
)
def test_a_missing_permission_is_named_with_the_policy_to_attach(
    emulator: Emulator, mode: str, denied: str, flags: tuple[str, ...], name: str, action: str
) -> None:
    emulator.set_faults(Faults(denied_ops=frozenset({denied})))
    code, text = check(env_for(emulator, AUTOTAG_MODE=mode), *flags)
    assert code == 1, text
    failed = line(text, "failed", name)
    assert "AccessDenied" in failed or "403" in failed
    assert action in failed
    assert (
        f"cos-autotag policy --mode {mode} --bucket {BUCKET} --region {REGION} --appid {APPID} --prefix uploads/"
        in failed
    )
    line(text, "ok", "credentials")  # the keys are fine: COS checked the signature first


def test_a_role_that_cannot_list_needs_a_key(emulator: Emulator) -> None:
    emulator.set_faults(Faults(denied_ops=frozenset({"ListObjects"})))
    code, text = check(env_for(emulator))
    assert code == 1 and "pass --key" in line(text, "failed", "probe object")
    code, text = check(env_for(emulator), "--key", "uploads/cat.jpg")
    assert code == 0, text


def test_an_empty_prefix_is_not_checked_rather_than_failed(emulator: Emulator) -> None:
    code, text = check(env_for(emulator, COS_TRIGGER_PREFIX="empty/"))
    assert code == 0, text
    assert "upload a photo" in line(text, "not checked", "probe object")


def test_bad_settings_name_the_variable_and_never_the_password(emulator: Emulator) -> None:
    env = env_for(
        emulator,
        AUTOTAG_MAX_LABELS="12",
        AUTOTAG_MODES="tags",
        AUTOTAG_IDEMPOTENCY_REDIS_URL=f"redis://:{REDIS_PASSWORD}@10.0.0.1:6379/0",
    )
    code, text = check(env)
    assert code == 1
    assert "AUTOTAG_MAX_LABELS='12'" in line(text, "failed", "settings")
    assert "did you mean AUTOTAG_MODE?" in text
    env["AUTOTAG_IDEMPOTENCY_REDIS_URL"] = f"http://:{REDIS_PASSWORD}@10.0.0.1:6379/0"
    env.pop("AUTOTAG_MAX_LABELS")
    code, text = check(env)
    assert code == 1 and "AUTOTAG_IDEMPOTENCY_REDIS_URL" in text  # check() asserts the password is absent


def test_no_credentials_say_where_they_go(emulator: Emulator) -> None:
    code, text = check(env_for(emulator, TENCENT_SECRET_ID="-", TENCENT_SECRET_KEY="-"))
    assert code == 1 and "TENCENTCLOUD_SECRETID" in line(text, "failed", "credentials")


def test_role_keys_take_precedence_over_the_deploy_keys(emulator: Emulator) -> None:
    env = env_for(emulator, TENCENT_SECRET_KEY="wrong-secret-key-000")
    env.update(TENCENTCLOUD_SECRETID=SECRET_ID, TENCENTCLOUD_SECRETKEY=SECRET_KEY)
    code, text = check(env)
    assert code == 0, text
    assert "TENCENTCLOUD_SECRETID" in line(text, "ok", "target")


def test_env_file_is_read_and_overrides_the_environment(emulator: Emulator, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        f"# the deploy's settings\nexport COS_BUCKET='{BUCKET}'\nCOS_REGION=\"{REGION}\"\n\nAUTOTAG_MODE=tags\n",
        encoding="utf-8",
    )
    assert read_env_file(env_file) == {"COS_BUCKET": BUCKET, "COS_REGION": REGION, "AUTOTAG_MODE": "tags"}
    code, text = check(env_for(emulator, COS_BUCKET="other-1250000000"), "--env-file", str(env_file))
    assert code == 0, text
    env_file.write_text(f"TENCENT_SECRET_KEY {SECRET_KEY}\n", encoding="utf-8")
    with pytest.raises(ValueError) as info:
        read_env_file(env_file)
    assert SECRET_KEY not in str(info.value)


def test_a_session_token_is_never_printed() -> None:
    token = "session-token-abcdefghijklmnop"
    with Emulator(credentials={SECRET_ID: SECRET_KEY}, appid=APPID, token=token) as emu:
        emu.create_bucket(BUCKET, REGION)
        seed_object(emu, BUCKET, "uploads/cat.jpg", image_bytes(seed=5), content_type="image/jpeg")
        env = env_for(emu, TENCENT_SECRET_ID="-", TENCENT_SECRET_KEY="-")
        env.update(TENCENTCLOUD_SECRETID=SECRET_ID, TENCENTCLOUD_SECRETKEY=SECRET_KEY, TENCENTCLOUD_SESSIONTOKEN=token)
        code, text = check(env, "--write-probe")
        assert code == 0, text
        assert "TENCENTCLOUD_SESSIONTOKEN" in line(text, "ok", "target") and token not in text
        env["TENCENTCLOUD_SESSIONTOKEN"] = "expired-" + token
        code, text = check(env)
        assert code == 1 and token not in text
        line(text, "failed", "credentials")


def test_status_queries_refused_means_not_checked_not_failed(emulator: Emulator) -> None:
    emulator.set_faults(denied_ops=frozenset({"DescribeAIBuckets", "GetCIStatus"}))
    code, text = check(env_for(emulator))
    assert code == 0, text
    assert "could not be checked without paying" in line(text, "not checked", "Cloud Infinite")
    assert emulator.count("DetectLabel") == 0


def test_a_bucket_being_unbound_fails_with_its_fix(emulator: Emulator) -> None:
    emulator.set_ci_status(BUCKET, "unbinding")
    code, text = check(env_for(emulator))
    assert code == 1 and CI_FIX in line(text, "failed", "Cloud Infinite")
    assert "unbinding" in text


@pytest.mark.parametrize("others", [0, 2])
def test_describe_ai_buckets_is_parsed_from_the_emulators_answer(emulator: Emulator, others: int) -> None:
    """One bound bucket comes back as a single AiBucketList dict, several as a list."""
    for i in range(others):
        emulator.create_bucket(f"photos{i}-{APPID}", REGION)
    gateway = CosGateway(Settings.from_env(env_for(emulator)), {"TENCENTCLOUD_SECRETID": SECRET_ID,
                         "TENCENTCLOUD_SECRETKEY": SECRET_KEY})  # fmt: skip
    answer = _describe_ai_bucket(gateway, BUCKET, REGION)
    listed = gateway.client(REGION).ci_get_ai_bucket(Regions=REGION)["AiBucketList"]
    assert isinstance(listed, dict) if others == 0 else len(listed) == others + 1
    assert ai_recognition_status(answer, BUCKET) is True
    assert ci_binding_status(gateway, BUCKET, REGION) == "on"
    emulator.set_ci_bound(BUCKET, False)
    assert ai_recognition_status(_describe_ai_bucket(gateway, BUCKET, REGION), BUCKET) is False
    assert ci_binding_status(gateway, BUCKET, REGION) == "off"


@pytest.mark.parametrize("public_bucket", [False, True])
def test_metadata_write_probe_copies_with_encryption_and_acl(emulator: Emulator, public_bucket: bool) -> None:
    from qcloud_cos import CosConfig, CosS3Client

    client = CosS3Client(CosConfig(**emulator.sdk_config(REGION)), retry=0)
    client.put_object(
        Bucket=BUCKET, Key="uploads/secret.jpg", Body=image_bytes(seed=6), ContentType="image/jpeg",
        ServerSideEncryption="cos/kms", SSEKMSKeyId="kms-1", ACL="private", Metadata={"x-cos-meta-owner": "alice"},
    )  # fmt: skip
    if public_bucket:
        emulator.set_bucket_acl(BUCKET, "public-read")
    code, text = check(env_for(emulator, AUTOTAG_MODE="metadata"), "--key", "uploads/secret.jpg", "--write-probe")
    assert code == 0, text
    line(text, "ok", "ACL read")
    line(text, "ok", "metadata write")
    assert emulator.count("CopyObject", status=200) == 1
    state = emulator.get_object_state(BUCKET, "uploads/secret.jpg")
    assert state is not None and state.metadata == {"x-cos-meta-owner": "alice"}
    assert state.sse == {
        "x-cos-server-side-encryption": "cos/kms",
        "x-cos-server-side-encryption-cos-kms-key-id": "kms-1",
    }
    assert client.get_object_acl(Bucket=BUCKET, Key="uploads/secret.jpg")["CannedACL"] == "private"


def test_metadata_write_probe_names_the_missing_permissions(emulator: Emulator) -> None:
    for denied, action in (("GetObjectACL", "cos:GetObjectACL"), ("CopyObject", "cos:PutObjectCopy")):
        emulator.set_faults(denied_ops=frozenset({denied}))
        code, text = check(env_for(emulator, AUTOTAG_MODE="metadata"), "--key", "uploads/cat.jpg", "--write-probe")
        assert code == 1 and action in text, text
    assert emulator.count("CopyObject", status=200) == 0
