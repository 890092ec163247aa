"""Server-side encryption and object ACLs with COS's copy semantics (PUT Object - Copy, 436/10881),
through the unmodified SDK: a copy keeps only what it sends."""

from __future__ import annotations

import pytest
import requests
from qcloud_cos import CosS3Client
from qcloud_cos.cos_exception import CosServiceError

from cos_autotag_tools.emulator import Emulator, auth
from tests.support.constants import BUCKET, REGION, SECRET_ID, SECRET_KEY

pytestmark = pytest.mark.integration

ALL_USERS_READ = {
    "Grantee": {"Type": "Group", "URI": "http://cam.qcloud.com/groups/global/AllUsers"},
    "Permission": "READ",
}
SOURCE = {"Bucket": BUCKET, "Key": "", "Region": REGION}


def copy_in_place(client: CosS3Client, key: str, **kwargs: object) -> dict[str, object]:
    return client.copy_object(  # type: ignore[no-any-return]
        Bucket=BUCKET, Key=key, CopySource={**SOURCE, "Key": key}, CopyStatus="Replaced",
        ContentType="image/jpeg", Metadata={"x-cos-meta-labels": "cat"}, **kwargs,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("put_kwargs", "expected"),
    [
        ({"ServerSideEncryption": "AES256"}, {"x-cos-server-side-encryption": "AES256"}),
        (
            {"ServerSideEncryption": "cos/kms", "SSEKMSKeyId": "kms-key-1"},
            {"x-cos-server-side-encryption": "cos/kms", "x-cos-server-side-encryption-cos-kms-key-id": "kms-key-1"},
        ),
    ],
    ids=["AES256", "KMS"],
)
def test_sse_is_kept_only_when_the_copy_sends_it(
    cos_client: CosS3Client, put_kwargs: dict[str, str], expected: dict[str, str]
) -> None:
    cos_client.put_object(Bucket=BUCKET, Key="s.jpg", Body=b"x", **put_kwargs)
    head = cos_client.head_object(Bucket=BUCKET, Key="s.jpg")
    assert {k: head.get(k) for k in expected} == expected
    assert {k: v for k, v in cos_client.get_object(Bucket=BUCKET, Key="s.jpg").items() if k in expected} == expected

    copy_in_place(cos_client, "s.jpg")  # sends no encryption header: the object is now unencrypted
    head = cos_client.head_object(Bucket=BUCKET, Key="s.jpg")
    assert "x-cos-server-side-encryption" not in head and "x-cos-server-side-encryption-cos-kms-key-id" not in head

    copy_in_place(cos_client, "s.jpg", **put_kwargs)  # carrying it keeps it
    head = cos_client.head_object(Bucket=BUCKET, Key="s.jpg")
    assert {k: head.get(k) for k in expected} == expected


def test_a_bad_sse_value_is_a_400(cos_client: CosS3Client) -> None:
    with pytest.raises(CosServiceError) as err:
        cos_client.put_object(Bucket=BUCKET, Key="s", Body=b"x", ServerSideEncryption="rot13")
    assert (err.value.get_status_code(), err.value.get_error_code()) == (400, "InvalidArgument")


def test_an_object_without_its_own_acl_answers_the_effective_one(emulator: Emulator, cos_client: CosS3Client) -> None:
    cos_client.put_object(Bucket=BUCKET, Key="a.jpg", Body=b"x")
    acl = cos_client.get_object_acl(Bucket=BUCKET, Key="a.jpg")
    assert acl["Owner"]["ID"] == emulator.owner_id
    assert acl["AccessControlList"]["Grant"] == [
        {"Grantee": {"Type": "CanonicalUser", "ID": emulator.owner_id, "DisplayName": emulator.owner_id},
         "Permission": "FULL_CONTROL"}
    ]  # fmt: skip
    assert acl["CannedACL"] == "private"
    emulator.set_bucket_acl(BUCKET, "public-read")
    acl = cos_client.get_object_acl(Bucket=BUCKET, Key="a.jpg")
    assert ALL_USERS_READ in acl["AccessControlList"]["Grant"] and acl["CannedACL"] == "public-read"


