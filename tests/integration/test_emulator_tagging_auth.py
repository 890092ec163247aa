"""Object tagging rules and request signatures (header, presigned, POST form) over HTTP."""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from qcloud_cos import CosConfig, CosS3Client

from cos_autotag_tools import cos_facts
from cos_autotag_tools.emulator import Emulator, auth
from tests.support.constants import BUCKET, REGION, SECRET_ID, SECRET_KEY
from tests.support.emulator import error_of, tagging
from tests.support.sdk import make_client

pytestmark = pytest.mark.integration
HOST = cos_facts.cos_host(BUCKET, REGION)


# --- tagging -------------------------------------------------------------------------------------


def test_put_get_delete_tagging(emulator: Emulator, cos_client: CosS3Client) -> None:
    cos_client.put_object(Bucket=BUCKET, Key="t.jpg", Body=b"x")
    before = emulator.count("PutObject")
    cos_client.put_object_tagging(Bucket=BUCKET, Key="t.jpg", Tagging=tagging(("label", "cat"), ("by", "a:b/c=d")))
    assert cos_client.get_object_tagging(Bucket=BUCKET, Key="t.jpg")["TagSet"]["Tag"] == [
        {"Key": "label", "Value": "cat"},
        {"Key": "by", "Value": "a:b/c=d"},
    ]
    cos_client.put_object_tagging(Bucket=BUCKET, Key="t.jpg", Tagging=tagging(("only", "one")))
    state = emulator.get_object_state(BUCKET, "t.jpg")
    assert state is not None and state.tags == {"only": "one"}  # PUT replaces the whole set
    assert state.body == b"x" and emulator.count("PutObject") == before  # the object itself is untouched
    cos_client.delete_object_tagging(Bucket=BUCKET, Key="t.jpg")
    assert emulator.get_object_state(BUCKET, "t.jpg").tags == {}  # type: ignore[union-attr]
    assert cos_client.get_object_tagging(Bucket=BUCKET, Key="t.jpg").get("TagSet") in (None, {}, [])


def test_tagging_missing_object(cos_client: CosS3Client) -> None:
    err = error_of(lambda: cos_client.put_object_tagging(Bucket=BUCKET, Key="none", Tagging=tagging(("a", "b"))))
    assert (err.get_status_code(), err.get_error_code()) == (404, "NoSuchKey")
    assert error_of(lambda: cos_client.get_object_tagging(Bucket=BUCKET, Key="none")).get_error_code() == "NoSuchKey"


@pytest.mark.parametrize(
    "pairs",
    [
        [(f"k{i}", "v") for i in range(cos_facts.TAGS_MAX_PER_OBJECT + 1)],
        [("dup", "1"), ("dup", "2")],
        [("k" * (cos_facts.TAG_KEY_MAX_CHARS + 1), "v")],
        [("k", "v" * (cos_facts.TAG_VALUE_MAX_CHARS + 1))],
        [("comma,key", "v")],
        [("k", "paren(v)")],
        [("k", "")],
    ],
    ids=["too-many", "duplicate", "long-key", "long-value", "comma", "parenthesis", "empty-value"],
)
def test_tag_rules_are_enforced_and_lose_nothing(
    emulator: Emulator, cos_client: CosS3Client, pairs: list[tuple[str, str]]
) -> None:
    cos_client.put_object(Bucket=BUCKET, Key="t", Body=b"x", Tagging="keep=me")
    err = error_of(lambda: cos_client.put_object_tagging(Bucket=BUCKET, Key="t", Tagging=tagging(*pairs)))
    assert (err.get_status_code(), err.get_error_code()) == (400, "InvalidTag")
    assert emulator.get_object_state(BUCKET, "t").tags == {"keep": "me"}  # type: ignore[union-attr]


def test_ten_tags_and_allowed_characters_are_accepted(emulator: Emulator, cos_client: CosS3Client) -> None:
    cos_client.put_object(Bucket=BUCKET, Key="t", Body=b"x")
    pairs = [(f"k{i}", "a-b_c=d.e:f/g h+i@j") for i in range(cos_facts.TAGS_MAX_PER_OBJECT - 1)] + [("标签", "猫")]
    cos_client.put_object_tagging(Bucket=BUCKET, Key="t", Tagging=tagging(*pairs))
    assert emulator.get_object_state(BUCKET, "t").tags == dict(pairs)  # type: ignore[union-attr]


def test_malformed_tagging_xml(emulator: Emulator) -> None:
    client = make_client(emulator)
    headers = {"Host": HOST, "Content-Type": "application/xml"}
    client.put_object(Bucket=BUCKET, Key="t", Body=b"x")
    value = auth.authorization(SECRET_ID, SECRET_KEY, "PUT", "/t", {"tagging": ""}, {"host": HOST})
    resp = requests.put(
        f"{emulator.endpoint}/t?tagging",
        data=b"<Tagging><TagSet>",
        timeout=5,
        headers={**headers, "Authorization": value},
    )
    assert resp.status_code == 400 and b"<Code>MalformedXML</Code>" in resp.content


