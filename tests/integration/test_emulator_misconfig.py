"""Misconfiguration knobs, each seen through the unmodified SDK: a bucket not bound to Cloud
Infinite, a role missing a permission, a client configured for the wrong region."""

from __future__ import annotations

import pytest
from qcloud_cos import CosS3Client

from cos_autotag_tools.emulator import Emulator, Faults, ci
from tests.support.constants import APPID, BUCKET, REGION
from tests.support.emulator import error_of, seed_object
from tests.support.images import image_bytes
from tests.support.sdk import make_client

pytestmark = pytest.mark.integration


def test_detect_label_on_a_bucket_not_bound_to_ci(emulator: Emulator, cos_client: CosS3Client) -> None:
    other = f"unbound-{APPID}"
    emulator.create_bucket(other, REGION, ci_bound=False)
    assert not emulator.ci_bound(other) and emulator.ci_bound(BUCKET)
    for bucket in (BUCKET, other):
        cos_client.put_object(Bucket=bucket, Key="a.jpg", Body=image_bytes(seed=1))

    err = error_of(lambda: cos_client.ci_image_detect_label(Bucket=other, Key="a.jpg"))
    assert err.get_status_code() == 403
    assert err.get_error_code() == ci.UNBOUND_CODE_403
    assert "Cloud Infinite" in err.get_error_msg() and "AI content recognition" in err.get_error_msg()
    # The bound bucket next to it labels; object reads on the unbound one still work.
    assert cos_client.ci_image_detect_label(Bucket=BUCKET, Key="a.jpg")["Labels"]
    cos_client.get_object_tagging(Bucket=other, Key="a.jpg")

    emulator.set_ci_bound(other)  # binding it fixes it, at run time
    assert cos_client.ci_image_detect_label(Bucket=other, Key="a.jpg")["Labels"]
    emulator.set_ci_bound(other, False)
    assert error_of(lambda: cos_client.ci_image_detect_label(Bucket=other, Key="a.jpg")).get_error_code() == (
        ci.UNBOUND_CODE_403
    )


def test_set_ci_bound_needs_an_existing_bucket(emulator: Emulator) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        emulator.set_ci_bound(f"nope-{APPID}", False)


def test_denied_operations_answer_access_denied(emulator: Emulator, cos_client: CosS3Client) -> None:
    cos_client.put_object(Bucket=BUCKET, Key="a.jpg", Body=image_bytes(seed=2))
    emulator.set_faults(denied_ops={"PutObjectTagging", "DetectLabel"})
    tagging = {"TagSet": {"Tag": [{"Key": "k", "Value": "v"}]}}
    for call in (
        lambda: cos_client.put_object_tagging(Bucket=BUCKET, Key="a.jpg", Tagging=tagging),
        lambda: cos_client.ci_image_detect_label(Bucket=BUCKET, Key="a.jpg"),
    ):
        err = error_of(call)
        assert (err.get_status_code(), err.get_error_code()) == (403, "AccessDenied")
    assert emulator.get_object_state(BUCKET, "a.jpg").tags == {}  # nothing was written
    # Operations the role does have still work.
    assert not cos_client.get_object_tagging(Bucket=BUCKET, Key="a.jpg").get("TagSet")
    assert emulator.count("PutObjectTagging", status=403) == 1
    assert emulator.count("DetectLabel", status=403) == 1
    emulator.set_faults(denied_ops=frozenset())
    cos_client.put_object_tagging(Bucket=BUCKET, Key="a.jpg", Tagging=tagging)
    assert emulator.get_object_state(BUCKET, "a.jpg").tags == {"k": "v"}


def test_a_bad_signature_is_answered_before_the_permission() -> None:
    """The permission is checked on the caller COS has authenticated: wrong keys stay a key error."""
    with Emulator(credentials={"AKIDright": "right"}, appid=APPID, faults=Faults(denied_ops={"HeadObject"})) as emu:
        emu.create_bucket(BUCKET, REGION)
        seed_object(emu, BUCKET, "a.jpg", b"x")
        wrong = make_client(emu, secret_id="AKIDright", secret_key="wrong")
        assert error_of(lambda: wrong.get_object_tagging(Bucket=BUCKET, Key="a.jpg")).get_status_code() == 403
        assert emu.requests[-1].error_code == "SignatureDoesNotMatch"
        right = make_client(emu, secret_id="AKIDright", secret_key="right")
        assert error_of(lambda: right.head_object(Bucket=BUCKET, Key="a.jpg")).get_status_code() == 403
        assert emu.requests[-1].error_code == "AccessDenied"


def test_denied_ops_takes_known_operation_names(emulator: Emulator) -> None:
    with pytest.raises(ValueError, match="CAM actions"):
        Faults(denied_ops={"cos:PutObjectTagging"})
    with pytest.raises(ValueError, match="unknown operations"):
        emulator.set_faults(denied_ops={"PutObjectTags"})
    with pytest.raises(ValueError, match="not one string"):
        Faults(denied_ops="PutObjectTagging")  # type: ignore[arg-type]


def test_wrong_region_is_no_such_bucket(emulator: Emulator) -> None:
    """A client configured for another region sends that region's host: COS answers 404 NoSuchBucket."""
    seed_object(emulator, BUCKET, "a.jpg", image_bytes(seed=3))
    wrong = make_client(emulator, region="ap-shanghai")
    for call in (
        lambda: wrong.get_object_tagging(Bucket=BUCKET, Key="a.jpg"),
        lambda: wrong.ci_image_detect_label(Bucket=BUCKET, Key="a.jpg"),
        lambda: wrong.list_objects(Bucket=BUCKET),
    ):
        err = error_of(call)
        assert (err.get_status_code(), err.get_error_code()) == (404, "NoSuchBucket")
        assert "ap-shanghai" in err.get_error_msg()
    assert error_of(lambda: wrong.head_object(Bucket=BUCKET, Key="a.jpg")).get_status_code() == 404
    assert emulator.requests[-1].error_code == "NoSuchBucket"
    right = make_client(emulator, region=REGION)
    assert right.head_object(Bucket=BUCKET, Key="a.jpg")["Content-Length"] == str(len(image_bytes(seed=3)))
