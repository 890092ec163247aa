"""Object operations through the unmodified SDK over HTTP: PUT/GET/HEAD/DELETE, listing,
multipart, copy and the error shapes the SDK sees."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import requests
from qcloud_cos import CosS3Client
from qcloud_cos.cos_exception import CosServiceError

from cos_autotag import cos_facts
from cos_autotag_tools.emulator import Emulator
from tests.support.constants import BUCKET, REGION
from tests.support.sdk import make_client

pytestmark = pytest.mark.integration

ODD_KEYS = [
    "plain.jpg",
    "with space.jpg",
    "plus+sign.jpg",
    "percent%20literal.jpg",
    "中文/照片.jpg",
    "dir/sub/~tilde.png",
    " leading-space.jpg",
    "trailing-space.jpg ",
    "a&b=c?d#e.jpg",
    "dot./slash.jpg",
]


def service_error(call) -> CosServiceError:  # type: ignore[no-untyped-def]
    with pytest.raises(CosServiceError) as err:
        call()
    return err.value


@pytest.mark.parametrize("key", ODD_KEYS)
def test_put_get_head_delete_odd_keys(emulator: Emulator, cos_client: CosS3Client, key: str) -> None:
    body = f"body of {key}".encode()
    put = cos_client.put_object(Bucket=BUCKET, Key=key, Body=body)
    assert put["ETag"] == '"' + hashlib.md5(body).hexdigest() + '"'
    assert put["x-cos-request-id"]
    got = cos_client.get_object(Bucket=BUCKET, Key=key)
    assert got["Body"].get_raw_stream().read() == body
    assert int(cos_client.head_object(Bucket=BUCKET, Key=key)["Content-Length"]) == len(body)
    state = emulator.get_object_state(BUCKET, key)
    assert state is not None and state.body == body
    listed = cos_client.list_objects(Bucket=BUCKET)
    assert [c["Key"] for c in listed["Contents"]] == [key]
    cos_client.delete_object(Bucket=BUCKET, Key=key)
    assert emulator.get_object_state(BUCKET, key) is None


def test_put_stores_headers_metadata_storage_class_and_tagging(emulator: Emulator, cos_client: CosS3Client) -> None:
    # (the SDK's argument, the header HEAD answers it in, the value)
    stored = [
        ("ContentType", "Content-Type", "image/jpeg"),
        ("CacheControl", "Cache-Control", "max-age=60"),
        ("ContentDisposition", "Content-Disposition", "inline"),
        ("ContentEncoding", "Content-Encoding", "identity"),
        ("ContentLanguage", "Content-Language", "zh-CN"),
        ("Expires", "Expires", "Wed, 21 Oct 2037 07:28:00 GMT"),
        ("StorageClass", "x-cos-storage-class", "STANDARD_IA"),
    ]
    metadata = {"x-cos-meta-source": "camera", "x-cos-meta-labels": "cat,dog"}
    options = {argument: value for argument, _, value in stored}
    cos_client.put_object(
        Bucket=BUCKET, Key="k.jpg", Body=b"jpeg", Metadata=metadata, Tagging="team=media&stage=raw%20in", **options
    )
    head = cos_client.head_object(Bucket=BUCKET, Key="k.jpg")
    assert {header: head[header] for _, header, _ in stored} == {header: value for _, header, value in stored}
    assert head["x-cos-meta-source"] == "camera" and head["x-cos-meta-labels"] == "cat,dog"
    assert head["x-cos-tagging-count"] == "2"
    assert head["ETag"] and head["Last-Modified"]
    state = emulator.get_object_state(BUCKET, "k.jpg")
    assert state is not None and state.tags == {"team": "media", "stage": "raw in"}


def test_non_ascii_metadata_round_trips_as_utf8(cos_client: CosS3Client, emulator: Emulator) -> None:
    cos_client.put_object(Bucket=BUCKET, Key="m", Body=b"x", Metadata={"x-cos-meta-labels": "猫"})
    state = emulator.get_object_state(BUCKET, "m")
    assert state is not None and state.metadata == {"x-cos-meta-labels": "猫"}
    raw = cos_client.head_object(Bucket=BUCKET, Key="m")["x-cos-meta-labels"]
    assert raw.encode("latin-1").decode("utf-8") == "猫"  # sent back as raw UTF-8 bytes


def test_overwrite_replaces_tags_and_metadata(cos_client: CosS3Client, emulator: Emulator) -> None:
    cos_client.put_object(Bucket=BUCKET, Key="k", Body=b"1", Metadata={"x-cos-meta-a": "1"}, Tagging="t=1")
    cos_client.put_object(Bucket=BUCKET, Key="k", Body=b"2", ContentType="text/plain")
    state = emulator.get_object_state(BUCKET, "k")
    assert state is not None
    assert (state.body, state.metadata, state.tags, state.content_type) == (b"2", {}, {}, "text/plain")


def test_range_get(cos_client: CosS3Client) -> None:
    cos_client.put_object(Bucket=BUCKET, Key="r", Body=b"0123456789")
    assert cos_client.get_object(Bucket=BUCKET, Key="r", Range="bytes=2-4")["Body"].get_raw_stream().read() == b"234"
    tail = cos_client.get_object(Bucket=BUCKET, Key="r", Range="bytes=-3")
    assert tail["Body"].get_raw_stream().read() == b"789"
    assert tail["Content-Range"] == "bytes 7-9/10"
    assert cos_client.get_object(Bucket=BUCKET, Key="r", Range="bytes=8-")["Body"].get_raw_stream().read() == b"89"
    err = service_error(lambda: cos_client.get_object(Bucket=BUCKET, Key="r", Range="bytes=20-30"))
    assert (err.get_status_code(), err.get_error_code()) == (416, "InvalidRange")


def test_conditional_get(cos_client: CosS3Client) -> None:
    etag = cos_client.put_object(Bucket=BUCKET, Key="c", Body=b"x")["ETag"]
    assert cos_client.get_object(Bucket=BUCKET, Key="c", IfMatch=etag)["Body"].get_raw_stream().read() == b"x"
    err = service_error(lambda: cos_client.get_object(Bucket=BUCKET, Key="c", IfMatch='"other"'))
    assert err.get_status_code() == 412


def test_error_shapes_as_the_sdk_sees_them(emulator: Emulator, cos_client: CosS3Client) -> None:
    err = service_error(lambda: cos_client.get_object(Bucket=BUCKET, Key="missing"))
    assert (err.get_status_code(), err.get_error_code()) == (404, "NoSuchKey")
    assert err.get_request_id() == emulator.requests[-1].request_id
    assert err.get_resource_location().endswith("/missing")
    head = service_error(lambda: cos_client.head_object(Bucket=BUCKET, Key="missing"))
    assert (head.get_status_code(), head.get_error_code()) == (404, "NoSuchResource")  # the SDK's HEAD mapping
    assert head.get_request_id() == emulator.requests[-1].request_id
    bucket = service_error(lambda: cos_client.get_object(Bucket="nope-1250000000", Key="k"))
    assert (bucket.get_status_code(), bucket.get_error_code()) == (404, "NoSuchBucket")
    other_region = make_client(emulator, region="ap-shanghai")
    wrong = service_error(lambda: other_region.get_object(Bucket=BUCKET, Key="k"))
    assert wrong.get_error_code() == "NoSuchBucket"


def test_request_log_and_count(emulator: Emulator, cos_client: CosS3Client) -> None:
    cos_client.put_object(Bucket=BUCKET, Key="a", Body=b"1")
    mark = emulator.requests[-1].timestamp
    cos_client.get_object(Bucket=BUCKET, Key="a")["Body"].get_raw_stream().read()
    service_error(lambda: cos_client.get_object(Bucket=BUCKET, Key="b"))
    assert emulator.count("PutObject") == 1
    assert emulator.count("GetObject") == 2
    assert emulator.count("GetObject", key="a") == 1
    assert emulator.count(status=404) == 1
    assert emulator.count(since=mark) == 3
    ids = [r.request_id for r in emulator.requests]
    assert len(set(ids)) == len(ids)


def test_delete_missing_is_204_and_keys_over_850_bytes_are_refused(cos_client: CosS3Client) -> None:
    cos_client.delete_object(Bucket=BUCKET, Key="never-existed")
    err = service_error(lambda: cos_client.put_object(Bucket=BUCKET, Key="k" * 851, Body=b"x"))
    assert err.get_error_code() == "KeyTooLong"


def test_content_md5_is_checked(cos_client: CosS3Client) -> None:
    cos_client.put_object(Bucket=BUCKET, Key="md5", Body=b"payload", EnableMD5=True)
    err = service_error(
        lambda: cos_client.put_object(Bucket=BUCKET, Key="md5", Body=b"x", ContentMD5="AAAAAAAAAAAAAAAAAAAAAA==")
    )
    assert err.get_error_code() == "BadDigest"


def test_metadata_rules(cos_client: CosS3Client) -> None:
    err = service_error(
        lambda: cos_client.put_object(Bucket=BUCKET, Key="m", Body=b"x", Metadata={"x-cos-meta-a_b": "1"})
    )
    assert err.get_error_code() == "InvalidArgument"
    big = {"x-cos-meta-big": "v" * (cos_facts.USER_META_MAX_BYTES + 1)}
    err = service_error(lambda: cos_client.put_object(Bucket=BUCKET, Key="m", Body=b"x", Metadata=big))
    assert err.get_error_code() == "InvalidArgument"


def test_archive_objects_cannot_be_read(cos_client: CosS3Client) -> None:
    cos_client.put_object(Bucket=BUCKET, Key="cold", Body=b"x", StorageClass="ARCHIVE")
    err = service_error(lambda: cos_client.get_object(Bucket=BUCKET, Key="cold"))
    assert (err.get_status_code(), err.get_error_code()) == (403, "InvalidObjectState")
    assert cos_client.head_object(Bucket=BUCKET, Key="cold")["x-cos-storage-class"] == "ARCHIVE"


def test_wrong_host_gets_a_clear_error(emulator: Emulator) -> None:
    resp = requests.get(f"{emulator.endpoint}/k", timeout=5)
    assert resp.status_code == 400
    assert b"<Code>InvalidURI</Code>" in resp.content and b"IP=" in resp.content
    assert resp.headers["x-cos-request-id"]


# --- listing ----------------------------------------------------------------------------------------


def test_list_prefix_delimiter_and_paging(cos_client: CosS3Client) -> None:
    keys = ["a/1.jpg", "a/2.jpg", "a/b/3.jpg", "b/4.jpg", "c.jpg", "d 5.jpg", "中/6.jpg"]
    for key in keys:
        cos_client.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    everything = cos_client.list_objects(Bucket=BUCKET)
    assert [c["Key"] for c in everything["Contents"]] == sorted(keys)
    assert everything["IsTruncated"] == "false"
    top = cos_client.list_objects(Bucket=BUCKET, Delimiter="/")
    assert [c["Key"] for c in top["Contents"]] == ["c.jpg", "d 5.jpg"]
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["a/", "b/", "中/"]
    under_a = cos_client.list_objects(Bucket=BUCKET, Prefix="a/", Delimiter="/")
    assert [c["Key"] for c in under_a["Contents"]] == ["a/1.jpg", "a/2.jpg"]
    assert [p["Prefix"] for p in under_a["CommonPrefixes"]] == ["a/b/"]
    seen, marker = [], ""
    for _page in range(20):  # bounded: a paging bug must fail, not hang
        page = cos_client.list_objects(Bucket=BUCKET, MaxKeys=2, Marker=marker)
        seen += [c["Key"] for c in page.get("Contents", [])]
        if page["IsTruncated"] == "false":
            break
        marker = page["NextMarker"]
    else:
        pytest.fail("listing never stopped being truncated")
    assert seen == sorted(keys)
    pages, marker = [], ""
    # With a delimiter, a common prefix counts once and paging skips what it covers.
    for _page in range(20):
        page = cos_client.list_objects(Bucket=BUCKET, MaxKeys=1, Marker=marker, Delimiter="/")
        pages += [c["Key"] for c in page.get("Contents", [])] + [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        if page["IsTruncated"] == "false":
            break
        marker = page["NextMarker"]
    else:
        pytest.fail("listing never stopped being truncated")
    assert pages == ["a/", "b/", "c.jpg", "d 5.jpg", "中/"]


# --- multipart --------------------------------------------------------------------------------------

MB = 1024 * 1024


def test_multipart_upload(emulator: Emulator, cos_client: CosS3Client) -> None:
    key = "big file.bin"
    init = cos_client.create_multipart_upload(
        Bucket=BUCKET, Key=key, ContentType="application/x-test", Metadata={"x-cos-meta-origin": "mp"}
    )
    upload_id = init["UploadId"]
    parts = [b"a" * MB, b"b" * MB, b"tail"]
    etags = [
        cos_client.upload_part(Bucket=BUCKET, Key=key, Body=data, PartNumber=i + 1, UploadId=upload_id)["ETag"]
        for i, data in enumerate(parts)
    ]
    listed = cos_client.list_parts(Bucket=BUCKET, Key=key, UploadId=upload_id)
    assert [int(p["PartNumber"]) for p in listed["Part"]] == [1, 2, 3]
    done = cos_client.complete_multipart_upload(
        Bucket=BUCKET,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Part": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]},
    )
    digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    assert done["ETag"] == f'"{digest}-3"'
    state = emulator.get_object_state(BUCKET, key)
    assert state is not None and state.body == b"".join(parts)
    assert state.content_type == "application/x-test" and state.metadata == {"x-cos-meta-origin": "mp"}
    err = service_error(
        lambda: cos_client.upload_part(Bucket=BUCKET, Key=key, Body=b"x", PartNumber=1, UploadId=upload_id)
    )
    assert err.get_error_code() == "NoSuchUpload"


def test_multipart_rules(cos_client: CosS3Client) -> None:
    upload_id = cos_client.create_multipart_upload(Bucket=BUCKET, Key="mp")["UploadId"]
    e1 = cos_client.upload_part(Bucket=BUCKET, Key="mp", Body=b"small", PartNumber=1, UploadId=upload_id)["ETag"]
    e2 = cos_client.upload_part(Bucket=BUCKET, Key="mp", Body=b"last", PartNumber=2, UploadId=upload_id)["ETag"]

    def complete(parts: list[dict[str, object]]) -> CosServiceError:
        return service_error(
            lambda: cos_client.complete_multipart_upload(
                Bucket=BUCKET, Key="mp", UploadId=upload_id, MultipartUpload={"Part": parts}
            )
        )

    assert complete([{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]).get_error_code() == "EntityTooSmall"
    assert (
        complete([{"PartNumber": 2, "ETag": e2}, {"PartNumber": 1, "ETag": e1}]).get_error_code() == "InvalidPartOrder"
    )
    assert complete([{"PartNumber": 1, "ETag": '"nope"'}]).get_error_code() == "InvalidPart"
    cos_client.abort_multipart_upload(Bucket=BUCKET, Key="mp", UploadId=upload_id)
    assert complete([{"PartNumber": 2, "ETag": e2}]).get_error_code() == "NoSuchUpload"


def test_sdk_upload_file_uses_multipart(tmp_path: Path, emulator: Emulator, cos_client: CosS3Client) -> None:
    path = tmp_path / "two-mb.bin"
    data = bytes(range(256)) * (2 * MB // 256 + 10)
    path.write_bytes(data)
    cos_client.upload_file(Bucket=BUCKET, Key="uploaded.bin", LocalFilePath=str(path), PartSize=1, MAXThread=2)
    state = emulator.get_object_state(BUCKET, "uploaded.bin")
    assert state is not None and state.body == data and state.etag.endswith('-3"')
    assert emulator.count("CompleteMultipartUpload", status=200) == 1


# --- copy -----------------------------------------------------------------------------------------


def copy_source(key: str) -> dict[str, str]:
    return {"Bucket": BUCKET, "Key": key, "Region": REGION}


def test_copy_keeps_metadata_and_tags_by_default(emulator: Emulator, cos_client: CosS3Client) -> None:
    labeled = {"ContentType": "image/jpeg", "Metadata": {"x-cos-meta-a": "1"}, "Tagging": "t=1"}
    cos_client.put_object(Bucket=BUCKET, Key="src 1.jpg", Body=b"img", StorageClass="STANDARD_IA", **labeled)
    result = cos_client.copy_object(Bucket=BUCKET, Key="dst.jpg", CopySource=copy_source("src 1.jpg"))
    assert result["ETag"] and result["LastModified"]
    state = emulator.get_object_state(BUCKET, "dst.jpg")
    assert state is not None
    assert (state.body, state.content_type, state.metadata, state.tags) == (
        b"img",
        "image/jpeg",
        {"x-cos-meta-a": "1"},
        {"t": "1"},
    )
    assert state.storage_class == "STANDARD"  # not carried over unless asked for


def test_copy_replaced_takes_request_metadata_and_tagging_directive(
    emulator: Emulator, cos_client: CosS3Client
) -> None:
    cos_client.put_object(
        Bucket=BUCKET, Key="s", Body=b"img", ContentType="image/jpeg", Metadata={"x-cos-meta-a": "1"}, Tagging="t=1"
    )
    cos_client.copy_object(
        Bucket=BUCKET,
        Key="s",
        CopySource=copy_source("s"),
        CopyStatus="Replaced",
        ContentType="image/png",
        Metadata={"x-cos-meta-labels": "cat", "x-cos-tagging-directive": "Replaced", "x-cos-tagging": "new=2"},
    )
    state = emulator.get_object_state(BUCKET, "s")
    assert state is not None
    assert (state.content_type, state.metadata, state.tags) == ("image/png", {"x-cos-meta-labels": "cat"}, {"new": "2"})


def test_copy_onto_itself_without_changes_is_invalid(cos_client: CosS3Client) -> None:
    cos_client.put_object(Bucket=BUCKET, Key="same", Body=b"x")
    err = service_error(lambda: cos_client.copy_object(Bucket=BUCKET, Key="same", CopySource=copy_source("same")))
    assert (err.get_status_code(), err.get_error_code()) == (400, "InvalidRequest")
    cos_client.change_object_storage_class(Bucket=BUCKET, Key="same", StorageClass="STANDARD_IA")


def test_copy_conditions_and_missing_source(cos_client: CosS3Client) -> None:
    etag = cos_client.put_object(Bucket=BUCKET, Key="c", Body=b"x")["ETag"]
    cos_client.copy_object(Bucket=BUCKET, Key="d", CopySource=copy_source("c"), CopySourceIfMatch=etag)
    for kwargs in (
        {"CopySourceIfMatch": '"other"'},
        {"CopySourceIfNoneMatch": etag},
        {"CopySourceIfModifiedSince": "Wed, 21 Oct 2037 07:28:00 GMT"},
        {"CopySourceIfUnmodifiedSince": "Wed, 21 Oct 2015 07:28:00 GMT"},
    ):
        err = service_error(
            lambda kw=kwargs: cos_client.copy_object(Bucket=BUCKET, Key="d", CopySource=copy_source("c"), **kw)
        )
        assert (err.get_status_code(), err.get_error_code()) == (412, "PreconditionFailed"), kwargs
    err = service_error(lambda: cos_client.copy_object(Bucket=BUCKET, Key="d", CopySource=copy_source("none")))
    assert (err.get_status_code(), err.get_error_code()) == (404, "NoSuchCopySource")


def test_operations_not_emulated_answer_501_not_a_wrong_success(emulator: Emulator, cos_client: CosS3Client) -> None:
    cos_client.put_object(Bucket=BUCKET, Key="k", Body=b"x")
    for call in (
        lambda: cos_client.get_bucket_acl(Bucket=BUCKET),  # object ACLs are emulated (test_emulator_sse_acl)
        lambda: cos_client.get_bucket_cors(Bucket=BUCKET),
        lambda: cos_client.get_bucket_versioning(Bucket=BUCKET),
    ):
        err = service_error(call)
        assert (err.get_status_code(), err.get_error_code()) == (501, "NotImplemented")
    assert emulator.get_object_state(BUCKET, "k").body == b"x"  # type: ignore[union-attr]