# --- header signatures ------------------------------------------------------------------------------


def test_wrong_secret_key(emulator: Emulator) -> None:
    client = make_client(emulator, secret_key="not-the-key")
    err = error_of(lambda: client.put_object(Bucket=BUCKET, Key="k", Body=b"x"))
    assert (err.get_status_code(), err.get_error_code()) == (403, "SignatureDoesNotMatch")
    assert err.get_request_id() and emulator.get_object_state(BUCKET, "k") is None


def test_unknown_secret_id(emulator: Emulator) -> None:
    err = error_of(lambda: make_client(emulator, secret_id="AKIDnobody").get_object(Bucket=BUCKET, Key="k"))
    assert (err.get_status_code(), err.get_error_code()) == (403, "InvalidAccessKeyId")


def raw_put(
    emulator: Emulator,
    key: str,
    headers: dict[str, str],
    signed: dict[str, str],
    body: bytes = b"x",
    now: float | None = None,
    expire_s: int = 600,
) -> requests.Response:
    value = auth.authorization(SECRET_ID, SECRET_KEY, "PUT", "/" + key, {}, signed, expire_s=expire_s, now=now)
    return requests.put(f"{emulator.endpoint}/{key}", data=body, headers={**headers, "Authorization": value}, timeout=5)


def test_tampered_signed_header(emulator: Emulator) -> None:
    signed = {"host": HOST, "x-cos-meta-owner": "alice"}
    ok = raw_put(emulator, "k", {"Host": HOST, "x-cos-meta-owner": "alice"}, signed)
    assert ok.status_code == 200
    bad = raw_put(emulator, "k", {"Host": HOST, "x-cos-meta-owner": "mallory"}, signed)
    assert bad.status_code == 403 and b"<Code>SignatureDoesNotMatch</Code>" in bad.content
    unsigned = raw_put(emulator, "k", {"Host": HOST, "x-cos-meta-owner": "alice", "x-cos-meta-extra": "1"}, signed)
    assert unsigned.status_code == 403 and b"<Code>AccessDenied</Code>" in unsigned.content
    assert emulator.get_object_state(BUCKET, "k").metadata == {"x-cos-meta-owner": "alice"}  # type: ignore[union-attr]


def test_expired_signature(emulator: Emulator) -> None:
    resp = raw_put(emulator, "k", {"Host": HOST}, {"host": HOST}, now=time.time() - 3600, expire_s=60)
    assert resp.status_code == 403
    assert b"<Code>AccessDenied</Code>" in resp.content and b"Request has expired" in resp.content


def test_missing_authorization(emulator: Emulator) -> None:
    resp = requests.get(f"{emulator.endpoint}/k", headers={"Host": HOST}, timeout=5)
    assert resp.status_code == 403 and b"<Code>AccessDenied</Code>" in resp.content
    assert resp.headers["Content-Type"] == "application/xml"


def test_security_token(emulator: Emulator) -> None:
    emulator.token = "session-token-1"
    good = make_client(emulator, token="session-token-1")
    good.put_object(Bucket=BUCKET, Key="k", Body=b"x")
    for client in (make_client(emulator, token="wrong-token"), make_client(emulator)):
        err = error_of(lambda c=client: c.get_object(Bucket=BUCKET, Key="k"))
        assert (err.get_status_code(), err.get_error_code()) == (403, "AccessDenied")


# --- presigned URLs -----------------------------------------------------------------------------------


def presigned(
    emulator: Emulator, key: str, method: str = "GET", expired: int = 300, params: dict[str, str] | None = None
) -> str:
    """A presigned URL from the SDK (configured for the real host, which the signature covers),
    rewritten to reach the emulator's port."""
    conf = CosConfig(Region=REGION, SecretId=SECRET_ID, SecretKey=SECRET_KEY, Scheme="http")
    url = CosS3Client(conf).get_presigned_url(
        Bucket=BUCKET, Key=key, Method=method, Expired=expired, Params=params or {}
    )
    parts = urlsplit(url)
    assert parts.hostname == HOST
    return urlunsplit(("http", f"127.0.0.1:{emulator.port}", parts.path, parts.query, ""))


def test_presigned_get(emulator: Emulator, cos_client: CosS3Client) -> None:
    cos_client.put_object(Bucket=BUCKET, Key="dir/a b+中.jpg", Body=b"pixels")
    url = presigned(emulator, "dir/a b+中.jpg")
    resp = requests.get(url, headers={"Host": HOST}, timeout=5)
    assert resp.status_code == 200 and resp.content == b"pixels"
    assert emulator.requests[-1].secret_id == SECRET_ID
    tampered = url.replace("q-signature=", "q-signature=0")
    assert requests.get(tampered, headers={"Host": HOST}, timeout=5).status_code == 403
    other_key = url.replace("a%20b", "a%20c")
    assert b"SignatureDoesNotMatch" in requests.get(other_key, headers={"Host": HOST}, timeout=5).content