def test_a_copy_without_acl_headers_makes_a_private_photo_public_in_a_public_bucket(
    emulator: Emulator, cos_client: CosS3Client
) -> None:
    emulator.set_bucket_acl(BUCKET, "public-read")
    cos_client.put_object(Bucket=BUCKET, Key="p.jpg", Body=b"x", ACL="private")
    assert cos_client.get_object_acl(Bucket=BUCKET, Key="p.jpg")["CannedACL"] == "private"
    copy_in_place(cos_client, "p.jpg")
    assert cos_client.get_object_acl(Bucket=BUCKET, Key="p.jpg")["CannedACL"] == "public-read"
    # Carrying the ACL on the copy keeps the photo private.
    cos_client.put_object_acl(Bucket=BUCKET, Key="p.jpg", ACL="private")
    copy_in_place(cos_client, "p.jpg", ACL="private")
    assert cos_client.get_object_acl(Bucket=BUCKET, Key="p.jpg")["CannedACL"] == "private"


def test_grants_by_header_and_by_body(emulator: Emulator, cos_client: CosS3Client) -> None:
    reader = "qcs::cam::uin/100000000001:uin/100000000002"
    cos_client.put_object(Bucket=BUCKET, Key="g", Body=b"x", GrantRead=f'id="{reader}"')
    grants = cos_client.get_object_acl(Bucket=BUCKET, Key="g")["AccessControlList"]["Grant"]
    assert {"Grantee": {"Type": "CanonicalUser", "ID": reader, "DisplayName": reader}, "Permission": "READ"} in grants
    # Carried on a copy by the same headers.
    copy_in_place(cos_client, "g", GrantRead=f'id="{reader}"')
    assert len(cos_client.get_object_acl(Bucket=BUCKET, Key="g")["AccessControlList"]["Grant"]) == 2
    # PUT Object acl with the SDK's AccessControlPolicy body.
    policy = {
        "Owner": {"ID": emulator.owner_id},
        "AccessControlList": {
            "Grant": [
                {"Grantee": {"ID": emulator.owner_id, "Type": "CanonicalUser"}, "Permission": "FULL_CONTROL"},
                {"Grantee": {"URI": "http://cam.qcloud.com/groups/global/AllUsers", "Type": "Group"},
                 "Permission": "READ"},
            ]
        },
    }  # fmt: skip
    cos_client.put_object_acl(Bucket=BUCKET, Key="g", AccessControlPolicy=policy)
    assert cos_client.get_object_acl(Bucket=BUCKET, Key="g")["CannedACL"] == "public-read"


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"<AccessControlPolicy><AccessControlList>", {}),
        (b"<Other/>", {}),
        (b"<AccessControlPolicy><AccessControlList><Grant><Permission>ALL</Permission></Grant>"
         b"</AccessControlList></AccessControlPolicy>", {}),
        (b"", {"x-cos-acl": "world-writable"}),
        (b"", {"x-cos-grant-read": "everyone"}),
        (b"", {}),
    ],
    ids=["truncated", "wrong-root", "bad-permission", "bad-canned", "bad-grantee", "nothing"],
)  # fmt: skip
def test_a_bad_acl_request_is_a_4xx_and_changes_nothing(
    emulator: Emulator, cos_client: CosS3Client, body: bytes, headers: dict[str, str]
) -> None:
    cos_client.put_object(Bucket=BUCKET, Key="k", Body=b"x", ACL="private")
    host = f"{BUCKET}.cos.{REGION}.myqcloud.com"
    signed = {"host": host, **headers}
    value = auth.authorization(SECRET_ID, SECRET_KEY, "PUT", "/k", {"acl": ""}, signed)
    resp = requests.put(
        f"{emulator.endpoint}/k?acl", data=body, timeout=5, headers={"Host": host, **headers, "Authorization": value}
    )
    assert 400 <= resp.status_code < 500, resp.text
    assert b"<Code>" in resp.content and b"<RequestId>" in resp.content
    assert emulator.get_object_state(BUCKET, "k").acl is not None  # type: ignore[union-attr]


def test_a_copy_can_fail_with_200_and_an_error_body(emulator: Emulator, cos_client: CosS3Client) -> None:
    cos_client.put_object(Bucket=BUCKET, Key="c.jpg", Body=b"x", Metadata={"x-cos-meta-a": "1"})
    emulator.set_faults(copy_error_in_body="InternalError")
    with pytest.raises(CosServiceError) as err:
        copy_in_place(cos_client, "c.jpg")
    # The SDK raises on a 200 body without an ETag, and reads the error document's four fields.
    assert (err.value.get_status_code(), err.value.get_error_code()) == (200, "InternalError")
    assert err.value.get_request_id() not in ("", "Unknown")
    assert emulator.get_object_state(BUCKET, "c.jpg").metadata == {"x-cos-meta-a": "1"}  # type: ignore[union-attr]
    assert emulator.count("CopyObject", status=200) == 1