def test_presigned_get_with_signed_params_and_put(emulator: Emulator, cos_client: CosS3Client) -> None:
    put_url = presigned(emulator, "up.txt", method="PUT")
    assert requests.put(put_url, data=b"via url", headers={"Host": HOST}, timeout=5).status_code == 200
    url = presigned(emulator, "up.txt", params={"response-content-type": "text/x-test"})
    resp = requests.get(url, headers={"Host": HOST}, timeout=5)
    assert resp.content == b"via url" and resp.headers["Content-Type"] == "text/x-test"


# --- POST form upload ---------------------------------------------------------------------------------


def post_form(
    emulator: Emulator,
    fields: dict[str, str],
    data: bytes,
    *,
    secret_key: str = SECRET_KEY,
    conditions: list[Any] | None = None,
    expires_in: float = 600,
    filename: str = "photo.jpg",
) -> requests.Response:
    key_time = f"{int(time.time()) - 60};{int(time.time()) + 600}"
    expiration = (datetime.now(timezone.utc) + timedelta(seconds=expires_in)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    policy = json.dumps(
        {
            "expiration": expiration,
            "conditions": [
                {"bucket": BUCKET},
                {"q-sign-algorithm": "sha1"},
                {"q-ak": SECRET_ID},
                {"q-sign-time": key_time},
                *(conditions or []),
            ],
        }
    )
    form = {
        **fields,
        "policy": base64.b64encode(policy.encode()).decode(),
        "q-sign-algorithm": "sha1",
        "q-ak": SECRET_ID,
        "q-key-time": key_time,
        "q-signature": auth.post_signature(secret_key, key_time, policy),
    }
    return requests.post(
        f"{emulator.endpoint}/",
        data=form,
        files={"file": (filename, data, "image/jpeg")},
        headers={"Host": HOST},
        timeout=5,
    )


def test_post_object_stores_the_file_and_fields(emulator: Emulator) -> None:
    resp = post_form(
        emulator,
        {"key": "uploads/${filename}", "Content-Type": "image/jpeg", "x-cos-meta-via": "form"},
        b"jpegdata",
        conditions=[["starts-with", "$key", "uploads/"], ["content-length-range", 1, 1024]],
    )
    assert resp.status_code == 204
    assert resp.headers["ETag"] and resp.headers["Location"].endswith("/uploads/photo.jpg")
    state = emulator.get_object_state(BUCKET, "uploads/photo.jpg")
    assert state is not None
    assert (state.body, state.content_type, state.metadata) == (b"jpegdata", "image/jpeg", {"x-cos-meta-via": "form"})
    assert emulator.requests[-1].op == "PostObject"


def test_post_object_success_status_201(emulator: Emulator) -> None:
    resp = post_form(emulator, {"key": "k", "success_action_status": "201"}, b"x")
    assert resp.status_code == 201 and b"<PostResponse>" in resp.content


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"secret_key": "wrong"}, 403, "SignatureDoesNotMatch"),
        ({"conditions": [["starts-with", "$key", "only/"]]}, 403, "AccessDenied"),
        ({"conditions": [["content-length-range", 0, 3]]}, 400, "EntityTooLarge"),
        ({"expires_in": -60}, 403, "AccessDenied"),
    ],
    ids=["bad-signature", "condition", "too-large", "policy-expired"],
)
def test_post_object_refusals(emulator: Emulator, kwargs: dict[str, Any], status: int, code: str) -> None:
    resp = post_form(emulator, {"key": "k"}, b"12345", **kwargs)
    assert resp.status_code == status and f"<Code>{code}</Code>".encode() in resp.content
    assert emulator.get_object_state(BUCKET, "k") is None


@pytest.mark.parametrize("bounds", [["0", "ten"], [0, None], [[1], 5], ["-1", 5]])
def test_a_content_length_range_that_is_not_numbers_is_a_4xx_not_a_crash(emulator: Emulator, bounds: list[Any]) -> None:
    resp = post_form(emulator, {"key": "k"}, b"12345", conditions=[["content-length-range", *bounds]])
    assert resp.status_code == 400 and b"<Code>InvalidPolicyDocument</Code>" in resp.content
    assert emulator.get_object_state(BUCKET, "k") is None


@pytest.mark.parametrize("body", [b"no boundary here", b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--\r\n"])
def test_a_malformed_form_is_a_4xx_not_a_crash(emulator: Emulator, body: bytes) -> None:
    headers = {"Host": HOST, "Content-Type": "multipart/form-data; boundary=b"}
    resp = requests.post(f"{emulator.endpoint}/", data=body, headers=headers, timeout=5)
    assert 400 <= resp.status_code < 500, resp.content
